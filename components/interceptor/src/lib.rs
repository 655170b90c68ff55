//! The token interceptor component: it exports and imports `wasi:http/client@0.3.0`
//! (`wit-interceptor/`) and attaches tokens from the core to an app's requests
//! (`client`), with the shared WASI adapters (`token-provider-wasi`) for the token
//! requests, the store and the settings. Built for `wasm32-wasip2` only; the flavor
//! (feature `wasmtime-flavor`) picks the world.

mod client;
mod platform;

// The interceptor's WIT has WASI 0.2 and 0.3 side by side, so every WASI module name
// carries its version.
mod bindings {
    #[cfg(not(feature = "wasmtime-flavor"))]
    wit_bindgen::generate!({
        path: "../../wit-interceptor",
        world: "oauth2:token-interceptor/token-interceptor",
        generate_all,
    });
    #[cfg(feature = "wasmtime-flavor")]
    wit_bindgen::generate!({
        path: "../../wit-interceptor",
        world: "oauth2:token-interceptor/token-interceptor-wasmtime",
        generate_all,
    });
}

struct Component;
bindings::export!(Component with_types_in bindings);
