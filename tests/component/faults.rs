//! Faults, through the host: for each, the typed error (or the cached valid token) that
//! comes back, how many requests the server saw, and that the next call still works.
//! The token endpoint is `faultserver::FaultServer` (hand-written HTTP on a raw socket)
//! or oidc-provider stopped mid-run.

use crate::common::oidc::OidcPeer;
use crate::common::{LogSink, MemoryOutputPipe, audit_lines, token};
use std::sync::Arc;
use std::time::{Duration, Instant};
use token_provider_host::kv::{KvBackend, MemoryKv};
use token_provider_host::testkit::FailingKv;
use token_provider_host::testkit::faultserver::{Fault, FaultServer, Reply};
use token_provider_host::{AccessToken, ProviderError, TokenHost, TokenRequest, TokenSource};

/// Small timeouts and fast retries: 3 attempts, 400 ms per phase, 4 s overall.
const FAST: &[(&str, &str)] = &[
    ("http_timeout_ms", "400"),
    ("max_retries", "2"),
    ("retry_base_ms", "20"),
    ("retry_max_delay_ms", "2000"),
    ("token_deadline_ms", "4000"),
];

fn host_for(
    token_url: &str,
    kv: Arc<dyn KvBackend>,
    clock_offset_ms: i64,
) -> (TokenHost, MemoryOutputPipe) {
    let log = MemoryOutputPipe::new(1 << 20);
    let host = TokenHost::builder()
        .config("token_url", token_url)
        .config("client_id", "fault-client")
        .config("client_secret", "fault-secret")
        .config("allow_insecure_http", "true")
        .configs(FAST.iter().copied())
        .kv(kv)
        .clock_offset_ms(clock_offset_ms)
        .log(LogSink::Capture(log.clone()))
        .build()
        .unwrap();
    (host, log)
}

async fn get(host: &TokenHost, force_refresh: bool) -> Result<AccessToken, ProviderError> {
    let req = TokenRequest {
        force_refresh,
        ..TokenRequest::default_request()
    };
    token(host, &req).await
}

/// Run `script` against a fresh host; returns the result, the requests the server saw,
/// the elapsed time, and the `token.fetch` outcomes in the audit log.
async fn against(
    script: Vec<Fault>,
) -> (
    Result<AccessToken, ProviderError>,
    usize,
    Duration,
    Vec<String>,
) {
    let server = FaultServer::start(script).await.unwrap();
    let (host, log) = host_for(&server.token_url(), Arc::new(MemoryKv::new()), 0);
    let started = Instant::now();
    let result = get(&host, false).await;
    let elapsed = started.elapsed();
    let outcomes: Vec<String> = audit_lines(&log)
        .iter()
        .filter(|l| l["event"] == "token.fetch")
        .map(|l| l["outcome"].as_str().unwrap().to_string())
        .collect();
    // One line per fault for the record (`cargo test --test faults -- --nocapture`).
    eprintln!(
        "fault result: {:?}; server saw {} request(s) in {elapsed:?}; token.fetch {outcomes:?}",
        result
            .as_ref()
            .map(|t| t.source)
            .map_err(token_provider_host::describe),
        server.requests()
    );
    (result, server.requests(), elapsed, outcomes)
}

fn retried_then_failed(outcomes: &[String]) {
    assert_eq!(outcomes, ["retry", "retry", "error"]);
}

#[tokio::test]
async fn connection_refused_is_retried_then_a_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (host, log) = host_for(
        &format!("http://127.0.0.1:{port}/token"),
        Arc::new(MemoryKv::new()),
        0,
    );
    let e = get(&host, false).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Transport(ref m) if m == "connection refused"),
        "{e:?}"
    );
    let fetches: Vec<_> = audit_lines(&log)
        .into_iter()
        .filter(|l| l["event"] == "token.fetch")
        .collect();
    assert_eq!(fetches.len(), 3, "three attempts");
}

#[tokio::test]
async fn a_late_first_byte_past_the_timeout_is_a_timeout_after_three_attempts() {
    let (r, seen, elapsed, outcomes) = against(vec![Fault::Late(
        Duration::from_secs(5),
        Reply::token("late", 60),
    )])
    .await;
    assert!(matches!(r.unwrap_err(), ProviderError::Timeout));
    assert_eq!(seen, 3);
    retried_then_failed(&outcomes);
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let (r, seen, elapsed, outcomes) = against(vec![Fault::Hang]).await;
    assert!(matches!(r.unwrap_err(), ProviderError::Timeout));
    assert_eq!(seen, 3);
    retried_then_failed(&outcomes);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_a_timeout() {
    let (r, seen, _, outcomes) = against(vec![Fault::StallBody(Reply::token("stall", 60))]).await;
    let e = r.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout), "{e:?}");
    assert_eq!(seen, 3);
    retried_then_failed(&outcomes);
}

