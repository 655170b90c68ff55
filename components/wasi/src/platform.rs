//! [`Platform`] over WASI: clocks, random, key-value buckets (opened once per
//! instance), outbound HTTP (`outgoing`) and stderr.

use super::{keyvalue, wasi};
use std::cell::RefCell;
use token_provider_core::{
    Error as CoreError, HttpOptions, HttpRequest, HttpResponse, Platform, sanitize,
};

thread_local! {
    /// The buckets this instance opened, by label (one, usually).
    static BUCKETS: RefCell<Vec<(String, keyvalue::store::Bucket)>> = const { RefCell::new(Vec::new()) };
}

/// [`Platform`] over this instance's WASI imports.
pub struct WasiPlatform;

impl WasiPlatform {
    fn with_bucket<R>(
        &self,
        store: &str,
        f: impl FnOnce(&keyvalue::store::Bucket) -> Result<R, keyvalue::store::Error>,
    ) -> Result<R, String> {
        BUCKETS.with(|buckets| {
            let mut buckets = buckets.borrow_mut();
            let i = match buckets.iter().position(|(label, _)| label == store) {
                Some(i) => i,
                None => {
                    let bucket = keyvalue::store::open(store).map_err(kv_error)?;
                    buckets.push((store.to_string(), bucket));
                    buckets.len() - 1
                }
            };
            f(&buckets[i].1).map_err(kv_error)
        })
    }
}

fn kv_error(e: keyvalue::store::Error) -> String {
    use keyvalue::store::Error as E;
    match e {
        E::NoSuchStore => "no such store".into(),
        E::AccessDenied => {
            "access denied (is the store in the component's key_value_stores?)".into()
        }
        E::Other(m) => sanitize(&m, 200),
    }
}

impl Platform for WasiPlatform {
    fn now_unix_ms(&self) -> u64 {
        let now = wasi::clocks::wall_clock::now();
        now.seconds
            .saturating_mul(1000)
            .saturating_add(u64::from(now.nanoseconds / 1_000_000))
    }

    fn monotonic_ms(&self) -> u64 {
        wasi::clocks::monotonic_clock::now() / 1_000_000
    }

    async fn sleep_ms(&self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }

    fn random_bytes(&self, out: &mut [u8]) {
        let bytes = wasi::random::random::get_random_bytes(out.len() as u64);
        out.copy_from_slice(&bytes[..out.len()]);
    }

    async fn send(
        &self,
        request: &HttpRequest,
        options: HttpOptions,
    ) -> Result<HttpResponse, CoreError> {
        super::outgoing::send(request, options)
    }

    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with_bucket(store, |b| b.get(key))
    }

    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.with_bucket(store, |b| b.set(key, value))
    }

    fn kv_delete(&self, store: &str, key: &str) -> Result<(), String> {
        self.with_bucket(store, |b| b.delete(key))
    }

    fn kv_increment(&self, store: &str, key: &str) -> Result<u64, String> {
        // draft2 (Spin) counts in s64, draft (wasmtime) in u64; we only ever add 1.
        #[cfg(not(feature = "wasmtime-flavor"))]
        let count = self
            .with_bucket(store, |b| keyvalue::atomics::increment(b, key, 1))
            .and_then(|n| u64::try_from(n).map_err(|_| "lease counter is negative".into()));
        #[cfg(feature = "wasmtime-flavor")]
        let count = self.with_bucket(store, |b| keyvalue::atomics::increment(b, key, 1));
        count
    }

    fn log(&self, line: &str) {
        // One write for the line and its newline: `eprintln!` writes them separately,
        // and instances that share a stderr (a host's log pipe) then interleave lines.
        use std::io::Write;
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        let _ = std::io::stderr().write_all(buf.as_bytes());
    }
}
