//! WASIp3 apps in the tests: `examples/p3-app` (a `wasi:http@0.3.0` service with no
//! OAuth code that forwards each request to the origin in its `x-forward-to` header),
//! alone or with the token interceptor plugged into its `wasi:http/client` import.

use bytes::Bytes;
use http_body_util::Full;
use token_provider_host::components::{EMBEDDED_DEMO_APP, EMBEDDED_INTERCEPTOR};

/// examples/p3-app, as the host embeds it (`host/build.rs` builds it).
pub fn p3_app() -> Vec<u8> {
    EMBEDDED_DEMO_APP.to_vec()
}

/// `app` with the interceptor plugged into its `wasi:http/client` import (what
/// `token-provider wrap` and `wac plug` do).
pub fn with_interceptor(app: Vec<u8>) -> Vec<u8> {
    token_provider_host::compose::wrap(&app, EMBEDDED_INTERCEPTOR).unwrap()
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
    forward_bytes(method, path, to, headers, Bytes::from_static(body))
}

/// [`forward`] with a body of any size.
pub fn forward_bytes(
    method: &str,
    path: &str,
    to: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::builder()
        .method(method)
        .uri(format!("http://app.example{path}"))
        .header("x-forward-to", to);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(body)).unwrap()
}
