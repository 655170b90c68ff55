//! WASIp3 in the host: an ordinary `wasi:http@0.3.0` service component
//! (`examples/p3-app`, no OAuth code) handles requests in a fresh instance and sends its
//! own through the host's `wasi:http/client@0.3.0`, bodies streamed both ways. Without
//! the token interceptor the API sees no token and refuses.

use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use token_provider_host::Inherit;
use token_provider_host::testkit::testserver::MockServer;
use wasmtime::component::Component;

const P3_APP_BUILD: &str = "cargo build --manifest-path examples/p3-app/Cargo.toml --target wasm32-wasip2 --release --target-dir target/examples";

fn p3_app(rig: &Rig) -> Component {
    run_from_root(P3_APP_BUILD);
    let path = repo_root().join("target/examples/wasm32-wasip2/release/p3_app.wasm");
    Component::new(rig.host.engine(), std::fs::read(path).unwrap()).unwrap()
}

fn request(method: &str, path: &str, to: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://app.example{path}"))
        .header("x-forward-to", to)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

#[tokio::test]
async fn a_wasip3_app_forwards_get_and_post_through_wasi_http_client() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let app = p3_app(&rig);
    let to = server.origin();
    let grant = Inherit::NOTHING.outbound_http();

    let get = rig
        .host
        .handle_http(&app, grant, request("GET", "/api/orders?page=2", &to, b""))
        .await
        .unwrap()
        .unwrap();
    // No token anywhere: the API refuses, and says why.
    assert_eq!(get.status(), 401);
    assert!(
        std::str::from_utf8(get.body())
            .unwrap()
            .contains("no bearer token"),
        "{get:?}"
    );

    let post = rig
        .host
        .handle_http(
            &app,
            grant,
            request("POST", "/api/orders", &to, b"order=42"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(post.status(), 401);

    let seen = server.api_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (
            seen[0].method.as_str(),
            seen[0].path.as_str(),
            seen[0].query.as_deref()
        ),
        ("GET", "/api/orders", Some("page=2"))
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].body.as_slice()),
        ("POST", &b"order=42"[..])
    );
    assert_eq!(seen[1].header("content-type"), Some("text/plain"));
    assert!(seen.iter().all(|r| r.header("authorization").is_none()));
    assert!(seen.iter().all(|r| r.header("x-forward-to").is_none()));
    assert!(server.token_requests().is_empty());
}

#[tokio::test]
async fn a_wasip3_app_without_outbound_http_cannot_reach_the_api() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let app = p3_app(&rig);
    let answer = rig
        .host
        .handle_http(
            &app,
            Inherit::NOTHING,
            request("GET", "/api/orders", &server.origin(), b""),
        )
        .await
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert!(server.api_requests().is_empty());
}
