//! WASIp3 in the host: an ordinary `wasi:http@0.3.0` service component
//! (`examples/p3-app`, no OAuth code) handles requests in a fresh instance and sends its
//! own through the host's `wasi:http/client@0.3.0`, bodies streamed both ways. Without
//! the token interceptor the API sees no token and refuses.

use crate::common::p3::{forward, p3_app};
use crate::common::*;
use token_provider_host::Inherit;
use token_provider_host::testkit::testserver::MockServer;
use wasmtime::component::Component;

fn app(rig: &Rig) -> Component {
    Component::new(rig.host.engine(), p3_app()).unwrap()
}

#[tokio::test]
async fn a_wasip3_app_forwards_get_and_post_through_wasi_http_client() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let app = app(&rig);
    let to = server.origin();
    let grant = Inherit::NOTHING.outbound_http();

    let get = rig
        .host
        .handle_http(
            &app,
            grant,
            forward(
                "GET",
                "/api/orders?page=2",
                &to,
                &[("content-type", "text/plain")],
                b"",
            ),
        )
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
            forward(
                "POST",
                "/api/orders",
                &to,
                &[("content-type", "text/plain")],
                b"order=42",
            ),
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
    let app = app(&rig);
    let answer = rig
        .host
        .handle_http(
            &app,
            Inherit::NOTHING,
            forward("GET", "/api/orders", &server.origin(), &[], b""),
        )
        .await
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert!(server.api_requests().is_empty());
}
