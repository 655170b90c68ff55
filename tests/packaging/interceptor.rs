//! The token interceptor composed in front of an app that knows nothing of OAuth
//! (`examples/p3-app`, written only against `wasi:http@0.3.0`), the way `wac plug`
//! composes them, run in the host against the in-process token server and API.

use crate::common::p3::{forward, p3_app, with_interceptor};
use crate::common::*;
use token_provider_host::Inherit;
use token_provider_host::testkit::testserver::MockServer;
use wasmtime::component::Component;

#[tokio::test]
async fn an_app_without_oauth_code_gets_tokens_on_allowed_origins_only() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // Another API, not in allowed_origins: it must never see a token.
    let other = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    // The interceptor inside the composition reads its settings and store through the
    // composition's imports, so the composition gets them all (as with the provider).
    let send = |req| rig.host.handle_http(&composed, Inherit::ALL, req);

    let get = send(forward(
        "GET",
        "/api/orders?page=2",
        &server.origin(),
        &[],
        b"",
    ))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(get.status(), 200, "{get:?}");
    let post = send(forward(
        "POST",
        "/api/orders",
        &server.origin(),
        &[("content-type", "text/plain")],
        b"order=42",
    ))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(post.status(), 200, "{post:?}");

    let unmatched = send(forward("GET", "/api/orders", &other.origin(), &[], b""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unmatched.status(), 401);
    let own = send(forward(
        "GET",
        "/api/orders",
        &server.origin(),
        &[("authorization", "Bearer the-apps-own")],
        b"",
    ))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(own.status(), 401);

    // One token for the whole run (fresh instances: from the store after the first).
    assert_eq!(server.token_requests().len(), 1);
    let token = &server.issued_tokens()[0];
    let seen = server.api_requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let bearer = format!("Bearer {token}");
    assert_eq!(seen[0].header("authorization"), Some(bearer.as_str()));
    assert_eq!(seen[0].query.as_deref(), Some("page=2"));
    assert_eq!(seen[1].header("authorization"), Some(bearer.as_str()));
    assert_eq!(
        (seen[1].method.as_str(), seen[1].body.as_slice()),
        ("POST", &b"order=42"[..])
    );
    assert_eq!(seen[2].header("authorization"), Some("Bearer the-apps-own"));
    let elsewhere = other.api_requests();
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].header("authorization"), None);

    // Audit: a line per request, the token never in it.
    let log = String::from_utf8_lossy(&rig.log.contents()).into_owned();
    assert!(!log.contains(token.as_str()), "{log}");
    assert!(!log.contains(CLIENT_SECRET), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["event"] == "intercept.send")
        .collect();
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|v| v["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "passed", "passed"], "{log}");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(
        lines[2]["detail"],
        token_provider::intercept::NOT_ROUTED,
        "{log}"
    );
    assert_eq!(
        lines[3]["detail"],
        token_provider::intercept::APP_AUTHORIZATION,
        "{log}"
    );
}

/// Provider and interceptor instances on one store share the token: the interceptor's
/// request carries the token the provider fetched, and the token endpoint saw one
/// request.
#[tokio::test]
async fn the_interceptor_and_the_provider_share_a_token_through_the_store() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let fetched = token(
        &rig.host,
        &token_provider_host::TokenRequest::default_request(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.source, token_provider_host::TokenSource::Fresh);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let answer = rig
        .host
        .handle_http(
            &composed,
            Inherit::ALL,
            forward("GET", "/api/orders", &server.origin(), &[], b""),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(server.token_requests().len(), 1);
    let bearer = format!("Bearer {}", server.issued_tokens()[0]);
    assert_eq!(
        server.api_requests()[0].header("authorization"),
        Some(bearer.as_str())
    );
}

/// 100 requests at once on one instance of the composition, cold cache: one token
/// request, and every request carries that token.
#[tokio::test]
async fn a_hundred_concurrent_requests_on_one_instance_make_one_token_request() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let requests = (0..100)
        .map(|i| {
            forward(
                "GET",
                &format!("/api/orders/{i}"),
                &server.origin(),
                &[],
                b"",
            )
        })
        .collect();
    let answers = rig
        .host
        .handle_http_concurrently(&composed, Inherit::ALL, requests)
        .await
        .unwrap();
    assert_eq!(answers.len(), 100);
    for answer in &answers {
        assert_eq!(answer.as_ref().unwrap().status(), 200, "{answer:?}");
    }
    assert_eq!(server.token_requests().len(), 1);
    let bearer = format!("Bearer {}", server.issued_tokens()[0]);
    let seen = server.api_requests();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(bearer.as_str()))
    );
}
