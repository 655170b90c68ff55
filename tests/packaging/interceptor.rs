//! The token interceptor composed in front of an app that knows nothing of OAuth
//! (`examples/p3-app`, written only against `wasi:http@0.3.0`), the way `wac plug`
//! composes them, run in the host against the in-process token server and API.

use crate::common::oidc::{OidcPeer, TestPki};
use crate::common::p3::{forward, forward_bytes, p3_app, with_interceptor};
use crate::common::*;
use token_provider_host::testkit::bulk::{BulkApi, pattern_bytes};
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{Inherit, LogSink, MemoryPeak, TokenHost};
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
        token_provider_core::internal::NOT_ROUTED,
        "{log}"
    );
    assert_eq!(
        lines[3]["detail"],
        token_provider_core::internal::APP_AUTHORIZATION,
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
    let answer = through(
        &rig,
        forward("GET", "/api/orders", &server.origin(), &[], b""),
    )
    .await
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

/// `request` through examples/p3-app composed with the interceptor, in a fresh instance
/// of `rig`'s host.
async fn through(
    rig: &Rig,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<token_provider_host::serve::ServiceResponse, token_provider_host::serve::ErrorCode> {
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    rig.host
        .handle_http(&composed, Inherit::ALL, request)
        .await
        .unwrap()
}

/// The audit lines of the interceptor, in order.
fn intercept_lines(rig: &Rig) -> Vec<serde_json::Value> {
    rig.audit_lines()
        .into_iter()
        .filter(|v| v["event"] == "intercept.send")
        .collect()
}

/// An allowed API that cannot be reached: the app gets the host's error code, and the
/// audit line says what happened in words (not a `Debug` dump of the error code).
#[tokio::test]
async fn an_api_that_cannot_be_reached_is_an_error_the_audit_line_names() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let allowed = format!("{} {down}", server.origin());
    let rig = rig(&server, &[("allowed_origins", allowed.as_str())]);
    let answer = through(&rig, forward("GET", "/api/orders", &down, &[], b"")).await;
    assert!(answer.is_err(), "{answer:?}");
    let lines = intercept_lines(&rig);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "error", "{lines:?}");
    assert_eq!(
        lines[0]["detail"], "the API was not reached: transport: connection refused",
        "{lines:?}"
    );
}

