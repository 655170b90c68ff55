//! The token provider component: the `provider`, `authorized-client` and `dpop` exports of
//! `wit/token-provider.wit` over the core, with the shared WASI adapters
//! (`token-provider-wasi`). Built for `wasm32-wasip2` only; the flavor (feature
//! `wasmtime-flavor`) picks the world, and with it which drafts are imported.

mod convert;
mod guest;

#[cfg(not(feature = "wasmtime-flavor"))]
wit_bindgen::generate!({
    path: "../../wit",
    world: "oauth2:token-provider/token-provider",
    generate_all,
});
#[cfg(feature = "wasmtime-flavor")]
wit_bindgen::generate!({
    path: "../../wit",
    world: "oauth2:token-provider/token-provider-wasmtime",
    generate_all,
});

use oauth2::token_provider::types as wit;

struct Component;
export!(Component);
