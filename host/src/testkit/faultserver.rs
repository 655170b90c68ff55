//! A token endpoint that misbehaves on purpose, for fault tests: each connection gets
//! the next scripted [`Fault`] (the last one repeats), answers are written by hand on
//! the raw socket (one request per connection, `Connection: close`), and every request
//! that arrived is counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn token(token: &str, expires_in: u64) -> Reply {
        Reply::new(
            200,
            "application/json",
            format!(
                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#
            ),
        )
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn head(&self, content_length: usize) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} X\r\n", self.status);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {content_length}\r\nconnection: close\r\n\r\n"
        ));
        head.into_bytes()
    }
}

/// What one connection gets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer normally.
    Reply(Reply),
    /// Answer, but only after this long (first-byte timeout).
    Late(Duration, Reply),
    /// Read the request, then close without a byte of reply.
    Drop,
    /// Read the request and never answer (the socket stays open).
    Hang,
    /// Send the head and half the body, then stall (between-bytes timeout).
    StallBody(Reply),
    /// Send the head and half the body, then close (truncated body).
    Truncate(Reply),
    /// Send a 200 head announcing a 1 GB body, then one byte of it every this long,
    /// forever: no between-bytes timeout ever fires (overall deadline).
    Drip(Duration),
}

pub struct FaultServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    pub async fn start(script: Vec<Fault>) -> std::io::Result<FaultServer> {
        assert!(!script.is_empty(), "a fault script needs at least one step");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new((script, 0usize)));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fault = {
                    let mut s = script.lock().unwrap();
                    let i = s.1.min(s.0.len() - 1);
                    s.1 += 1;
                    s.0[i].clone()
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, fault, counter).await;
                });
            }
        });
        Ok(FaultServer {
            port,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Requests received so far (read in full, whatever was answered).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stop listening: from now on connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(());
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    fault: Fault,
    requests: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    read_request(&mut stream).await?;
    requests.fetch_add(1, Ordering::SeqCst);
    match fault {
        Fault::Reply(r) => {
            stream.write_all(&r.head(r.body.len())).await?;
            stream.write_all(&r.body).await?;
        }
        Fault::Late(delay, r) => {
            tokio::time::sleep(delay).await;
            stream.write_all(&r.head(r.body.len())).await?;
            stream.write_all(&r.body).await?;
        }
        Fault::Drop => {}
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fault::StallBody(r) => {
            stream.write_all(&r.head(r.body.len())).await?;
            stream.write_all(&r.body[..r.body.len() / 2]).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fault::Truncate(r) => {
            stream.write_all(&r.head(r.body.len())).await?;
            stream.write_all(&r.body[..r.body.len() / 2]).await?;
        }
        Fault::Drip(every) => {
            let r = Reply::new(200, "application/json", "");
            stream.write_all(&r.head(1 << 30)).await?;
            loop {
                stream.write_all(b" ").await?;
                stream.flush().await?;
                tokio::time::sleep(every).await;
            }
        }
    }
    stream.shutdown().await
}
