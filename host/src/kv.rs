//! Key-value storage behind the component's `wasi:keyvalue` imports.
//!
//! [`KvBackend`] is the storage; the generated `wasi:keyvalue` host traits (in
//! `wasi_impls`) only translate. One backend is shared by every instance of a host, so
//! a token cached by one instance is found by the next (Spin's model: an instance per
//! request). [`MemoryKv`] lives in the process; [`RedisKv`] is shared by every process
//! that points at the same Redis.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A store failure, shown to the guest as `error::other`.
pub type KvResult<T> = Result<T, String>;

#[async_trait]
pub trait KvBackend: Send + Sync {
    /// Can the store called `label` be opened? (`Err` = `no-such-store`/`access-denied`).
    async fn open(&self, label: &str) -> KvResult<()> {
        let _ = label;
        Ok(())
    }
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>>;
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()>;
    async fn delete(&self, label: &str, key: &str) -> KvResult<()>;
    async fn exists(&self, label: &str, key: &str) -> KvResult<bool> {
        Ok(self.get(label, key).await?.is_some())
    }
    /// Keys in order, at most `page` from after `cursor`; the next cursor if more remain.
    async fn list_keys(
        &self,
        label: &str,
        cursor: Option<&str>,
        page: usize,
    ) -> KvResult<(Vec<String>, Option<String>)>;
    /// Atomically add `delta` to the signed 64-bit integer stored as decimal text at
    /// `key` (absent = 0) and return the new value.
    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64>;
}

/// Page through a sorted key list the way [`KvBackend::list_keys`] promises: the cursor
/// is the last key of the previous page.
fn page_of<'a>(
    keys: impl Iterator<Item = &'a String>,
    cursor: Option<&str>,
    page: usize,
) -> (Vec<String>, Option<String>) {
    let mut keys: Vec<String> = keys
        .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
        .take(page + 1)
        .cloned()
        .collect();
    let next = if keys.len() > page {
        keys.truncate(page);
        keys.last().cloned()
    } else {
        None
    };
    (keys, next)
}

/// One store's keys and values, ordered so that `list-keys` can page.
type Bucket = BTreeMap<String, Vec<u8>>;

/// In-process storage shared by all instances of one host.
#[derive(Clone, Default)]
pub struct MemoryKv {
    stores: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys in `label` (for tests and the demo).
    pub fn len(&self, label: &str) -> usize {
        self.stores
            .lock()
            .unwrap()
            .get(label)
            .map_or(0, |s| s.len())
    }

    pub fn is_empty(&self, label: &str) -> bool {
        self.len(label) == 0
    }

    /// Every (key, value) in `label`, for tests that tamper with entries.
    pub fn entries(&self, label: &str) -> Vec<(String, Vec<u8>)> {
        self.stores
            .lock()
            .unwrap()
            .get(label)
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl KvBackend for MemoryKv {
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        Ok(self
            .stores
            .lock()
            .unwrap()
            .get(label)
            .and_then(|s| s.get(key).cloned()))
    }

    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.stores
            .lock()
            .unwrap()
            .entry(label.to_string())
            .or_default()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        if let Some(s) = self.stores.lock().unwrap().get_mut(label) {
            s.remove(key);
        }
        Ok(())
    }

    async fn list_keys(
        &self,
        label: &str,
        cursor: Option<&str>,
        page: usize,
    ) -> KvResult<(Vec<String>, Option<String>)> {
        let stores = self.stores.lock().unwrap();
        Ok(match stores.get(label) {
            Some(s) => page_of(s.keys(), cursor, page),
            None => (Vec::new(), None),
        })
    }

    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        let mut stores = self.stores.lock().unwrap();
        let s = stores.entry(label.to_string()).or_default();
        let current = match s.get(key) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| format!("value at `{key}` is not an integer"))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or("increment overflows i64")?;
        s.insert(key.to_string(), next.to_string().into_bytes());
        Ok(next)
    }
}

/// A Redis database shared by every host process that points at it.
///
/// Keys are stored as they are, whatever the store label: like Spin's Redis key-value
/// store, every label maps to the one database. The component prefixes and versions
/// every key it writes (`oauth2-token-provider:v1:…`), so a Spin app and this host can
/// share one cache. Values are Redis strings; `increment` is `INCRBY` (atomic).
#[derive(Clone)]
pub struct RedisKv {
    conn: redis::aio::ConnectionManager,
}

