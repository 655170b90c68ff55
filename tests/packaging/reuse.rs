//! The interceptor composed in front of `examples/p3-app`, run the way Spin 4.1 runs a
//! WASIp3 component (`ServicePool` with `Reuse::SPIN`: an instance serves up to 16
//! requests at once and 128 in all, and is dropped after 1 s idle), or in one instance
//! kept between requests. The token endpoint is held open by the test where it matters,
//! so "no request waits for it" is shown by requests that finish while it is held.

use crate::common::p3::{forward, p3_app, with_interceptor};
use crate::common::*;
use std::time::Duration;
use token_provider_host::Inherit;
use token_provider_host::reuse::{Answer, Reuse, ServicePool};
use token_provider_host::testkit::testserver::MockServer;
use wasmtime::component::Component;

fn composed(rig: &Rig) -> Component {
    Component::new(rig.host.engine(), with_interceptor(p3_app())).unwrap()
}

fn pool(rig: &Rig) -> ServicePool {
    rig.host
        .service_pool(&composed(rig), Inherit::ALL, Reuse::SPIN)
        .unwrap()
}

/// `n` requests at once through `pool`, each made by `request(i)`; their answers.
async fn at_once(
    pool: &ServicePool,
    n: usize,
    request: impl Fn(usize) -> http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    (0..n)
        .map(|i| {
            let pool = pool.clone();
            let request = request(i);
            tokio::spawn(async move { pool.handle(request).await })
        })
        .collect()
}

/// Every answer of `calls`, which must all be 200.
async fn all_200(calls: Vec<tokio::task::JoinHandle<Answer>>) {
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap().unwrap().unwrap();
        assert_eq!(answer.status(), 200, "request {i}: {answer:?}");
    }
}

/// Wait (up to 10 s) until `done()`.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A server of 4 s tokens, and a rig that renews them in their second half (the
/// window starts up to 1 s later at random): due from 3 s.
async fn short_tokens() -> (MockServer, Rig) {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    server.set_expires_in(Some(4.into()));
    let rig = rig(
        &server,
        &[("expiry_skew_secs", "0"), ("refresh_ahead_percent", "50")],
    );
    (server, rig)
}

fn get(server: &MockServer, i: usize) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    forward(
        "GET",
        &format!("/api/orders/{i}"),
        &server.origin(),
        &[],
        b"",
    )
}

/// 16 requests at once on one instance, cold cache, the token request held: they all
/// wait for that one fetch (no second token request reaches the server; the instance's
/// other requests wait for its flight, not for the store), and all are answered with
/// its token once it lands.
#[tokio::test]
async fn sixteen_requests_on_one_instance_share_a_cold_fetch() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut instance = rig
        .host
        .service_instance(&composed(&rig), Inherit::ALL)
        .await
        .unwrap();
    server.hold_tokens();
    let requests = (0..16).map(|i| get(&server, i)).collect();
    let calls = tokio::spawn(async move { instance.handle_all(requests).await });
    until("the token request arrives", || server.token_arrivals() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.token_arrivals(), 1, "one fetch for the instance");
    assert!(
        server.api_requests().is_empty(),
        "nobody went without a token"
    );
    server.release_tokens();
    for answer in calls.await.unwrap().unwrap() {
        assert_eq!(answer.unwrap().status(), 200);
    }
    assert_eq!(server.token_request_count(), 1);
    let bearer = format!("Bearer {}", server.issued_tokens()[0]);
    let seen = server.api_requests();
    assert_eq!(seen.len(), 16);
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(bearer.as_str()))
    );
    let log = String::from_utf8_lossy(&rig.log.contents()).into_owned();
    assert!(
        !log.contains("\"token.lease\""),
        "no request of the instance waited on the lease: {log}"
    );
}

