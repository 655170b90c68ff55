//! Key-value storage behind the component's `wasi:keyvalue` imports.
//!
//! [`KvBackend`] is the storage; the generated `wasi:keyvalue` host traits (in
//! `keyvalue`) only translate. One backend is shared by every instance of a host, so
//! a token cached by one instance is found by the next (Spin's model: an instance per
//! request). [`MemoryKv`] lives in the process; [`RedisKv`] is shared by every process
//! that points at the same Redis.
//!
//! Stores are separated by their label (the name a guest `open`s): two labels never see
//! each other's keys, in memory or in Redis (where label `L` keeps key `k` as `L:k`),
//! unless a Redis store is opened with [`RedisKeys::Raw`] (Spin's layout: every label is
//! the whole database). A label may not contain `:` (it could not be told apart from
//! the key after it), in either backend.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A store failure, shown to the guest as `error::other`.
pub type KvResult<T> = Result<T, String>;

/// One page of [`KvBackend::list_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys of the store (without any label prefix), in no promised order.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` when the listing is complete. Opaque to
    /// callers: pass it back as it is. A `u64` because that is what the
    /// `wasi:keyvalue@0.2.0-draft` cursor can carry (the `draft2` one carries its
    /// decimal text); Redis's `SCAN` cursor is one.
    pub cursor: Option<u64>,
}

#[async_trait]
pub trait KvBackend: Send + Sync {
    /// Can the store called `label` be opened? (`Err` = `no-such-store`/`access-denied`).
    async fn open(&self, label: &str) -> KvResult<()> {
        check_label(label)
    }
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>>;
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()>;
    async fn delete(&self, label: &str, key: &str) -> KvResult<()>;
    async fn exists(&self, label: &str, key: &str) -> KvResult<bool> {
        Ok(self.get(label, key).await?.is_some())
    }
    /// One page of the keys of `label`, from `cursor` (`None`: from the start), of about
    /// `page` keys: a hint, so a page may be shorter, or even empty while its cursor
    /// says more may follow. Each call does a bounded amount of work (one `SCAN` in
    /// Redis), so listing the whole store reads it about once. Every key that is there
    /// for the whole listing is returned; Redis may return a key twice if the database
    /// is resized meanwhile (`SCAN`'s guarantee), memory never does.
    async fn list_keys(&self, label: &str, cursor: Option<u64>, page: usize) -> KvResult<KeyPage>;
    /// Atomically add `delta` to the signed 64-bit integer stored as decimal text at
    /// `key` (absent = 0) and return the new value.
    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64>;
}

/// A store label must not contain `:`: in Redis, label `a` with key `b:c` and label
/// `a:b` with key `c` would be the same key. Both backends refuse it, so code tested on
/// memory behaves the same on Redis.
pub fn check_label(label: &str) -> KvResult<()> {
    if label.contains(':') {
        return Err(format!(
            "store label `{label}` contains `:`, which labels may not"
        ));
    }
    Ok(())
}

/// One store's keys and values. Each key has a position, given when it is first set
/// and kept when it is overwritten; `list-keys` pages in position order with the next
/// position as its cursor, so a page costs its own length, not the keys before it.
#[derive(Default)]
struct Bucket {
    values: HashMap<String, (u64, Vec<u8>)>,
    order: BTreeMap<u64, String>,
    next: u64,
}

impl Bucket {
    fn insert(&mut self, key: &str, value: Vec<u8>) {
        if let Some(entry) = self.values.get_mut(key) {
            entry.1 = value;
            return;
        }
        let position = self.next;
        self.next += 1;
        self.order.insert(position, key.to_string());
        self.values.insert(key.to_string(), (position, value));
    }

    fn remove(&mut self, key: &str) {
        if let Some((position, _)) = self.values.remove(key) {
            self.order.remove(&position);
        }
    }

    fn page(&self, cursor: Option<u64>, page: usize) -> KeyPage {
        let mut next = self.order.range(cursor.unwrap_or(0)..);
        let keys = next
            .by_ref()
            .take(page.max(1))
            .map(|(_, k)| k.clone())
            .collect();
        KeyPage {
            keys,
            cursor: next.next().map(|(position, _)| *position),
        }
    }
}

