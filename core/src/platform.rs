//! What the core needs from the outside world. The components implement it with WASI
//! calls (`WasiPlatform` in the `token-provider-wasi` crate, `components/wasi/`); native
//! tests implement it with fakes and a hand-driven clock (`testing.rs`).

use crate::error::Error;
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};

/// Waiting (`sleep_ms`) and the network (`send`) are `async`: a WASIp3 adapter awaits
/// them and its instance keeps serving other requests meanwhile. Every other call is a
/// short host call and stays synchronous. A platform whose futures never wait (the
/// WASI 0.2 adapters, the tests' fakes) drives the core with [`ready`].
// The core runs on one thread (a component instance): its futures need not be `Send`.
#[allow(async_fn_in_trait)]
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
    /// Wait `ms` milliseconds. A WASI 0.2 adapter blocks the instance (the host keeps
    /// running others); a WASIp3 one yields, and the instance serves other requests.
    async fn sleep_ms(&self, ms: u64);
    /// Cryptographically secure random bytes.
    fn random_bytes(&self, out: &mut [u8]);
    /// A uniformly random number in `0..bound` (`bound` > 0), for jitter.
    fn random_below(&self, bound: u64) -> u64 {
        let mut b = [0u8; 8];
        self.random_bytes(&mut b);
        u64::from_le_bytes(b) % bound.max(1)
    }
    /// Send one request and read the whole response (bounded by `options`).
    async fn send(
        &self,
        request: &HttpRequest,
        options: HttpOptions,
    ) -> Result<HttpResponse, Error>;
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

/// The output of `future`, which must complete on its first poll: the core's futures
/// over a platform whose `sleep_ms` and `send` return only when done (the WASI 0.2
/// adapters block; the tests' fakes move a clock), so there is no executor to run.
///
/// # Panics
/// If `future` waits: a platform that yields must be driven by its own executor.
pub fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => {
            panic!("a platform that waits needs an executor (platform::ready runs none)")
        }
    }
}
