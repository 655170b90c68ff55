//! The adapters: WASI bindings for the core (built only for wasm32). `platform`
//! implements [`Platform`] with WASI calls, `outgoing` sends one request through
//! `wasi:http/outgoing-handler`. The provider's exports are in `provider_exports` (with
//! `convert`, which maps WIT types to core types and back); the interceptor's in
//! `interceptor` (feature `interceptor`). Each function translates types or makes WASI
//! calls; decisions live in the core modules.

#[cfg(not(feature = "interceptor"))]
mod convert;
#[cfg(feature = "interceptor")]
mod interceptor;
mod outgoing;
mod platform;
#[cfg(not(feature = "interceptor"))]
mod provider_exports;

use crate::config::Settings;
use crate::error::Error as CoreError;
use crate::memory::MemoryCache;
use crate::provider::Provider;
use platform::WasiPlatform;
use std::cell::{OnceCell, RefCell};

// One source, four builds: the provider or the interceptor (feature `interceptor`),
// each in two flavors; only the world (which WASI drafts are imported, what is
// exported) differs. The draft keyvalue/config interfaces the adapters call have the
// same shape in both flavors.
#[cfg(all(not(feature = "interceptor"), not(feature = "wasmtime-flavor")))]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider/token-provider",
    generate_all,
});
#[cfg(all(not(feature = "interceptor"), feature = "wasmtime-flavor"))]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider/token-provider-wasmtime",
    generate_all,
});

// Both drafts are in wit/deps, so the bindings carry the version in the module name.
#[cfg(all(not(feature = "interceptor"), not(feature = "wasmtime-flavor")))]
use wasi::{config0_2_0_draft_2024_09_27 as config, keyvalue0_2_0_draft2 as keyvalue};
#[cfg(all(not(feature = "interceptor"), feature = "wasmtime-flavor"))]
use wasi::{config0_2_0_rc_1 as config, keyvalue0_2_0_draft as keyvalue};

#[cfg(not(feature = "interceptor"))]
use oauth2::token_provider::types as wit;

// The interceptor's WIT has WASI 0.2 and 0.3 side by side (wit-interceptor/), so every
// WASI module name carries its version; `wasi` below gives the adapters the 0.2 names
// the provider build has.
#[cfg(feature = "interceptor")]
mod bindings {
    #[cfg(not(feature = "wasmtime-flavor"))]
    wit_bindgen::generate!({
        path: "wit-interceptor",
        world: "oauth2:token-interceptor/token-interceptor",
        generate_all,
    });
    #[cfg(feature = "wasmtime-flavor")]
    wit_bindgen::generate!({
        path: "wit-interceptor",
        world: "oauth2:token-interceptor/token-interceptor-wasmtime",
        generate_all,
    });
}
#[cfg(feature = "interceptor")]
mod wasi {
    pub use super::bindings::wasi::{
        clocks0_2_6 as clocks, http0_2_6 as http, http0_3_0 as http_p3, io, random0_2_6 as random,
    };
}
#[cfg(all(feature = "interceptor", not(feature = "wasmtime-flavor")))]
use bindings::wasi::{config0_2_0_draft_2024_09_27 as config, keyvalue0_2_0_draft2 as keyvalue};
#[cfg(all(feature = "interceptor", feature = "wasmtime-flavor"))]
use bindings::wasi::{config0_2_0_rc_1 as config, keyvalue0_2_0_draft as keyvalue};

struct Component;
#[cfg(not(feature = "interceptor"))]
export!(Component);
#[cfg(feature = "interceptor")]
bindings::export!(Component with_types_in bindings);

thread_local! {
    static SETTINGS: OnceCell<Settings> = const { OnceCell::new() };
    static MEMORY: RefCell<MemoryCache> = RefCell::new(MemoryCache::default());
}

/// Settings are read once per instance; a failed read is retried on the next call.
fn with_provider<R>(
    f: impl FnOnce(&Provider<'_, WasiPlatform>) -> Result<R, CoreError>,
) -> Result<R, CoreError> {
    SETTINGS.with(|cell| {
        if cell.get().is_none() {
            let settings = load_settings()?;
            let _ = cell.set(settings);
        }
        let settings = cell.get().expect("set above");
        MEMORY.with(|memory| {
            f(&Provider {
                settings,
                platform: &WasiPlatform,
                memory,
            })
        })
    })
}

/// The settings from `wasi:config`: every key in one `get-all` call (each host call
/// costs more than reading its answer, and a fresh instance per request pays it every
/// time); a host whose `get-all` fails is asked key by key, so its error names the key.
fn load_settings() -> Result<Settings, CoreError> {
    let all = config::store::get_all().ok();
    // One reader for both ways (one copy of the settings code in the component).
    Settings::load(|key| match &all {
        // A few dozen pairs at most: a scan is smaller than a map and as fast.
        Some(pairs) => Ok(pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())),
        None => config::store::get(key).map_err(|e| match e {
            config::store::Error::Upstream(m) | config::store::Error::Io(m) => m,
        }),
    })
}
