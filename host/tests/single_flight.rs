//! One token fetch per lifetime across instances and processes: the component's lease
//! on `wasi:keyvalue` increment, in one host (memory store, both flavors) and across
//! two host processes sharing a real Redis; refresh ahead through the component; the
//! Redis backend itself.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use token_provider_host::kv::{KvBackend, MemoryKv, RedisKv};
use token_provider_host::testkit::load::Summary;
use token_provider_host::testkit::redis_server::LocalRedis;
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{Flavor, LogSink, TokenHost, TokenRequest, TokenSource};

const ID: &str = "sf-client";
const SECRET: &str = "sf-secret";

fn host(
    server: &MockServer,
    flavor: Flavor,
    kv: Arc<dyn KvBackend>,
    extra: &[(&str, &str)],
) -> TokenHost {
    TokenHost::builder()
        .flavor(flavor)
        .config("token_url", server.url("/token"))
        .config("client_id", ID)
        .config("client_secret", SECRET)
        .config("allow_insecure_http", "true")
        .configs(extra.iter().copied())
        .kv(kv)
        .log(LogSink::Discard)
        .build()
        .unwrap()
}

/// `n` fresh instances call get-token at the same moment; returns their sources.
async fn concurrent_cold_start(host: &TokenHost, n: usize) -> Vec<TokenSource> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut instance = host.instance().await.unwrap();
            instance
                .get_token(&TokenRequest::default_request())
                .await
                .unwrap()
                .unwrap()
                .source
        }));
    }
    let mut sources = Vec::new();
    for t in tasks {
        sources.push(t.await.unwrap());
    }
    sources
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_instances_make_one_token_request_in_both_flavors() {
    for flavor in [Flavor::Spin, Flavor::Wasmtime] {
        let server = MockServer::start(ID, SECRET).await.unwrap();
        // A slow server: every instance arrives while the first request is in flight.
        server.set_token_delay(Duration::from_millis(300));
        let host = host(&server, flavor, Arc::new(MemoryKv::new()), &[]);
        let sources = concurrent_cold_start(&host, 20).await;
        assert_eq!(server.token_request_count(), 1, "{flavor:?}");
        assert_eq!(
            sources.iter().filter(|s| **s == TokenSource::Fresh).count(),
            1,
            "{flavor:?}: {sources:?}"
        );
        assert_eq!(
            sources.iter().filter(|s| **s == TokenSource::Store).count(),
            19,
            "{flavor:?}: {sources:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lease_the_same_start_is_a_herd() {
    // The control for the test above: it can fail.
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_token_delay(Duration::from_millis(300));
    let host = host(
        &server,
        Flavor::Spin,
        Arc::new(MemoryKv::new()),
        &[("lease_ms", "0")],
    );
    concurrent_cold_start(&host, 20).await;
    assert!(
        server.token_request_count() > 1,
        "{} requests",
        server.token_request_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_renews_once_while_the_others_keep_the_valid_token() {
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_expires_in(Some(2.into()));
    // 2 s tokens, no skew, refresh window = the last 50 % (starts 1.0–1.5 s after issue).
    let host = host(
        &server,
        Flavor::Spin,
        Arc::new(MemoryKv::new()),
        &[("expiry_skew_secs", "0"), ("refresh_ahead_percent", "50")],
    );
    let get = || async {
        host.instance()
            .await
            .unwrap()
            .get_token(&TokenRequest::default_request())
            .await
            .unwrap()
            .unwrap()
    };
    let first = get().await;
    assert_eq!(first.source, TokenSource::Fresh);
    assert_eq!(get().await.token, first.token, "before the window: cached");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Inside the window and still valid: one instance renews, and gets the new token.
    let renewed = get().await;
    assert_eq!(renewed.source, TokenSource::Fresh);
    assert_ne!(renewed.token, first.token);
    assert_eq!(server.token_request_count(), 2);
    let after = get().await;
    assert_eq!(
        (after.token, after.source),
        (renewed.token, TokenSource::Store)
    );
    assert_eq!(server.token_request_count(), 2);
}

#[tokio::test]
async fn the_redis_backend_stores_counts_lists_and_deletes() {
    let redis = LocalRedis::start().unwrap();
    let kv = RedisKv::connect(&redis.url()).await.unwrap();
    assert_eq!(kv.get("default", "missing").await.unwrap(), None);
    kv.set("default", "k1", b"\x00\xffbinary").await.unwrap();
    assert_eq!(
        kv.get("default", "k1").await.unwrap().as_deref(),
        Some(&b"\x00\xffbinary"[..])
    );
    assert_eq!(
        kv.get("other-label", "k1").await.unwrap(),
        None,
        "each label is its own store (a key prefix)"
    );
    assert!(kv.exists("default", "k1").await.unwrap());
    assert_eq!(kv.increment("default", "n", 1).await.unwrap(), 1);
    assert_eq!(kv.increment("default", "n", 1).await.unwrap(), 2);
    assert_eq!(
        kv.get("default", "n").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert!(
        kv.increment("default", "k1", 1).await.is_err(),
        "not a number"
    );
    let (mut keys, mut cursor) = (Vec::new(), None);
    loop {
        let page = kv.list_keys("default", cursor, 1).await.unwrap();
        keys.extend(page.keys);
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    keys.sort();
    assert_eq!(keys, ["k1", "n"]);
    kv.delete("default", "k1").await.unwrap();
    assert!(!kv.exists("default", "k1").await.unwrap());
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisKv::connect(&format!("redis://:hunter2@127.0.0.1:{port}/"))
        .await
        .err()
        .expect("nothing listens there");
    let text = format!("{err:#}");
    assert!(text.contains("cannot connect to Redis"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

fn load(redis: &LocalRedis, extra: &[&str]) -> Summary {
    let out = Command::new(env!("CARGO_BIN_EXE_token-provider"))
        .args([
            "load",
            "--processes",
            "2",
            "--instances",
            "20",
            "--calls",
            "1",
        ])
        .args(["--token-delay-ms", "300", "--json", "--store", &redis.url()])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    assert!(
        line.starts_with('{'),
        "no summary: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn two_processes_of_twenty_instances_on_one_redis_make_one_token_request() {
    let redis = LocalRedis::start().unwrap();
    let s = load(&redis, &[]);
    assert_eq!((s.requests, s.failures), (40, 0));
    assert_eq!(s.token_requests, 1);
    // Control: the same cold start without the lease makes many requests.
    let herd = load(&redis, &["--config", "lease_ms=0"]);
    assert_eq!((herd.requests, herd.failures), (40, 0));
    assert!(herd.token_requests > 1, "{}", herd.token_requests);
}
