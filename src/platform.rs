//! What the core needs from the outside world. The component implements it with WASI
//! calls (`adapters`); tests implement it with fakes and a hand-driven clock.

use crate::error::Error;
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};

pub trait Platform {
    /// Wall clock, Unix seconds.
    fn now_unix_secs(&self) -> u64;
    /// Monotonic clock, milliseconds (for durations only).
    fn monotonic_ms(&self) -> u64;
    /// Cryptographically secure random bytes.
    fn random_bytes(&self, out: &mut [u8]);
    /// Send one request and read the whole response (bounded by `options`).
    fn send(&self, request: &HttpRequest, options: HttpOptions) -> Result<HttpResponse, Error>;
    /// Key-value store operations on the store called `store`. `Err` is a short
    /// description of the store failure (the caller degrades, it does not fail).
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String>;
    fn kv_delete(&self, store: &str, key: &str) -> Result<(), String>;
    /// Write one audit line (already JSON, no newline).
    fn log(&self, line: &str);
}
