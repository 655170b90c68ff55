use crate::kv::{KeyPage, KvBackend, KvResult};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A store that takes `open` to open a store and `per_call` for every other operation
/// before doing it on `inner`: a stand-in for a store that is a round trip away, like
/// Spin's SQLite store (a query on a blocking thread) for the benchmarks' emulation of
/// a Spin request. The wait spins rather than sleeps: timers are too coarse for tens
/// of microseconds, and a synchronous database call holds its thread too.
pub struct LatencyKv {
    inner: Arc<dyn KvBackend>,
    open: Duration,
    per_call: Duration,
}

impl LatencyKv {
    pub fn new(inner: Arc<dyn KvBackend>, open: Duration, per_call: Duration) -> Self {
        LatencyKv {
            inner,
            open,
            per_call,
        }
    }

    fn wait(&self) {
        spin_for(self.per_call);
    }
}

fn spin_for(d: Duration) {
    let started = Instant::now();
    while started.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[async_trait]
impl KvBackend for LatencyKv {
    async fn open(&self, label: &str) -> KvResult<()> {
        spin_for(self.open);
        self.inner.open(label).await
    }
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.wait();
        self.inner.get(label, key).await
    }
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.wait();
        self.inner.set(label, key, value).await
    }
    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        self.wait();
        self.inner.delete(label, key).await
    }
    async fn list_keys(&self, label: &str, cursor: Option<u64>, page: usize) -> KvResult<KeyPage> {
        self.wait();
        self.inner.list_keys(label, cursor, page).await
    }
    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        self.wait();
        self.inner.increment(label, key, delta).await
    }
}
