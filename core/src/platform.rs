//! What the core needs from the outside world. The components implement it with WASI
//! calls (`WasiPlatform` in the `token-provider-wasi` crate, `components/wasi/`); native
//! tests implement it with fakes and a hand-driven clock (`testing.rs`).

use crate::error::Error;
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};

pub trait Platform {
    /// Wall clock, Unix milliseconds (shared between instances and processes: leases and
    /// expiry times are compared across them).
    fn now_unix_ms(&self) -> u64;
    /// Wall clock, Unix seconds.
    fn now_unix_secs(&self) -> u64 {
        self.now_unix_ms() / 1000
    }
    /// Monotonic clock, milliseconds (for durations only).
    fn monotonic_ms(&self) -> u64;
    /// Block this instance for `ms` milliseconds (the host keeps running others).
    fn sleep_ms(&self, ms: u64);
    /// Cryptographically secure random bytes.
    fn random_bytes(&self, out: &mut [u8]);
    /// A uniformly random number in `0..bound` (`bound` > 0), for jitter.
    fn random_below(&self, bound: u64) -> u64 {
        let mut b = [0u8; 8];
        self.random_bytes(&mut b);
        u64::from_le_bytes(b) % bound.max(1)
    }
    /// Send one request and read the whole response (bounded by `options`).
    fn send(&self, request: &HttpRequest, options: HttpOptions) -> Result<HttpResponse, Error>;
    /// Key-value store operations on the store called `store`. `Err` is a short
    /// description of the store failure (the caller degrades, it does not fail).
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String>;
    fn kv_delete(&self, store: &str, key: &str) -> Result<(), String>;
    /// Atomically add one to the counter at `key` (absent = 0) and return the new value
    /// (`wasi:keyvalue/atomics.increment`, atomic in every host we target).
    fn kv_increment(&self, store: &str, key: &str) -> Result<u64, String>;
    /// Write one audit line (already JSON, no newline).
    fn log(&self, line: &str);
}
