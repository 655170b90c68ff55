//! The WASI 0.2 adapters both components share (built for `wasm32-wasip2` only):
//! `platform` implements the core's [`Platform`] with WASI calls, `outgoing` sends one
//! request through `wasi:http/outgoing-handler`, and [`with_provider`] keeps an
//! instance's settings and memory. Each function translates types or makes WASI calls;
//! decisions live in the core.
//!
//! The flavor (feature `wasmtime-flavor`) only picks which drafts of `wasi:keyvalue` and
//! `wasi:config` the imports are generated from (`wit/platform.wit`); the component that
//! links this crate imports the same interfaces in its own world.

mod error_code;
mod outgoing;
mod platform;
mod target;

pub use platform::WasiPlatform;
// What `error_code_mapping!` names, wherever it is expanded.
#[doc(hidden)]
pub use token_provider_core::{Error as CoreError, Scheme as CoreScheme, sanitize};

use std::cell::{Cell, RefCell};
use token_provider_core::{MemoryCache, Platform, Provider, Reading, Settings, ready};

#[cfg(not(feature = "wasmtime-flavor"))]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider-platform/platform",
    generate_all,
});
#[cfg(feature = "wasmtime-flavor")]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider-platform/platform-wasmtime",
    generate_all,
});

// Both drafts are in wit/deps, so the bindings carry the version in the module name.
#[cfg(not(feature = "wasmtime-flavor"))]
use wasi::{config0_2_0_draft_2024_09_27 as config, keyvalue0_2_0_draft2 as keyvalue};
#[cfg(feature = "wasmtime-flavor")]
use wasi::{config0_2_0_rc_1 as config, keyvalue0_2_0_draft as keyvalue};

/// One instance's settings (read once) and memory. Made once per instance and never
/// freed (`&'static`): a task an export spawns (a renewal that outlives the request's
/// answer) may use it, and the instance's memory goes with the instance.
pub struct Instance {
    pub settings: Settings,
    pub memory: RefCell<MemoryCache>,
}

impl Instance {
    /// The provider of this instance over `platform`.
    pub fn provider<'a, P: Platform>(&'a self, platform: &'a P) -> Provider<'a, P> {
        Provider {
            settings: &self.settings.provider,
            platform,
            memory: &self.memory,
        }
    }
}

thread_local! {
    static INSTANCE: Cell<Option<&'static Instance>> = const { Cell::new(None) };
}

/// This instance's settings and memory. Settings are read once per instance (the keys
/// `reading` names: the same on every call of one component); a failed read is retried
/// on the next call.
pub fn instance(reading: Reading) -> Result<&'static Instance, CoreError> {
    if let Some(instance) = INSTANCE.get() {
        return Ok(instance);
    }
    let instance: &'static Instance = Box::leak(Box::new(Instance {
        settings: load_settings(reading)?,
        memory: RefCell::new(MemoryCache::default()),
    }));
    INSTANCE.set(Some(instance));
    Ok(instance)
}

/// `f` with this instance's settings and its provider over the blocking WASI 0.2
/// platform (whose futures are ready at once: [`ready`] drives them).
pub fn with_provider<R, F: Future<Output = Result<R, CoreError>>>(
    reading: Reading,
    f: impl FnOnce(&'static Settings, Provider<'static, WasiPlatform>) -> F,
) -> Result<R, CoreError> {
    let instance = instance(reading)?;
    ready(f(&instance.settings, instance.provider(&WasiPlatform)))
}

/// The settings from `wasi:config`: every key in one `get-all` call (each host call
/// costs more than reading its answer, and a fresh instance per request pays it every
/// time); a host whose `get-all` fails is asked key by key, so its error names the key.
fn load_settings(reading: Reading) -> Result<Settings, CoreError> {
    let all = config::store::get_all().ok();
    // One reader for both ways (one copy of the settings code in the component).
    Settings::read(
        |key| match &all {
            // A few dozen pairs at most: a scan is smaller than a map and as fast.
            Some(pairs) => Ok(pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())),
            None => config::store::get(key).map_err(|e| match e {
                config::store::Error::Upstream(m) | config::store::Error::Io(m) => m,
            }),
        },
        reading,
    )
}
