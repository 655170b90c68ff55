//! Generated bindings for the component's two worlds. Embedders rarely need these:
//! [`TokenHost`](crate::TokenHost) calls the exports, and the WIT types it uses are
//! re-exported at the crate root.

/// `bindgen!` for one world of `wit/`, with the WASI interfaces both worlds share
/// mapped to wasmtime's own, plus `$with` for what differs.
macro_rules! provider_world {
    ($world:tt, { $($with:tt)* }) => {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: $world,
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
                "wasi:random": wasmtime_wasi::p2::bindings::random,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:keyvalue/store.bucket": crate::keyvalue::Bucket,
                $($with)*
            },
        });
    };
}

provider_world!("oauth2:token-provider/token-provider", {
    "wasi:keyvalue/atomics.cas": crate::keyvalue::Cas,
});

/// The wasmtime flavor's imports (`wasi:keyvalue@0.2.0-draft`, `wasi:config@0.2.0-rc.1`).
/// Its exports are the same interfaces as the Spin flavor's, so one set of export
/// bindings (this module's root) calls both flavors.
pub mod wasmtime_flavor {
    provider_world!("oauth2:token-provider/token-provider-wasmtime", {
        "oauth2:token-provider/types": crate::bindings::oauth2::token_provider::types,
    });
}