/// In-process storage shared by all instances of one host, one map per label.
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
            .map_or(0, |s| s.values.len())
    }

    pub fn is_empty(&self, label: &str) -> bool {
        self.len(label) == 0
    }

    /// Every (key, value) in `label`, in the order they were first set, for tests that
    /// tamper with entries.
    pub fn entries(&self, label: &str) -> Vec<(String, Vec<u8>)> {
        self.stores
            .lock()
            .unwrap()
            .get(label)
            .map(|s| {
                s.order
                    .values()
                    .map(|k| (k.clone(), s.values[k].1.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl KvBackend for MemoryKv {
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        check_label(label)?;
        Ok(self
            .stores
            .lock()
            .unwrap()
            .get(label)
            .and_then(|s| s.values.get(key).map(|(_, v)| v.clone())))
    }

    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        check_label(label)?;
        self.stores
            .lock()
            .unwrap()
            .entry(label.to_string())
            .or_default()
            .insert(key, value.to_vec());
        Ok(())
    }

    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        check_label(label)?;
        if let Some(s) = self.stores.lock().unwrap().get_mut(label) {
            s.remove(key);
        }
        Ok(())
    }

    async fn list_keys(&self, label: &str, cursor: Option<u64>, page: usize) -> KvResult<KeyPage> {
        check_label(label)?;
        let stores = self.stores.lock().unwrap();
        Ok(stores
            .get(label)
            .map(|s| s.page(cursor, page))
            .unwrap_or_default())
    }

    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        check_label(label)?;
        let mut stores = self.stores.lock().unwrap();
        let s = stores.entry(label.to_string()).or_default();
        let current = match s.values.get(key) {
            None => 0,
            Some((_, v)) => std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| format!("value at `{key}` is not an integer"))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or("increment overflows i64")?;
        s.insert(key, next.to_string().into_bytes());
        Ok(next)
    }
}

/// How [`RedisKv`] names a store's keys in Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisKeys {
    /// Key `k` of label `L` is the Redis key `L:k` (the default): labels never collide,
    /// and `list-keys` of `L` sees only `L`'s keys (`SCAN … MATCH L:*`).
    #[default]
    LabelPrefix,
    /// Key `k` is the Redis key `k`, whatever the label, and `list-keys` lists the whole
    /// database: the layout of Spin's Redis key-value store, for sharing one Redis (and
    /// so the token cache) with a Spin app. CLI: `--redis-raw-keys`.
    Raw,
}

/// A Redis database shared by every host process that points at it.
///
/// By default each store label is a key prefix ([`RedisKeys::LabelPrefix`]: label `L`,
/// key `k` → `L:k`); [`RedisKeys::Raw`] stores keys as they are, like Spin's Redis
/// key-value store. Either way the component prefixes and versions every key it writes
/// (`oauth2-token-provider:v2:…`). Values are Redis strings; `increment` is `INCRBY`
/// (atomic); `list-keys` is one `SCAN` per page, its cursor carried to the next page.
#[derive(Clone)]
pub struct RedisKv {
    conn: redis::aio::ConnectionManager,
    keys: RedisKeys,
}

impl RedisKv {
    /// Connect (and keep reconnecting) to `url` (`redis://[:password@]host:port[/db]`),
    /// with each label a key prefix ([`RedisKeys::LabelPrefix`]).
    /// `rediss://` (TLS) is refused: this build of the redis crate has no TLS, and a
    /// clear refusal beats a connection that fails at run time.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, RedisKeys::LabelPrefix).await
    }

    /// [`connect`](RedisKv::connect), naming keys as `keys` says.
    pub async fn connect_with(url: &str, keys: RedisKeys) -> anyhow::Result<Self> {
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
        Ok(RedisKv { conn, keys })
    }

    /// The Redis key of `key` in store `label`.
    fn key(&self, label: &str, key: &str) -> KvResult<String> {
        Ok(match self.keys {
            RedisKeys::LabelPrefix => format!("{}{key}", prefix(label)?),
            RedisKeys::Raw => key.to_string(),
        })
    }
}

/// `label:`, the prefix of every Redis key of store `label`.
fn prefix(label: &str) -> KvResult<String> {
    check_label(label)?;
    Ok(format!("{label}:"))
}

