//! Where a call's time goes: the host times each kind of import call the component
//! makes (config reads, store calls, outbound HTTP to the response head, audit writes)
//! and sums them per phase, over every instance of a [`TokenHost`](crate::TokenHost)
//! built with [`HostBuilder::phases`](crate::HostBuilder::phases). What is left of a
//! call's time is instantiation (timed by the caller) and the component's own work.
//! For benchmarks; off (no timing at all) unless asked for.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One phase's calls: how many, and their total time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    pub calls: u64,
    pub time: Duration,
}

/// Summed time per phase, shared by every instance of a host.
#[derive(Clone, Debug, Default)]
pub struct Phases(Arc<Mutex<BTreeMap<&'static str, Spent>>>);

impl Phases {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, phase: &'static str, time: Duration) {
        let mut map = self.0.lock().unwrap();
        let spent = map.entry(phase).or_default();
        spent.calls += 1;
        spent.time += time;
    }

    /// What was recorded since the last `take`, and start again.
    pub fn take(&self) -> BTreeMap<&'static str, Spent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Time `f` as `phase`, if `phases` is on.
pub(crate) async fn timed<T>(
    phases: &Option<Phases>,
    phase: &'static str,
    f: impl std::future::Future<Output = T>,
) -> T {
    match phases {
        None => f.await,
        Some(p) => {
            let started = Instant::now();
            let out = f.await;
            p.record(phase, started.elapsed());
            out
        }
    }
}

/// The component's stderr appended to a file, as Spin writes a component's output to
/// its log files; each write timed as `audit.write` when phases are on.
#[derive(Clone)]
pub struct LogFile {
    file: Arc<std::fs::File>,
    phases: Option<Phases>,
}

impl LogFile {
    pub fn new(file: std::fs::File, phases: Option<Phases>) -> Self {
        LogFile {
            file: Arc::new(file),
            phases,
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogFile {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogFile {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(wasmtime_wasi::cli::OutputFile::new(
            self.file.try_clone().expect("clone the log file handle"),
        ))
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for LogFile {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LogFile {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        let started = Instant::now();
        let written = (&*self.file).write_all(&bytes);
        if let Some(p) = &self.phases {
            p.record("audit.write", started.elapsed());
        }
        written.map_err(|e| {
            wasmtime_wasi::p2::StreamError::LastOperationFailed(wasmtime::format_err!(e))
        })
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::testserver::MockServer;
    use crate::{ApiRequest, LogSink, TokenHost};

    #[tokio::test]
    async fn a_send_is_timed_by_phase_and_its_audit_lines_go_to_the_file() {
        let server = MockServer::start("id", "secret").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let phases = Phases::new();
        let host = TokenHost::builder()
            .config("token_url", server.url("/token"))
            .config("client_id", "id")
            .config("client_secret", "secret")
            .config("allow_insecure_http", "true")
            .config("allowed_origins", server.origin())
            .config("audit", "all")
            .log(LogSink::File(log.clone()))
            .phases(phases.clone())
            .build()
            .unwrap();
        let mut instance = host.instance().await.unwrap();
        let api = ApiRequest::get(server.url("/api/orders"));
        let status = instance.send(&api).await.unwrap().unwrap().status;
        assert_eq!(status, 200);
        let spent = phases.take();
        // One get-all, the store opened and read (a miss), the token stored and the
        // lease taken and given back, two exchanges (token endpoint, API), audit lines.
        assert_eq!(spent["config"].calls, 1, "{spent:?}");
        assert_eq!(spent["store.open"].calls, 1, "{spent:?}");
        assert!(spent["store.get"].calls >= 1, "{spent:?}");
        assert!(spent["store.write"].calls >= 3, "{spent:?}");
        assert_eq!(spent["http"].calls, 2, "{spent:?}");
        assert!(spent["audit.write"].calls >= 3, "{spent:?}");
        assert!(spent.values().all(|s| s.time > Duration::ZERO));
        assert!(phases.take().is_empty(), "take starts again");
        let lines = std::fs::read_to_string(&log).unwrap();
        assert!(
            lines
                .lines()
                .any(|l| l.contains("\"event\":\"client.send\"")),
            "{lines}"
        );
    }
}
