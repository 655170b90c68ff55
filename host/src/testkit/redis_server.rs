//! A throwaway `redis-server` on a free loopback port, for tests, the load run and the
//! benchmarks. Nothing is persisted; the server stops when this value is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalRedis {
    child: Child,
    port: u16,
}

impl LocalRedis {
    /// Start `redis-server` from `PATH` and wait until it answers `PING`.
    pub fn start() -> anyhow::Result<LocalRedis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--loglevel", "warning", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start redis-server ({e}); install it (`apt-get install -y redis-server`; ./scripts/test.sh does) or pass --store redis://HOST:PORT"
                )
            })?;
        let mut server = LocalRedis { child, port };
        let started = Instant::now();
        loop {
            if server.ping() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("redis-server exited at start ({status})");
            }
            if started.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("redis-server did not answer PING within 10 s on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain synchronous connection, for tests that look at Redis itself.
    pub fn connection(&self) -> anyhow::Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }

    /// Every key in the database, sorted (`KEYS *`: for tests on small databases).
    pub fn keys(&self) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut self.connection()?)?;
        keys.sort();
        Ok(keys)
    }

    /// Zero the server's command statistics (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) -> anyhow::Result<()> {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query::<()>(&mut self.connection()?)?;
        Ok(())
    }

    /// How many times `command` (e.g. `scan`) ran since the last [`reset_stats`]
    /// (`INFO commandstats`).
    ///
    /// [`reset_stats`]: LocalRedis::reset_stats
    pub fn command_calls(&self, command: &str) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection()?)?;
        let field = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix(&field))
            .and_then(|rest| rest.split(',').next())
            .map(|n| n.parse())
            .transpose()?
            .unwrap_or(0))
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
