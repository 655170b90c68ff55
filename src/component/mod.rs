//! The adapters: WASI bindings for the core (built only for wasm32). `convert` maps
//! WIT types to core types and back, `platform` implements [`Platform`] with WASI calls,
//! `outgoing` sends one request through `wasi:http/outgoing-handler`. Each function
//! translates types or makes WASI calls; decisions live in the core modules.

mod convert;
mod outgoing;
mod platform;

use crate::authorized::{self, ApiRequest};
use crate::config::Settings;
use crate::error::Error as CoreError;
use crate::memory::MemoryCache;
use crate::provider::Provider;
use convert::{core_token_request, wit_error, wit_token};
use platform::WasiPlatform;
use std::cell::{OnceCell, RefCell};

// One source, two flavors: only the world (which WASI drafts are imported) differs.
// The draft keyvalue/config interfaces the adapters call have the same shape in both.
#[cfg(not(feature = "wasmtime-flavor"))]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider/token-provider",
    generate_all,
});
#[cfg(feature = "wasmtime-flavor")]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider/token-provider-wasmtime",
    generate_all,
});

// Both drafts are in wit/deps, so the bindings carry the version in the module name.
#[cfg(not(feature = "wasmtime-flavor"))]
use wasi::{config0_2_0_draft_2024_09_27 as config, keyvalue0_2_0_draft2 as keyvalue};
#[cfg(feature = "wasmtime-flavor")]
use wasi::{config0_2_0_rc_1 as config, keyvalue0_2_0_draft as keyvalue};

use exports::oauth2::token_provider::authorized_client;
use exports::oauth2::token_provider::provider;
use oauth2::token_provider::types as wit;

struct Component;
export!(Component);

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

impl provider::Guest for Component {
    fn get_token(request: wit::TokenRequest) -> Result<wit::AccessToken, wit::Error> {
        let request = core_token_request(request);
        with_provider(|p| p.get_token(&request))
            .map(wit_token)
            .map_err(wit_error)
    }

    fn invalidate(request: wit::TokenRequest) {
        let request = core_token_request(request);
        // Without valid settings there is nothing cached to drop.
        let _ = with_provider(|p| {
            p.invalidate(&request);
            Ok(())
        });
    }
}

impl authorized_client::Guest for Component {
    fn send(
        request: authorized_client::Request,
    ) -> Result<authorized_client::Response, wit::Error> {
        let request = ApiRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            token: request.token.map(core_token_request),
        };
        with_provider(|p| authorized::send(p, &request))
            .map(|r| authorized_client::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(wit_error)
    }
}