/// A 401 to a request whose body can be sent again (none, or one within
/// `retry_body_bytes`, with or without a length): the token is dropped, a new one
/// fetched, and the request sent once more with the same body; the app sees only the
/// second answer. A larger body streams through: its 401 goes back to the app, and the
/// next request gets a new token without a 401 first.
#[tokio::test]
async fn a_401_is_retried_when_the_body_can_be_sent_again_and_passed_back_otherwise() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // Each step revokes the token of the step before, seconds old: without
    // min_token_age_secs, which would keep it (`an_api_that_refuses_every_token_…`).
    let rig = rig(
        &server,
        &[("retry_body_bytes", "16"), ("min_token_age_secs", "0")],
    );
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let send = |req| rig.host.handle_http(&composed, Inherit::ALL, req);
    let get = || forward("GET", "/api/orders", &server.origin(), &[], b"");
    assert_eq!(send(get()).await.unwrap().unwrap().status(), 200);

    // The token is revoked: the next GET (a fresh instance: the token comes from the
    // store) is answered 401, then sent again with a new token.
    server.revoke_all();
    assert_eq!(send(get()).await.unwrap().unwrap().status(), 200);
    let tokens = server.issued_tokens();
    assert_eq!(tokens.len(), 2);
    let auth: Vec<Option<String>> = server
        .api_requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_string))
        .collect();
    let bearer = |i: usize| Some(format!("Bearer {}", tokens[i]));
    assert_eq!(auth, [bearer(0), bearer(0), bearer(1)]);

    // A small body, streamed without a length and with one: kept, and sent again.
    let small = b"order=42";
    for headers in [
        &[("content-type", "text/plain")][..],
        &[("content-type", "text/plain"), ("content-length", "8")][..],
    ] {
        server.revoke_all();
        let post = forward("POST", "/api/orders", &server.origin(), headers, small);
        let answer = send(post).await.unwrap().unwrap();
        assert_eq!(answer.status(), 200, "{headers:?}");
        let seen = server.api_requests();
        let tokens = server.issued_tokens();
        let (refused, retried) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
        for (request, token) in [
            (refused, &tokens[tokens.len() - 2]),
            (retried, &tokens[tokens.len() - 1]),
        ] {
            assert_eq!(request.body, small, "{headers:?}");
            assert_eq!(
                request.header("authorization"),
                Some(format!("Bearer {token}").as_str())
            );
        }
    }
    assert_eq!(server.issued_tokens().len(), 4);

    // A body over retry_body_bytes (16), without a length (found out by reading) and
    // with one (streamed unread): the 401 reaches the app, once each.
    let large = b"order=42&note=more-than-sixteen-bytes";
    let length = large.len().to_string();
    for headers in [
        &[("content-type", "text/plain")][..],
        &[
            ("content-type", "text/plain"),
            ("content-length", length.as_str()),
        ][..],
    ] {
        server.revoke_all();
        let post = forward("POST", "/api/orders", &server.origin(), headers, large);
        let answer = send(post).await.unwrap().unwrap();
        assert_eq!(answer.status(), 401, "{headers:?}");
        let last = server.api_requests().pop().unwrap();
        assert_eq!(last.body, large, "{headers:?}");
        // The rejected token was dropped: the next request asks for a new one and is
        // answered 200 at once.
        let before = server.api_requests().len();
        assert_eq!(send(get()).await.unwrap().unwrap().status(), 200);
        assert_eq!(server.api_requests().len(), before + 1, "no second 401");
    }
    assert_eq!(server.issued_tokens().len(), 6);

    let lines = intercept_lines(&rig);
    let summary: Vec<(String, u64, bool)> = lines
        .iter()
        .map(|v| {
            (
                v["outcome"].as_str().unwrap().to_string(),
                v["status"].as_u64().unwrap(),
                v["detail"] == token_provider_core::RETRIED_AFTER_401,
            )
        })
        .collect();
    let ok = |status, retried| ("ok".to_string(), status, retried);
    assert_eq!(
        summary,
        [
            ok(200, false),
            ok(200, true),
            ok(200, true),
            ok(200, true),
            ok(401, false),
            ok(200, false),
            ok(401, false),
            ok(200, false)
        ]
    );
    rig.assert_log_holds_no_token(&server);
}

/// An API that answers 401 to every token (it checks them against another issuer),
/// 200 requests to it through fresh instances, each followed by one to an API that
/// accepts the token: the refusing API costs the fleet the first token's drop and
/// no more within `min_token_age_secs` (the run takes seconds), and the other API
/// answers 200 every time.
#[tokio::test]
async fn an_api_that_refuses_every_token_does_not_churn_the_fleets_token() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let refusing = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let allowed = format!("{},{}", server.origin(), refusing.origin());
    let rig = rig(&server, &[("allowed_origins", &allowed)]);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let send = |req| rig.host.handle_http(&composed, Inherit::ALL, req);
    let started = std::time::Instant::now();
    let mut refused = 0;
    for _ in 0..200 {
        let to_refusing = forward("GET", "/api/x", &refusing.origin(), &[], b"");
        refused += usize::from(send(to_refusing).await.unwrap().unwrap().status() == 401);
        let to_server = forward("GET", "/api/x", &server.origin(), &[], b"");
        assert_eq!(send(to_server).await.unwrap().unwrap().status(), 200);
    }
    let elapsed = started.elapsed();
    let fetched = server.token_requests().len();
    eprintln!(
        "200 refused requests and 200 accepted ones through fresh instances in {elapsed:?}: {fetched} token requests"
    );
    assert_eq!(refused, 200);
    // The first token (dropped after the refusing API's first 401) and its successor;
    // one more per 30 s of run.
    assert!(
        fetched as u64 <= 2 + elapsed.as_secs() / 30,
        "{fetched} token requests in {elapsed:?}"
    );
    let kept = rig
        .audit_lines()
        .into_iter()
        .filter(|v| v["event"] == "token.invalidate" && v["outcome"] == "kept")
        .count();
    assert!(kept >= 190, "{kept} young tokens kept");
    rig.assert_log_holds_no_token(&server);
}