#[tokio::test]
async fn a_drip_fed_body_ends_at_each_attempts_deadline_not_the_hosts() {
    // One byte every 50 ms: no between-bytes timeout ever fires. The component ends
    // each attempt at http_timeout_ms (400 ms) on its own clock; the host's overall
    // bound (connect + first byte + between bytes = 1.2 s) must not be what stops it.
    let drip = || Fault::Drip(Duration::from_millis(50));
    let (r, seen, elapsed, outcomes) = against(vec![drip(), drip(), drip()]).await;
    assert!(matches!(r, Err(ProviderError::Timeout)), "{r:?}");
    assert_eq!(seen, 3);
    retried_then_failed(&outcomes);
    // Three attempts of 400 ms plus backoff (at most 20 + 40 ms).
    assert!(elapsed < Duration::from_millis(1_800), "{elapsed:?}");
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error() {
    let (r, seen, _, outcomes) = against(vec![Fault::Drop]).await;
    assert!(matches!(r.unwrap_err(), ProviderError::Transport(_)));
    assert_eq!(seen, 3);
    retried_then_failed(&outcomes);
}

#[tokio::test]
async fn a_truncated_body_is_an_error_not_a_token() {
    let (r, seen, _, outcomes) =
        against(vec![Fault::Truncate(Reply::token("truncated-token", 60))]).await;
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            ProviderError::Transport(_) | ProviderError::InvalidResponse(_)
        ),
        "{e:?}"
    );
    assert!((1..=3).contains(&seen), "{seen}");
    assert_eq!(outcomes.last().map(String::as_str), Some("error"));
}

#[tokio::test]
async fn a_502_html_page_is_retried_then_a_server_error() {
    let page = Reply::new(502, "text/html", "<html><h1>502 Bad Gateway</h1></html>");
    let (r, seen, _, outcomes) = against(vec![Fault::Reply(page)]).await;
    assert!(matches!(r.unwrap_err(), ProviderError::Server(ref s) if s.status == 502));
    assert_eq!(seen, 3);
    retried_then_failed(&outcomes);
}

#[tokio::test]
async fn a_503_with_retry_after_is_waited_out_then_succeeds() {
    let busy = Reply::new(503, "text/plain", "busy").header("retry-after", "1");
    let (r, seen, elapsed, outcomes) = against(vec![
        Fault::Reply(busy),
        Fault::Reply(Reply::token("after-wait", 60)),
    ])
    .await;
    assert_eq!(r.unwrap().source, TokenSource::Fresh);
    assert_eq!(seen, 2);
    assert_eq!(outcomes, ["retry", "ok"]);
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
}