/// The same burst through Spin's dispatch: a cold burst starts an instance per request
/// that finds none free (instantiating takes longer than the burst), and the instances
/// share one fetch through the store's lease.
#[tokio::test]
async fn a_cold_burst_across_instances_makes_one_fetch() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let pool = pool(&rig);
    server.hold_tokens();
    let calls = at_once(&pool, 16, |i| get(&server, i)).await;
    until("the token request arrives", || server.token_arrivals() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.token_arrivals(), 1, "one fetch for the fleet");
    server.release_tokens();
    all_200(calls).await;
    assert_eq!(server.token_request_count(), 1);
    println!("instances made: {}", pool.instances_made());
}

/// A token inside its refresh window, the renewal held at the token endpoint: requests
/// on the instance keep being answered with the valid token meanwhile (the renewal runs
/// in its own task, not in any request), one renewal only; once it lands, the new token
/// is sent.
#[tokio::test]
async fn a_renewal_under_load_keeps_the_instance_serving() {
    let (server, rig) = short_tokens().await;
    let pool = pool(&rig);
    all_200(at_once(&pool, 1, |i| get(&server, i)).await).await;
    server.hold_tokens();
    tokio::time::sleep(Duration::from_millis(3100)).await;

    for round in 0..3 {
        all_200(at_once(&pool, 8, |i| get(&server, 100 * round + i)).await).await;
    }
    assert_eq!(server.token_arrivals(), 2, "one renewal for the fleet");
    assert_eq!(server.token_request_count(), 1, "the renewal is still held");
    let old = format!("Bearer {}", server.issued_tokens()[0]);
    let seen = server.api_requests();
    assert_eq!(seen.len(), 25);
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(old.as_str())),
        "every request was served the valid token"
    );

    server.release_tokens();
    until("the renewal lands", || server.token_request_count() == 2).await;
    // (The instance keeps it a moment after the server answered.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    all_200(at_once(&pool, 1, |i| get(&server, 1000 + i)).await).await;
    let new = format!("Bearer {}", server.issued_tokens()[1]);
    let last = server.api_requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some(new.as_str()));
    let log = String::from_utf8_lossy(&rig.log.contents()).into_owned();
    let renewals = log
        .lines()
        .filter(|l| l.contains("\"token.fetch\"") && l.contains("\"ok\""))
        .count();
    assert_eq!(renewals, 2, "{log}");
}

/// Two instances serving at once (24 requests at once on a cold cache), then the API
/// revokes the token: every GET and every small POST after it succeeds (a request sent
/// with the revoked token is sent again with the next), and the fleet fetches one
/// token. Then the same again for the successor.
#[tokio::test]
async fn after_each_revocation_every_request_succeeds_with_one_fetch() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // The successor is revoked seconds after its predecessor: min_token_age_secs would
    // keep it (an API that refuses every token looks the same, docs/design.md).
    let rig = rig(&server, &[("min_token_age_secs", "0")]);
    let pool = pool(&rig);
    server.hold_tokens();
    let calls = at_once(&pool, 24, |i| get(&server, i)).await;
    until("a token request arrives", || server.token_arrivals() >= 1).await;
    server.release_tokens();
    all_200(calls).await;
    assert_eq!(server.token_request_count(), 1);
    assert!(pool.instances_made() >= 2, "{}", pool.instances_made());

    for revocation in 1..=2 {
        server.revoke_all();
        let origin = server.origin();
        let calls = at_once(&pool, 24, |i| {
            if i % 2 == 0 {
                get(&server, i)
            } else {
                forward(
                    "POST",
                    "/api/orders",
                    &origin,
                    &[("content-type", "text/plain")],
                    b"order=42",
                )
            }
        })
        .await;
        all_200(calls).await;
        assert_eq!(
            server.token_request_count(),
            1 + revocation,
            "one fetch per revocation"
        );
    }
    rig.assert_log_holds_no_token(&server);
}