/// Headers that address the connection or frame the message are the host's: the app
/// cannot set `host`, `proxy-authorization` or `transfer-encoding` (wasmtime-wasi-http's
/// default forbidden list, which Spin 4.1 keeps), so no such header can steer a request
/// that carries the token; the same headers on the request the app received never reach
/// the app.
#[tokio::test]
async fn headers_the_host_forbids_never_travel_with_the_token() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let send = |req| rig.host.handle_http(&composed, Inherit::ALL, req);
    for (name, value) in [
        ("host", "evil.example"),
        ("proxy-authorization", "Basic YWRtaW46YWRtaW4="),
        ("transfer-encoding", "chunked"),
    ] {
        let set = format!("{name}: {value}");
        let req = forward(
            "GET",
            "/api/x",
            &server.origin(),
            &[("x-forward-set", &set)],
            b"",
        );
        let answer = send(req).await.unwrap();
        match answer {
            Err(token_provider_host::serve::ErrorCode::InternalError(Some(why))) => {
                assert!(why.starts_with(name) && why.contains("Forbidden"), "{why}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(server.api_requests().is_empty(), "nothing was sent");
    // Sent to the app, they are gone before it sees them: what it forwards has none.
    let req = forward(
        "GET",
        "/api/x",
        &server.origin(),
        &[("proxy-authorization", "Basic YWRtaW46YWRtaW4=")],
        b"",
    );
    assert_eq!(send(req).await.unwrap().unwrap().status(), 200);
    let seen = &server.api_requests()[0];
    assert_eq!(seen.header("proxy-authorization"), None);
    assert!(seen.header("authorization").unwrap().starts_with("Bearer "));
    rig.assert_log_holds_no_token(&server);
}

/// An app that writes the scheme in capitals (`HTTPS`, which wasi:http passes as
/// `other`): the interceptor matches the origin case-insensitively, so the token is
/// due, and it sends the request with the scheme it checked. Sent as the app wrote it,
/// wasmtime-wasi-http (and Spin 4.1, which keeps its `is_supported_scheme`) refuses
/// the scheme (`HTTP-protocol-error`); a host that took `other` schemes would see no
/// `https` and could open a plain connection, the token in clear. Here the origin
/// `https://127.0.0.1:PORT` is allowed while the server there speaks plain HTTP: the
/// TLS handshake fails and the server never sees the token.
#[tokio::test]
async fn a_scheme_in_capitals_goes_out_as_the_origin_was_checked() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let https_there = format!("https://{}", server.addr());
    let allowed = format!("{},{https_there}", server.origin());
    let rig = rig(&server, &[("allowed_origins", &allowed)]);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let send = |req| rig.host.handle_http(&composed, Inherit::ALL, req);
    let capital_https = format!("HTTPS://{}", server.addr());
    let answer = send(forward("GET", "/api/x", &capital_https, &[], b""))
        .await
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert!(
        server.api_requests().is_empty(),
        "the token went in clear: {:?}",
        server.api_requests()
    );
    // `HTTP` in capitals (plain http allowed here): sent as http, with the token.
    let capital_http = format!("HTTP://{}", server.addr());
    let answer = send(forward("GET", "/api/x", &capital_http, &[], b""))
        .await
        .unwrap();
    assert_eq!(answer.unwrap().status(), 200);
    assert_eq!(server.api_requests().len(), 1);
    rig.assert_log_holds_no_token(&server);
}

/// A redirect from the API goes back to the app as it came: neither this host nor
/// Spin's outbound client follows redirects, so the token never follows one to another
/// origin. A request the app then sends to the new location goes through the
/// interceptor again, and gets a token only if that origin does.
#[tokio::test]
async fn a_redirect_goes_back_to_the_app_and_the_token_does_not_follow_it() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let elsewhere = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let to = elsewhere.url("/api/x");
    // (`http://127.0.0.1:PORT/api/x` needs no escaping in a query.)
    let path = format!("/api/redirect?to={to}");
    let req = forward("GET", &path, &server.origin(), &[], b"");
    let answer = rig
        .host
        .handle_http(&composed, Inherit::ALL, req)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 302);
    assert_eq!(answer.headers()["location"], to.as_str());
    assert!(
        server.api_requests()[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    );
    assert!(elsewhere.requests().is_empty(), "not followed");
    let lines = intercept_lines(&rig);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], 302);
}

