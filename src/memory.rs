//! This instance's own cache. In Spin every request gets a fresh instance, so it helps
//! only hosts that reuse instances; the key-value store is what carries across.

use crate::provider::cooldown::Cooldown;
use crate::store::{CacheKey, Entry};
use std::collections::HashMap;

/// At most this many tokens per instance.
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: HashMap<CacheKey, Entry>,
    /// The last credential rejection seen by this instance.
    pub cooldown: Option<Cooldown>,
    /// Renewals that failed: no new attempt before this time (Unix ms).
    pub refresh_paused: HashMap<CacheKey, u64>,
}

impl MemoryCache {
    pub fn get(&self, key: &CacheKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn put(&mut self, key: CacheKey, entry: Entry) {
        // Bound memory: drop what has expired before adding.
        if self.entries.len() >= MAX_ENTRIES {
            let now = entry.issued_at_ms;
            self.entries.retain(|_, e| e.expires_at_ms > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(key, entry);
    }

    pub fn remove(&mut self, key: &CacheKey) {
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
            );
        }
        assert!(m.entries.len() <= 256);
        assert!(m.get(&key_for(&s, &["s999"])).is_some());
    }
}
