//! WASIp3 apps in the tests: `examples/p3-app` (a `wasi:http@0.3.0` service with no
//! OAuth code that forwards each request to the origin in its `x-forward-to` header),
//! alone or with the token interceptor plugged into its `wasi:http/client` import.

use bytes::Bytes;
use http_body_util::Full;
use token_provider_host::components::EMBEDDED_INTERCEPTOR;
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

const P3_APP_BUILD: &str = "cargo build --manifest-path examples/p3-app/Cargo.toml --target wasm32-wasip2 --release --target-dir target/examples";

/// examples/p3-app, built.
pub fn p3_app() -> Vec<u8> {
    super::run_from_root(P3_APP_BUILD);
    std::fs::read(super::repo_root().join("target/examples/wasm32-wasip2/release/p3_app.wasm"))
        .unwrap()
}

/// `app` with the interceptor plugged into its `wasi:http/client` import (what
/// `wac plug` does).
pub fn with_interceptor(app: Vec<u8>) -> Vec<u8> {
    let mut graph = CompositionGraph::new();
    let app = Package::from_bytes("example:p3-app", None, app, graph.types_mut()).unwrap();
    let app = graph.register_package(app).unwrap();
    let interceptor = Package::from_bytes(
        "oauth2:token-interceptor",
        None,
        EMBEDDED_INTERCEPTOR.to_vec(),
        graph.types_mut(),
    )
    .unwrap();
    let interceptor = graph.register_package(interceptor).unwrap();
    wac_graph::plug(&mut graph, vec![interceptor], app).unwrap();
    graph.encode(EncodeOptions::default()).unwrap()
}

/// A request for the app: forwarded to `to` (an origin) with `path`, `headers` and
/// `body`.
pub fn forward(
    method: &str,
    path: &str,
    to: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::builder()
        .method(method)
        .uri(format!("http://app.example{path}"))
        .header("x-forward-to", to);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from_static(body))).unwrap()
}
