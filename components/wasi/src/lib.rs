//! The WASI 0.2 adapters both components share (built for `wasm32-wasip2` only):
//! `platform` implements the core's [`Platform`] with WASI calls, `outgoing` sends one
//! request through `wasi:http/outgoing-handler`, and [`with_provider`] keeps an
//! instance's settings and memory. Each function translates types or makes WASI calls;
//! decisions live in the core.
//!
//! The flavor (feature `wasmtime-flavor`) only picks which drafts of `wasi:keyvalue` and
//! `wasi:config` the imports are generated from (`wit/platform.wit`); the component that
//! links this crate imports the same interfaces in its own world.

mod outgoing;
mod platform;

pub use platform::WasiPlatform;

use std::cell::{OnceCell, RefCell};
use token_provider_core::{Error as CoreError, MemoryCache, Provider, Reading, Settings};

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

thread_local! {
    static SETTINGS: OnceCell<Settings> = const { OnceCell::new() };
    static MEMORY: RefCell<MemoryCache> = RefCell::new(MemoryCache::default());
}

/// `f` with this instance's settings and its provider. Settings are read once per
/// instance (the keys `reading` names: the same on every call of one component); a
/// failed read is retried on the next call.
pub fn with_provider<R>(
    reading: Reading,
    f: impl FnOnce(&Settings, &Provider<'_, WasiPlatform>) -> Result<R, CoreError>,
) -> Result<R, CoreError> {
    SETTINGS.with(|cell| {
        if cell.get().is_none() {
            let settings = load_settings(reading)?;
            let _ = cell.set(settings);
        }
        let settings = cell.get().expect("set above");
        MEMORY.with(|memory| {
            f(
                settings,
                &Provider {
                    settings: &settings.provider,
                    platform: &WasiPlatform,
                    memory,
                },
            )
        })
    })
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
