//! What the component keeps in the shared key-value store, without touching it: the
//! key names (`keys`), the sealed format (`seal`), and the cached token with its
//! window arithmetic (`entry`), and how far a time read back is believed (`ahead`). The provider does the reads and writes.

pub(crate) mod ahead;
pub(crate) mod entry;
pub(crate) mod keys;
pub(crate) mod record;
pub mod seal;

pub(crate) use entry::Entry;
pub(crate) use keys::CacheKey;