/// `intercept_routes`: each origin gets its own token (here another scope), origins in
/// `allowed_origins` without a route the default one; with
/// `intercept_unmatched = refuse` a request anywhere else is answered with
/// HTTP-request-denied and never leaves.
#[tokio::test]
async fn routes_choose_the_token_and_refuse_closes_the_rest() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let billing = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let elsewhere = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let routes = format!(
        r#"[{{"origin": "{}", "scope": "billing:write"}}]"#,
        billing.origin()
    );
    let rig = rig(
        &server,
        &[
            ("scope", "orders:read"),
            ("intercept_routes", &routes),
            ("intercept_unmatched", "refuse"),
        ],
    );
    let composed = Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap();
    let send = |req| rig.host.handle_http(&composed, Inherit::ALL, req);
    let get = |to: &str| forward("GET", "/api/x", to, &[], b"");

    assert_eq!(
        send(get(&server.origin())).await.unwrap().unwrap().status(),
        200
    );
    // The billing API checks tokens against its own issuer: it answers 401 to the
    // token, which is enough to see what it was sent. That token was fetched for this
    // request, so no other fetch follows its 401 (the API refuses this client's tokens).
    let answer = send(get(&billing.origin())).await.unwrap().unwrap();
    assert_eq!(answer.status(), 401);
    let scopes: Vec<String> = server
        .token_requests()
        .iter()
        .map(|r| r.form().into_iter().find(|(k, _)| k == "scope").unwrap().1)
        .collect();
    assert_eq!(scopes, ["orders:read", "billing:write"]);
    let tokens = server.issued_tokens();
    let sent_to_billing: Vec<Option<String>> = billing
        .api_requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_string))
        .collect();
    let bearer = |i: usize| Some(format!("Bearer {}", tokens[i]));
    assert_eq!(sent_to_billing, [bearer(1)]);

    let refused = send(get(&elsewhere.origin())).await.unwrap();
    assert!(
        matches!(
            refused,
            Err(token_provider_host::serve::ErrorCode::HttpRequestDenied)
        ),
        "{refused:?}"
    );
    // The app's own Authorization does not open a closed origin either.
    let own = forward(
        "GET",
        "/api/x",
        &elsewhere.origin(),
        &[("authorization", "Bearer the-apps-own")],
        b"",
    );
    assert!(send(own).await.unwrap().is_err());
    assert!(elsewhere.requests().is_empty(), "nothing reached it");
    let outcomes: Vec<String> = intercept_lines(&rig)
        .iter()
        .map(|v| v["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "refused", "refused"]);
}

/// 64 MiB up and 64 MiB down through the app and the interceptor: every byte arrives
/// in order, and no linear memory of the composition comes near the body's size
/// (`MemoryPeak`, recorded by the host on every memory growth).
#[tokio::test]
async fn sixty_four_mib_stream_both_ways_in_bounded_memory() {
    const SIZE: usize = 64 << 20;
    // Every linear memory of one instance of the composition together (app,
    // interceptor, adapters) stays below this: an eighth of one body.
    const BOUND: usize = 8 << 20;
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let api = BulkApi::start().await.unwrap();
    let routes = format!(r#"[{{"origin": "{}"}}]"#, api.origin());
    let peak = MemoryPeak::new();
    let mut config = base_config(&server);
    config.push(("intercept_routes".into(), routes));
    let host = TokenHost::builder()
        .configs(config)
        .log(LogSink::Discard)
        .memory_peak(peak.clone())
        .build()
        .unwrap();
    let composed = Component::new(host.engine(), with_interceptor(p3_app())).unwrap();
    let body = bytes::Bytes::from(pattern_bytes(SIZE));
    let length = SIZE.to_string();
    for headers in [&[][..], &[("content-length", length.as_str())][..]] {
        peak.reset();
        let up = forward_bytes("POST", "/upload", &api.origin(), headers, body.clone());
        let answer = host
            .handle_http(&composed, Inherit::ALL, up)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.status(), 200);
        let report: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
        assert_eq!(report["bytes"], SIZE as u64, "{headers:?}");
        assert_eq!(report["pattern"], true, "{headers:?}");
        eprintln!(
            "upload {headers:?}: largest memory {} B, store total {} B",
            peak.largest_memory(),
            peak.largest_store_total()
        );
        assert!(peak.largest_store_total() < BOUND, "{headers:?}");
    }
    peak.reset();
    let down = forward(
        "GET",
        &format!("/download?bytes={SIZE}"),
        &api.origin(),
        &[],
        b"",
    );
    let answer = host
        .handle_http(&composed, Inherit::ALL, down)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body().len(), SIZE);
    assert!(answer.body() == &body, "the download arrived in order");
    eprintln!(
        "download: largest memory {} B, store total {} B",
        peak.largest_memory(),
        peak.largest_store_total()
    );
    assert!(peak.largest_store_total() < BOUND);
    assert!(peak.largest_memory() > 0, "the recorder saw the instances");
    let bearer = format!("Bearer {}", server.issued_tokens()[0]);
    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
    assert_eq!(server.token_requests().len(), 1);
}