impl RedisKv {
    /// Connect (and keep reconnecting) to `url` (`redis://[:password@]host:port[/db]`).
    /// `rediss://` (TLS) is refused: this build of the redis crate has no TLS, and a
    /// clear refusal beats a connection that fails at run time.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        if url
            .get(..9)
            .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
        {
            anyhow::bail!(
                "{shown}: rediss:// (Redis over TLS) is not supported by this host; use redis:// \
                 on a network you trust (loopback, a private link) or a TLS tunnel to Redis"
            );
        }
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("invalid Redis URL {shown}: {}", redis_error(&e)))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot connect to Redis at {shown}: {}", redis_error(&e))
            })?;
        Ok(RedisKv { conn })
    }
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn redis_error(e: &redis::RedisError) -> String {
    format!("redis: {e}")
}

#[async_trait]
impl KvBackend for RedisKv {
    async fn get(&self, _label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| redis_error(&e))
    }

    async fn set(&self, _label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| redis_error(&e))
    }

    async fn delete(&self, _label: &str, key: &str) -> KvResult<()> {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| redis_error(&e))
    }

    async fn exists(&self, _label: &str, key: &str) -> KvResult<bool> {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(|n| n > 0)
            .map_err(|e| redis_error(&e))
    }

    async fn list_keys(
        &self,
        _label: &str,
        cursor: Option<&str>,
        page: usize,
    ) -> KvResult<(Vec<String>, Option<String>)> {
        // SCAN the whole keyspace, then page in key order (SCAN's own cursor is not
        // stable across calls that change the keyspace).
        let mut conn = self.conn.clone();
        let mut scan_cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(scan_cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&e))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            scan_cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(page_of(keys.iter(), cursor, page))
    }

    async fn increment(&self, _label: &str, key: &str, delta: i64) -> KvResult<i64> {
        redis::cmd("INCRBY")
            .arg(key)
            .arg(delta)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| redis_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rediss_is_refused_at_once_with_a_clear_error_and_no_password() {
        for url in [
            "rediss://:hunter2@127.0.0.1:6380/",
            "REDISS://127.0.0.1:6380",
        ] {
            let err = RedisKv::connect(url)
                .await
                .err()
                .expect("rediss is refused");
            let text = format!("{err:#}");
            assert!(
                text.contains("rediss:// (Redis over TLS) is not supported"),
                "{text}"
            );
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[tokio::test]
    async fn stores_are_separated_by_label() {
        let kv = MemoryKv::new();
        kv.set("a", "k", b"1").await.unwrap();
        assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.get("b", "k").await.unwrap(), None);
        kv.delete("a", "k").await.unwrap();
        assert!(!kv.exists("a", "k").await.unwrap());
    }

    #[tokio::test]
    async fn increment_counts_from_zero_and_refuses_non_integers() {
        let kv = MemoryKv::new();
        assert_eq!(kv.increment("s", "n", 1).await.unwrap(), 1);
        assert_eq!(kv.increment("s", "n", 5).await.unwrap(), 6);
        assert_eq!(kv.increment("s", "n", -10).await.unwrap(), -4);
        kv.set("s", "x", b"abc").await.unwrap();
        assert!(kv.increment("s", "x", 1).await.is_err());
    }

    #[tokio::test]
    async fn list_keys_pages_with_a_cursor() {
        let kv = MemoryKv::new();
        for i in 0..5 {
            kv.set("s", &format!("k{i}"), b"v").await.unwrap();
        }
        let (first, cursor) = kv.list_keys("s", None, 2).await.unwrap();
        assert_eq!(first, ["k0", "k1"]);
        let (second, cursor) = kv.list_keys("s", cursor.as_deref(), 2).await.unwrap();
        assert_eq!(second, ["k2", "k3"]);
        let (third, cursor) = kv.list_keys("s", cursor.as_deref(), 2).await.unwrap();
        assert_eq!((third, cursor), (vec!["k4".to_string()], None));
    }

    #[test]
    fn redis_passwords_are_redacted_in_messages() {
        assert_eq!(
            redact_url("redis://:hunter2@db.internal:6379/0"),
            "redis://***@db.internal:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
