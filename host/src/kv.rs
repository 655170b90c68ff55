//! Key-value storage behind the component's `wasi:keyvalue` imports.
//!
//! [`KvBackend`] is the storage; the generated `wasi:keyvalue` host traits (in
//! `runtime`) only translate. One backend is shared by every instance of a host, so a
//! token cached by one instance is found by the next (Spin's model: an instance per
//! request).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A store failure, shown to the guest as `error::other`.
pub type KvResult<T> = Result<T, String>;

pub trait KvBackend: Send + Sync {
    /// Can the store called `label` be opened? (`Err` = `no-such-store`/`access-denied`).
    fn open(&self, label: &str) -> KvResult<()> {
        let _ = label;
        Ok(())
    }
    fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>>;
    fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()>;
    fn delete(&self, label: &str, key: &str) -> KvResult<()>;
    fn exists(&self, label: &str, key: &str) -> KvResult<bool> {
        Ok(self.get(label, key)?.is_some())
    }
    /// Keys in order, at most `page` from after `cursor`; the next cursor if more remain.
    fn list_keys(
        &self,
        label: &str,
        cursor: Option<&str>,
        page: usize,
    ) -> KvResult<(Vec<String>, Option<String>)>;
    /// Atomically add `delta` to the signed 64-bit integer stored as decimal text at
    /// `key` (absent = 0) and return the new value.
    fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64>;
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

impl KvBackend for MemoryKv {
    fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        Ok(self
            .stores
            .lock()
            .unwrap()
            .get(label)
            .and_then(|s| s.get(key).cloned()))
    }

    fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.stores
            .lock()
            .unwrap()
            .entry(label.to_string())
            .or_default()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        if let Some(s) = self.stores.lock().unwrap().get_mut(label) {
            s.remove(key);
        }
        Ok(())
    }

    fn list_keys(
        &self,
        label: &str,
        cursor: Option<&str>,
        page: usize,
    ) -> KvResult<(Vec<String>, Option<String>)> {
        let stores = self.stores.lock().unwrap();
        let Some(s) = stores.get(label) else {
            return Ok((Vec::new(), None));
        };
        let mut keys: Vec<String> = match cursor {
            Some(c) => s
                .range::<str, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                .map(|(k, _)| k.clone())
                .take(page + 1)
                .collect(),
            None => s.keys().take(page + 1).cloned().collect(),
        };
        let next = if keys.len() > page {
            keys.truncate(page);
            keys.last().cloned()
        } else {
            None
        };
        Ok((keys, next))
    }

    fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
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

/// A backend whose every operation fails: for testing that a broken store degrades
/// to "no cache" instead of failing token requests.
#[derive(Clone, Default)]
pub struct FailingKv;

impl KvBackend for FailingKv {
    fn get(&self, _: &str, _: &str) -> KvResult<Option<Vec<u8>>> {
        Err("store unavailable".into())
    }
    fn set(&self, _: &str, _: &str, _: &[u8]) -> KvResult<()> {
        Err("store unavailable".into())
    }
    fn delete(&self, _: &str, _: &str) -> KvResult<()> {
        Err("store unavailable".into())
    }
    fn list_keys(
        &self,
        _: &str,
        _: Option<&str>,
        _: usize,
    ) -> KvResult<(Vec<String>, Option<String>)> {
        Err("store unavailable".into())
    }
    fn increment(&self, _: &str, _: &str, _: i64) -> KvResult<i64> {
        Err("store unavailable".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_separated_by_label() {
        let kv = MemoryKv::new();
        kv.set("a", "k", b"1").unwrap();
        assert_eq!(kv.get("a", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.get("b", "k").unwrap(), None);
        kv.delete("a", "k").unwrap();
        assert!(!kv.exists("a", "k").unwrap());
    }

    #[test]
    fn increment_counts_from_zero_and_refuses_non_integers() {
        let kv = MemoryKv::new();
        assert_eq!(kv.increment("s", "n", 1).unwrap(), 1);
        assert_eq!(kv.increment("s", "n", 5).unwrap(), 6);
        assert_eq!(kv.increment("s", "n", -10).unwrap(), -4);
        kv.set("s", "x", b"abc").unwrap();
        assert!(kv.increment("s", "x", 1).is_err());
    }

    #[test]
    fn list_keys_pages_with_a_cursor() {
        let kv = MemoryKv::new();
        for i in 0..5 {
            kv.set("s", &format!("k{i}"), b"v").unwrap();
        }
        let (first, cursor) = kv.list_keys("s", None, 2).unwrap();
        assert_eq!(first, ["k0", "k1"]);
        let (second, cursor) = kv.list_keys("s", cursor.as_deref(), 2).unwrap();
        assert_eq!(second, ["k2", "k3"]);
        let (third, cursor) = kv.list_keys("s", cursor.as_deref(), 2).unwrap();
        assert_eq!((third, cursor), (vec!["k4".to_string()], None));
    }
}