/// The composition against oidc-provider, over HTTP and over TLS with a CA made for
/// the run: the protected API accepts the interceptor's token for GET and for POST
/// with a body; over HTTP a revoked token's 401 is retried once with a new token.
#[tokio::test]
async fn against_oidc_provider_over_http_and_tls() {
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start(pki.as_ref());
        let log = token_provider_host::MemoryOutputPipe::new(1 << 20);
        let host = peer
            .host_builder(pki.as_ref(), "basic-client", "basic-secret")
            .log(LogSink::Capture(log.clone()))
            .build()
            .unwrap();
        let composed = Component::new(host.engine(), with_interceptor(p3_app())).unwrap();
        let send = |req| host.handle_http(&composed, Inherit::ALL, req);
        let get = || forward("GET", "/api/orders?page=1", &peer.base(), &[], b"");
        let answer = send(get()).await.unwrap().unwrap();
        assert_eq!(answer.status(), 200, "tls={tls}: {answer:?}");
        let body: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
        assert_eq!(body["client_id"], "basic-client", "tls={tls}");
        let post = forward(
            "POST",
            "/api/orders",
            &peer.base(),
            &[("content-type", "application/json")],
            b"{\"order\":42}",
        );
        assert_eq!(
            send(post).await.unwrap().unwrap().status(),
            200,
            "tls={tls}"
        );
        assert_eq!(
            peer.stats(pki.as_ref()).await,
            (1, 2),
            "tls={tls}: (token requests, API requests)"
        );
        if !tls {
            // Revoked while this host's store still holds it: a 401, one new token,
            // one retry, and the app sees only the 200.
            let cached = token(&host, &token_provider_host::TokenRequest::default_request())
                .await
                .unwrap();
            peer.revoke(&cached.token).await;
            assert_eq!(send(get()).await.unwrap().unwrap().status(), 200);
            assert_eq!(peer.stats(None).await, (2, 4));
            let log = String::from_utf8_lossy(&log.contents()).into_owned();
            assert!(!log.contains(&cached.token), "{log}");
            assert!(log.contains(token_provider_core::RETRIED_AFTER_401));
        }
    }
}

