//! This instance's own cache. In Spin a WASI 0.2 component gets a fresh instance per
//! request, so it helps only hosts that reuse instances (Spin reuses a WASIp3 instance
//! for up to 128 requests); the key-value store is what carries across, and with a
//! store a token is served from memory only for `memory_max_age_ms` after it was last
//! checked against it.

use super::flight::Flight;
use crate::provider::failure::Cooldown;
use crate::store::{CacheKey, Entry};
use std::rc::Rc;

/// At most this many tokens per instance.
const MAX_ENTRIES: usize = 256;

/// A few keys at most per instance (usually one): a list is smaller in the component
/// than a hash map and as fast, and needs no random hash seed.
#[derive(Debug)]
pub(crate) struct SmallMap<V>(Vec<(CacheKey, V)>);

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<V> SmallMap<V> {
    pub(crate) fn get(&self, key: &CacheKey) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn insert(&mut self, key: CacheKey, value: V) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    pub(crate) fn remove(&mut self, key: &CacheKey) {
        self.0.retain(|(k, _)| k != key);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// A token in memory, when (monotonic ms) it was last fetched, read from the store or
/// found still there, and whether the store had it (a write that failed: no, and then
/// its absence from the store says nothing).
#[derive(Debug)]
struct Remembered {
    entry: Entry,
    checked_ms: u64,
    stored: bool,
}

#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: SmallMap<Remembered>,
    /// The fetches and renewals this instance has in progress, by cache key: other
    /// requests of the instance wait for them instead of starting their own.
    pub(crate) flights: SmallMap<Rc<Flight>>,
    /// The last credential rejection seen by this instance.
    pub(crate) cooldown: Option<Cooldown>,
    /// Renewals that failed: no new attempt before this time (Unix ms).
    pub(crate) refresh_paused: SmallMap<u64>,
    /// The issuer's metadata and when it was fetched (`provider::discovery`).
    pub(crate) discovered: Option<crate::oauth::metadata::Fetched>,
    /// Store records this instance ignored (dated ahead of its clock, or a discovery
    /// document its settings refuse: record, its date) and audited already: each is
    /// audited once.
    pub(crate) ahead_seen: Vec<(&'static str, u64)>,
    /// The recent drops after a 401 of each key's tokens, as this instance knows them
    /// (`rejected`).
    pub(crate) dropped: SmallMap<super::rejected::Drops>,
    /// The DPoP keys generated for (or read back for) each cache key
    /// (`provider::dpop`).
    pub(crate) dpop_keys: SmallMap<crate::oauth::dpop::DpopKey>,
    /// The last valid `DPoP-Nonce` of each origin: (origin, nonce; empty: none known,
    /// the store looked at once).
    pub(crate) dpop_nonces: Vec<(String, String)>,
}

impl MemoryCache {
    pub(crate) fn get(&self, key: &CacheKey) -> Option<&Entry> {
        self.entries.get(key).map(|r| &r.entry)
    }

    /// The token for `key`, when it was last checked (monotonic ms), and whether the
    /// store had it.
    pub(crate) fn get_checked(&self, key: &CacheKey) -> Option<(&Entry, u64, bool)> {
        self.entries
            .get(key)
            .map(|r| (&r.entry, r.checked_ms, r.stored))
    }

    /// Keep `entry`, just fetched or read from the store at `checked_ms` (monotonic);
    /// `stored`: the store has it.
    pub(crate) fn put(&mut self, key: CacheKey, entry: Entry, checked_ms: u64, stored: bool) {
        // Bound memory: drop what has expired before adding.
        if self.entries.len() >= MAX_ENTRIES {
            let now = entry.issued_at_ms;
            self.entries.0.retain(|(_, r)| r.entry.expires_at_ms > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.0.clear();
            }
        }
        self.entries.insert(
            key,
            Remembered {
                entry,
                checked_ms,
                stored,
            },
        );
    }

    pub(crate) fn remove(&mut self, key: &CacheKey) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{entry, key_for, settings};

    #[test]
    fn memory_cache_stays_bounded() {
        let s = settings(&[]);
        let mut m = MemoryCache::default();
        for i in 0..1000 {
            m.put(
                key_for(&s, &[&format!("s{i}")]),
                Entry {
                    issued_at_ms: i,
                    expires_at_ms: i + 10,
                    ..entry()
                },
                i,
                true,
            );
        }
        assert!(m.entries.len() <= 256);
        assert!(m.get(&key_for(&s, &["s999"])).is_some());
    }
}