/// An instance holds the token in memory; another instance gets a 401 for it, drops it
/// and stores a successor. Within `memory_max_age_ms` the first instance still sends
/// its own; after it, the store's, without a 401 first.
#[tokio::test]
async fn an_instance_follows_the_store_within_memory_max_age_ms() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("memory_max_age_ms", "300")]);
    let composed = composed(&rig);
    let mut kept = rig
        .host
        .service_instance(&composed, Inherit::ALL)
        .await
        .unwrap();
    let answer = kept.handle(get(&server, 0)).await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    server.revoke_all();
    // Another instance: the stored token is refused, dropped, and replaced.
    let other = rig
        .host
        .handle_http(&composed, Inherit::ALL, get(&server, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.status(), 200);
    let tokens = server.issued_tokens();
    assert_eq!(tokens.len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = server.api_requests().len();
    let answer = kept.handle(get(&server, 2)).await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let seen = server.api_requests();
    assert_eq!(seen.len(), before + 1, "no 401 first");
    let successor = format!("Bearer {}", tokens[1]);
    assert_eq!(
        seen[before].header("authorization"),
        Some(successor.as_str())
    );
    assert_eq!(server.token_request_count(), 2);
}

/// The token in an instance's memory is revoked, and so is the successor another
/// instance stored: the request is sent with its own token (401), then with the
/// store's (401), then with one fetched for it (200). Two retries and one fetch; the
/// app sees only the 200.
#[tokio::test]
async fn when_the_stores_successor_is_refused_too_one_fetch_follows() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // Consecutive tokens revoked within seconds: without min_token_age_secs.
    let rig = rig(
        &server,
        &[("memory_max_age_ms", "60000"), ("min_token_age_secs", "0")],
    );
    let composed = composed(&rig);
    let mut kept = rig
        .host
        .service_instance(&composed, Inherit::ALL)
        .await
        .unwrap();
    assert_eq!(
        kept.handle(get(&server, 0))
            .await
            .unwrap()
            .unwrap()
            .status(),
        200
    );
    server.revoke_all();
    let other = rig
        .host
        .handle_http(&composed, Inherit::ALL, get(&server, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.status(), 200);
    server.revoke_all();
    let before = server.api_requests().len();
    let post = forward(
        "POST",
        "/api/orders",
        &server.origin(),
        &[("content-type", "text/plain"), ("content-length", "8")],
        b"order=42",
    );
    let answer = kept.handle(post).await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let tokens = server.issued_tokens();
    assert_eq!(tokens.len(), 3);
    let sent: Vec<(Option<String>, Vec<u8>)> = server.api_requests()[before..]
        .iter()
        .map(|r| {
            (
                r.header("authorization").map(str::to_string),
                r.body.clone(),
            )
        })
        .collect();
    let expected: Vec<(Option<String>, Vec<u8>)> = (0..3)
        .map(|i| (Some(format!("Bearer {}", tokens[i])), b"order=42".to_vec()))
        .collect();
    assert_eq!(sent, expected);
    let line = rig
        .audit_lines()
        .into_iter()
        .rfind(|v| v["event"] == "intercept.send")
        .unwrap();
    assert_eq!(line["status"], 200);
    assert_eq!(
        line["detail"],
        token_provider_core::RETRIED_TWICE_AFTER_401,
        "{line}"
    );
}

/// A host that makes a fresh instance per request (`handle_http`) keeps it until its
/// tasks end, as Spin does: a renewal the interceptor starts after answering is not
/// lost with the instance, and the next request gets the renewed token from the store.
#[tokio::test]
async fn a_fresh_instance_is_kept_until_its_renewal_ends() {
    let (server, rig) = short_tokens().await;
    let composed = composed(&rig);
    let send = |i| {
        rig.host
            .handle_http(&composed, Inherit::ALL, get(&server, i))
    };
    assert_eq!(send(0).await.unwrap().unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(send(1).await.unwrap().unwrap().status(), 200);
    assert_eq!(
        server.token_request_count(),
        2,
        "renewed before the instance went"
    );
    assert_eq!(send(2).await.unwrap().unwrap().status(), 200);
    let tokens = server.issued_tokens();
    let seen = server.api_requests();
    let auth = |i: usize| seen[i].header("authorization").map(str::to_string);
    let bearer = |i: usize| Some(format!("Bearer {}", tokens[i]));
    assert_eq!(
        [auth(0), auth(1), auth(2)],
        [bearer(0), bearer(0), bearer(1)],
        "the due token served at once, the renewed one next"
    );
}