/// DPoP through the interceptor against oidc-provider, whose token endpoint and API
/// both ask for nonces and whose API verifies every proof (`tests/peers/oidc`). A
/// request with a body over `retry_body_bytes` that is asked for a nonce gets its 401
/// (the nonce is kept for the next request); a request without one, or with a kept
/// body, is sent again at once with the nonce. Over HTTP and TLS.
#[tokio::test]
async fn dpop_proofs_and_nonces_against_oidc_provider_over_http_and_tls() {
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let nonces = [
            ("DPOP_NONCE", "1".to_string()),
            ("API_DPOP_NONCE", "1".to_string()),
        ];
        let peer = OidcPeer::start_with(pki.as_ref(), &nonces);
        let host = peer
            .host_builder(pki.as_ref(), "basic-client", "basic-secret")
            .config("dpop", "on")
            .config("retry_body_bytes", "16")
            .build()
            .unwrap();
        let composed = Component::new(host.engine(), with_interceptor(p3_app())).unwrap();
        let send = |req| host.handle_http(&composed, Inherit::ALL, req);
        let large = b"{\"order\":42,\"note\":\"more than sixteen bytes\"}";
        let length = large.len().to_string();
        let big_post = || {
            forward(
                "POST",
                "/api/orders",
                &peer.base(),
                &[
                    ("content-type", "application/json"),
                    ("content-length", &length),
                ],
                large,
            )
        };
        // Streamed: the API's nonce request goes back to the app.
        let first = send(big_post()).await.unwrap().unwrap();
        assert_eq!(first.status(), 401, "tls={tls}: {first:?}");
        // The next one carries the nonce (a fresh instance: from the store).
        let again = send(big_post()).await.unwrap().unwrap();
        assert_eq!(again.status(), 200, "tls={tls}: {again:?}");
        let body: serde_json::Value = serde_json::from_slice(again.body()).unwrap();
        assert_eq!(body["token_type"], "DPoP");
        let get = send(forward("GET", "/api/orders?page=1", &peer.base(), &[], b""))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(get.status(), 200, "tls={tls}");
        let (ok, refusals) = peer.dpop_stats(pki.as_ref()).await;
        assert_eq!(
            (ok, refusals.as_slice()),
            (2, &["use_dpop_nonce".to_string()][..])
        );
        // One token (after the token endpoint's own nonce round trip).
        assert_eq!(peer.stats(pki.as_ref()).await, (2, 3), "tls={tls}");
    }
    // No body: a nonce request is answered at once and the app sees the 200.
    let peer = OidcPeer::start_with(None, &[("API_DPOP_NONCE", "1".to_string())]);
    let host = peer
        .host_builder(None, "basic-client", "basic-secret")
        .config("dpop", "on")
        .build()
        .unwrap();
    let composed = Component::new(host.engine(), with_interceptor(p3_app())).unwrap();
    let get = forward("GET", "/api/orders", &peer.base(), &[], b"");
    let answer = host
        .handle_http(&composed, Inherit::ALL, get)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200, "{answer:?}");
    let (ok, refusals) = peer.dpop_stats(None).await;
    assert_eq!(
        (ok, refusals.as_slice()),
        (1, &["use_dpop_nonce".to_string()][..])
    );
}

/// The interceptor keeps `send`'s promises: no token with TRACE, TRACK or CONNECT
/// (an echo would hand it back): the request is refused and never leaves. And no token
/// over plain http:// unless allow_insecure_http: such an origin is a config error,
/// and nothing is sent at all.
#[tokio::test]
async fn no_token_goes_with_trace_or_over_plain_http_unless_allowed() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    for method in ["TRACE", "TRACK"] {
        let answer = through(
            &rig,
            forward(method, "/api/echo", &server.origin(), &[], b""),
        )
        .await;
        assert!(
            matches!(
                answer,
                Err(token_provider_host::serve::ErrorCode::HttpRequestDenied)
            ),
            "{method}: {answer:?}"
        );
    }
    assert!(
        server.requests().is_empty(),
        "nothing left, no token fetched"
    );
    let lines = intercept_lines(&rig);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["outcome"], "refused", "{line}");
        assert!(
            line["detail"]
                .as_str()
                .unwrap()
                .contains("never sent with a token"),
            "{line}"
        );
    }

    // The mock server is plain http://: without allow_insecure_http its origin is a
    // config error, and the app's request is not sent (not even without a token).
    let strict = crate::common::rig(&server, &[("allow_insecure_http", "false")]);
    let answer = through(
        &strict,
        forward("GET", "/api/orders", &server.origin(), &[], b""),
    )
    .await;
    assert!(
        matches!(
            answer,
            Err(token_provider_host::serve::ErrorCode::ConfigurationError)
        ),
        "{answer:?}"
    );
    assert!(server.requests().is_empty());
}
