//! What the component keeps in the shared key-value store, without touching it: the
//! key names (`keys`), the sealed format (`seal`), and the cached token with its
//! window arithmetic (`entry`). The provider does the reads and writes.

pub mod entry;
pub mod keys;
pub mod seal;

pub use entry::Entry;
pub use keys::CacheKey;
pub use seal::Rejected;