/// `text` with Redis glob specials (`* ? [ ] \`) escaped, for `SCAN … MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    async fn open(&self, label: &str) -> KvResult<()> {
        match self.keys {
            RedisKeys::LabelPrefix => check_label(label),
            RedisKeys::Raw => Ok(()),
        }
    }

    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        redis::cmd("GET")
            .arg(self.key(label, key)?)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| redis_error(&e))
    }

    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        redis::cmd("SET")
            .arg(self.key(label, key)?)
            .arg(value)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| redis_error(&e))
    }

    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        redis::cmd("DEL")
            .arg(self.key(label, key)?)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| redis_error(&e))
    }

    async fn exists(&self, label: &str, key: &str) -> KvResult<bool> {
        redis::cmd("EXISTS")
            .arg(self.key(label, key)?)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(|n| n > 0)
            .map_err(|e| redis_error(&e))
    }

    async fn list_keys(&self, label: &str, cursor: Option<u64>, page: usize) -> KvResult<KeyPage> {
        // One SCAN, its cursor handed back as ours: no page re-reads what an earlier one
        // read. SCAN's COUNT is a hint and MATCH filters what it read, so a page may be
        // short or empty with more to come.
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor.unwrap_or(0));
        let prefix = match self.keys {
            RedisKeys::LabelPrefix => {
                let prefix = prefix(label)?;
                scan.arg("MATCH").arg(format!("{}*", glob_escape(&prefix)));
                prefix
            }
            RedisKeys::Raw => String::new(),
        };
        scan.arg("COUNT").arg(page.max(1));
        let (next, batch): (u64, Vec<Vec<u8>>) = scan
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| redis_error(&e))?;
        // Keys that are not UTF-8 cannot be a guest's (WIT keys are strings): skipped.
        let keys = batch
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .filter_map(|k| k.strip_prefix(prefix.as_str()).map(str::to_string))
            .collect();
        Ok(KeyPage {
            keys,
            cursor: (next != 0).then_some(next),
        })
    }

    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        redis::cmd("INCRBY")
            .arg(self.key(label, key)?)
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
        let first = kv.list_keys("s", None, 2).await.unwrap();
        assert_eq!(first.keys, ["k0", "k1"]);
        // Overwriting a listed key, deleting one ahead and adding one: no key twice,
        // the deleted one not at all, the new one at the end.
        kv.set("s", "k0", b"w").await.unwrap();
        kv.delete("s", "k3").await.unwrap();
        kv.set("s", "k5", b"v").await.unwrap();
        let second = kv.list_keys("s", first.cursor, 2).await.unwrap();
        assert_eq!(second.keys, ["k2", "k4"]);
        let third = kv.list_keys("s", second.cursor, 2).await.unwrap();
        assert_eq!(
            third,
            KeyPage {
                keys: vec!["k5".into()],
                cursor: None
            }
        );
        assert_eq!(
            kv.list_keys("empty", None, 2).await.unwrap(),
            KeyPage::default()
        );
    }

    #[tokio::test]
    async fn a_label_with_a_colon_is_refused_by_both_backends() {
        let kv = MemoryKv::new();
        let err = kv.open("a:b").await.unwrap_err();
        assert!(err.contains("contains `:`"), "{err}");
        assert!(kv.set("a:b", "k", b"v").await.is_err());
        assert!(kv.open("default").await.is_ok());
        assert!(prefix("a:b").is_err());
    }

    #[test]
    fn labels_are_escaped_in_scan_patterns() {
        assert_eq!(glob_escape("default:"), "default:");
        assert_eq!(glob_escape(r"a*b?[c]\:"), r"a\*b\?\[c\]\\:");
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn redis_labels_are_key_prefixes_so_two_labels_never_collide() {
        let redis = crate::testkit::redis_server::LocalRedis::start().unwrap();
        let kv = RedisKv::connect(&redis.url()).await.unwrap();
        kv.set("a", "k", b"1").await.unwrap();
        kv.set("b", "k", b"2").await.unwrap();
        assert_eq!(kv.get("a", "k").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get("b", "k").await.unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(kv.increment("a", "n", 5).await.unwrap(), 5);
        assert_eq!(kv.increment("b", "n", 1).await.unwrap(), 1);
        assert_eq!(redis.keys().unwrap(), ["a:k", "a:n", "b:k", "b:n"]);
        kv.delete("a", "k").await.unwrap();
        assert!(!kv.exists("a", "k").await.unwrap());
        assert!(kv.exists("b", "k").await.unwrap());
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn redis_raw_keys_are_stored_unprefixed_and_shared_by_every_label() {
        let redis = crate::testkit::redis_server::LocalRedis::start().unwrap();
        let kv = RedisKv::connect_with(&redis.url(), RedisKeys::Raw)
            .await
            .unwrap();
        kv.set("default", "oauth2-token-provider:v2:k", b"1")
            .await
            .unwrap();
        assert_eq!(kv.increment("default", "n", 2).await.unwrap(), 2);
        assert_eq!(redis.keys().unwrap(), ["n", "oauth2-token-provider:v2:k"]);
        assert_eq!(
            kv.get("any-label", "oauth2-token-provider:v2:k")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"1"[..]),
            "every label is the whole database, as in Spin's Redis store"
        );
        assert!(kv.open("a:b").await.is_ok(), "raw keys take any label");
        let page = kv.list_keys("any-label", None, 10).await.unwrap();
        let mut keys = page.keys;
        keys.sort();
        assert_eq!(
            (keys, page.cursor),
            (
                vec!["n".to_string(), "oauth2-token-provider:v2:k".to_string()],
                None
            )
        );
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