#[tokio::test]
async fn a_429_asking_for_longer_than_the_cap_is_not_retried() {
    let limited = Reply::new(429, "application/json", r#"{"error":"slow_down"}"#)
        .header("retry-after", "120");
    let (r, seen, elapsed, outcomes) = against(vec![Fault::Reply(limited)]).await;
    assert!(matches!(r.unwrap_err(), ProviderError::Oauth(ref o) if o.status == 429));
    assert_eq!(seen, 1, "no request before the server's Retry-After");
    assert_eq!(outcomes, ["error"]);
    assert!(elapsed < Duration::from_secs(1));
}

#[tokio::test]
async fn an_oversized_body_is_refused_and_not_retried() {
    let huge = format!(
        r#"{{"access_token":"big","pad":"{}"}}"#,
        "x".repeat(200_000)
    );
    let (r, seen, _, _) = against(vec![Fault::Reply(Reply::new(
        200,
        "application/json",
        huge,
    ))])
    .await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, ProviderError::InvalidResponse(m) if m == "body larger than 65536 bytes"),
        "{e:?}"
    );
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn a_redirect_is_not_followed_or_retried() {
    let redirect =
        Reply::new(302, "text/html", "moved").header("location", "http://127.0.0.1:1/elsewhere");
    let (r, seen, _, _) = against(vec![Fault::Reply(redirect)]).await;
    assert!(matches!(r.unwrap_err(), ProviderError::Server(ref s) if s.status == 302));
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn an_unavailable_store_degrades_to_no_cache() {
    let server = FaultServer::start(vec![Fault::Reply(Reply::token("no-store", 60))])
        .await
        .unwrap();
    let (host, log) = host_for(&server.token_url(), Arc::new(FailingKv), 0);
    assert_eq!(get(&host, false).await.unwrap().token, "no-store");
    assert_eq!(get(&host, false).await.unwrap().token, "no-store");
    assert_eq!(
        server.requests(),
        2,
        "no cache across instances, but no failure either"
    );
    let degraded = audit_lines(&log)
        .iter()
        .filter(|l| l["event"] == "store.error")
        .count();
    assert!(
        degraded >= 2,
        "{degraded} store.error lines, one or more per instance"
    );
}

#[tokio::test]
async fn a_server_stopped_mid_run_leaves_the_cached_token_in_service() {
    let server = FaultServer::start(vec![Fault::Reply(Reply::token("before-stop", 3600))])
        .await
        .unwrap();
    let (host, _) = host_for(&server.token_url(), Arc::new(MemoryKv::new()), 0);
    assert_eq!(get(&host, false).await.unwrap().token, "before-stop");
    server.stop();
    // A forced refresh fails with a typed error...
    assert!(matches!(
        get(&host, true).await.unwrap_err(),
        ProviderError::Transport(_)
    ));
    // ...and the valid cached token keeps being served.
    let t = get(&host, false).await.unwrap();
    assert_eq!(
        (t.token.as_str(), t.source),
        ("before-stop", TokenSource::Store)
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn oidc_provider_stopped_mid_run() {
    let peer = OidcPeer::start(None);
    let log = MemoryOutputPipe::new(1 << 20);
    let host = TokenHost::builder()
        .config("token_url", peer.token_url())
        .config("client_id", "basic-client")
        .config("client_secret", "basic-secret")
        .config("allow_insecure_http", "true")
        .configs(FAST.iter().copied())
        .log(LogSink::Capture(log.clone()))
        .build()
        .unwrap();
    let first = get(&host, false).await.unwrap();
    assert_eq!(peer.stats(None).await.0, 1);
    drop(peer); // kills the node process
    let e = get(&host, true).await.unwrap_err();
    assert!(matches!(e, ProviderError::Transport(_)), "{e:?}");
    let again = get(&host, false).await.unwrap();
    assert_eq!(
        (again.token, again.source),
        (first.token, TokenSource::Store)
    );
}

/// Three hosts on one store, one with a true clock, one two hours behind, one two hours
/// ahead. None serves a token past its real expiry (docs/design.md, "Times read back
/// from the store"): the slow host does not believe an entry dated two hours ahead of
/// its clock (it would serve it two hours too long) and fetches its own; the fast host
/// sees the slow host's entry expired and fetches its own.
#[tokio::test]
async fn clocks_far_ahead_or_behind() {
    let server = FaultServer::start(vec![
        Fault::Reply(Reply::token("from-true-clock", 3600)),
        Fault::Reply(Reply::token("from-slow-clock", 3600)),
        Fault::Reply(Reply::token("from-fast-clock", 3600)),
        Fault::Reply(Reply::token("from-true-clock-again", 3600)),
    ])
    .await
    .unwrap();
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let two_hours: i64 = 2 * 3600 * 1000;
    let (truthful, _) = host_for(&server.token_url(), kv.clone(), 0);
    let (behind, behind_log) = host_for(&server.token_url(), kv.clone(), -two_hours);
    let (ahead, ahead_log) = host_for(&server.token_url(), kv.clone(), two_hours);
    let t = get(&truthful, false).await.unwrap();
    assert_eq!(t.token.as_str(), "from-true-clock");
    // A host two hours behind: the stored entry claims to be usable for three hours
    // from its now, longer than the token's one-hour lifetime. Not believed; audited.
    let b = get(&behind, false).await.unwrap();
    assert_eq!(
        (b.token.as_str(), b.source),
        ("from-slow-clock", TokenSource::Fresh)
    );
    assert!(
        audit_lines(&behind_log)
            .iter()
            .any(|l| l["outcome"] == "rejected"
                && l["detail"]
                    .as_str()
                    .unwrap()
                    .contains("ahead-of-clock: token record")),
        "{:?}",
        audit_lines(&behind_log)
    );
    // A host two hours ahead sees the slow host's entry expired and fetches its own;
    // its expiry is in its own future.
    let a = get(&ahead, false).await.unwrap();
    assert_eq!(
        (a.token.as_str(), a.source),
        ("from-fast-clock", TokenSource::Fresh)
    );
    assert!(
        a.expires_at >= t.expires_at + 7000,
        "{} vs {}",
        a.expires_at,
        t.expires_at
    );
    assert!(
        audit_lines(&ahead_log)
            .iter()
            .any(|l| l["outcome"] == "expired")
    );
    assert_eq!(server.requests(), 3);
    // Nothing broke: the truthful host keeps working (the fast host's entry, dated two
    // hours ahead of it, is not believed either).
    assert!(get(&truthful, false).await.is_ok());
    // The price (docs/design.md, "Known limits"): two hosts further apart than
    // expiry_skew_secs, taking turns with fresh instances, never serve each other's
    // entry. One token request per request (the first of these finds the truthful
    // host's own entry), and every host that sees a record dated ahead of it says so
    // at the `errors` audit level.
    let before = server.requests();
    for _ in 0..3 {
        get(&truthful, false).await.unwrap();
        get(&behind, false).await.unwrap();
    }
    assert_eq!(server.requests() - before, 5);
}
