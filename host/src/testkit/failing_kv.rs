use crate::kv::{KeyPage, KvBackend, KvResult};
use async_trait::async_trait;

/// A backend whose every operation fails: for testing that a broken store degrades
/// to "no cache" instead of failing token requests.
#[derive(Clone, Default)]
pub struct FailingKv;

#[async_trait]
impl KvBackend for FailingKv {
    async fn get(&self, _: &str, _: &str) -> KvResult<Option<Vec<u8>>> {
        Err("store unavailable".into())
    }
    async fn set(&self, _: &str, _: &str, _: &[u8]) -> KvResult<()> {
        Err("store unavailable".into())
    }
    async fn delete(&self, _: &str, _: &str) -> KvResult<()> {
        Err("store unavailable".into())
    }
    async fn list_keys(&self, _: &str, _: Option<u64>, _: usize) -> KvResult<KeyPage> {
        Err("store unavailable".into())
    }
    async fn increment(&self, _: &str, _: &str, _: i64) -> KvResult<i64> {
        Err("store unavailable".into())
    }
}
