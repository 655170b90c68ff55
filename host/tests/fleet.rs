//! A fleet on one store: twenty instances of the component sharing one key-value store
//! when a token is revoked, the secret rotates, a party without the secret writes to
//! the store, a lease holder dies or the token endpoint is down; and what the store
//! holds afterwards. Each test states the bound it checks.

use std::sync::Arc;
use std::time::{Duration, Instant};
use token_provider_core::{
    Settings, TokenRequest as CoreRequest,
    internal::{CacheKey, Holder, TokenParams, roles, seal},
};
use token_provider_host::kv::{KvBackend, MemoryKv};
use token_provider_host::testkit::testserver::{Canned, MockServer};
use token_provider_host::{
    ApiRequest, LogSink, MemoryOutputPipe, ProviderError, ProviderInstance, TokenHost, TokenRequest,
};

const ID: &str = "fleet-client";
const SECRET: &str = "fleet-secret";
const N: usize = 20;

fn pairs(server: &MockServer, secret: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("token_url", server.url("/token")),
        ("client_id", ID.into()),
        ("client_secret", secret.into()),
        ("allow_insecure_http", "true".into()),
        ("allowed_origins", server.origin()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

fn host(
    server: &MockServer,
    kv: &Arc<MemoryKv>,
    secret: &str,
    extra: &[(&str, &str)],
) -> (TokenHost, MemoryOutputPipe) {
    let log = MemoryOutputPipe::new(1 << 22);
    let host = TokenHost::builder()
        .configs(pairs(server, secret, extra))
        .kv(kv.clone() as Arc<dyn KvBackend>)
        .log(LogSink::Capture(log.clone()))
        .build()
        .unwrap();
    (host, log)
}

/// The cache key the component uses for the default request, computed by the core.
fn cache_key(server: &MockServer, secret: &str, extra: &[(&str, &str)]) -> (Settings, CacheKey) {
    let pairs = pairs(server, secret, extra);
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let s = Settings::from_pairs(&pairs).unwrap();
    let params = TokenParams::resolve(&CoreRequest::default(), &s.provider.client).unwrap();
    let key = s.provider.cache_key(&params);
    (s, key)
}

async fn instances(host: &TokenHost, n: usize) -> Vec<ProviderInstance> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(host.instance().await.unwrap());
    }
    v
}

/// Every instance calls get-token at once; each result with how long it took.
async fn get_all(
    instances: Vec<ProviderInstance>,
) -> Vec<(Result<String, ProviderError>, Duration)> {
    let tasks: Vec<_> = instances
        .into_iter()
        .map(|mut i| {
            tokio::spawn(async move {
                let started = Instant::now();
                let r = i
                    .get_token(&TokenRequest::default_request())
                    .await
                    .unwrap()
                    .map(|t| t.token);
                (r, started.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn keys(kv: &MemoryKv) -> Vec<String> {
    kv.entries("default").into_iter().map(|(k, _)| k).collect()
}

fn lease_keys(kv: &MemoryKv) -> Vec<String> {
    keys(kv)
        .into_iter()
        .filter(|k| k.contains(":lease:") || k.contains(":holder:"))
        .collect()
}

fn outcomes(log: &MemoryOutputPipe, event: &str) -> Vec<String> {
    String::from_utf8_lossy(&log.contents())
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["event"] == event)
        .map(|l| l["outcome"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_instances_that_get_401_for_one_token_renew_it_once_and_keep_the_successor() {
    let server = MockServer::start(ID, SECRET).await.unwrap();
    let kv = Arc::new(MemoryKv::new());
    let (host, log) = host(&server, &kv, SECRET, &[]);
    // Every instance holds the same token, then the authorization server revokes it.
    let mut fleet = instances(&host, N).await;
    for i in &mut fleet {
        i.get_token(&TokenRequest::default_request())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(server.token_request_count(), 1);
    server.revoke_all();
    server.set_token_delay(Duration::from_millis(300));
    let api = ApiRequest::get(server.url("/api/orders"));
    let tasks: Vec<_> = fleet
        .into_iter()
        .map(|mut i| {
            let api = api.clone();
            tokio::spawn(async move { i.send(&api).await.unwrap().map(|r| r.status) })
        })
        .collect();
    for t in tasks {
        let status = t.await.unwrap();
        assert!(matches!(status, Ok(200)), "{status:?}");
    }
    assert_eq!(
        server.token_request_count(),
        2,
        "one renewal for twenty 401s"
    );
    // The successor is what the store holds: nobody deleted it.
    let issued = server.issued_tokens();
    let mut fresh = host.instance().await.unwrap();
    let t = fresh
        .get_token(&TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.token, issued[1]);
    assert_eq!(server.token_request_count(), 2);
    let invalidations = outcomes(&log, "token.invalidate");
    assert_eq!(invalidations.len(), N);
    println!("401 storm: 1 renewal; token.invalidate outcomes {invalidations:?}");
    assert!(lease_keys(&kv).is_empty(), "{:?}", lease_keys(&kv));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_each_secret_fetches_once_per_lifetime() {
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.accept_secret("rotated-secret");
    let kv = Arc::new(MemoryKv::new());
    let (old, _) = host(&server, &kv, SECRET, &[]);
    let (new, _) = host(&server, &kv, "rotated-secret", &[]);
    // Old and new deployments alternate on one store, each call a fresh instance.
    for i in 0..N {
        let host = if i % 2 == 0 { &old } else { &new };
        let mut instance = host.instance().await.unwrap();
        instance
            .get_token(&TokenRequest::default_request())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        server.token_request_count(),
        2,
        "one token request per secret"
    );
    let entries: Vec<String> = keys(&kv)
        .into_iter()
        .filter(|k| k.contains(":token:"))
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let ids: Vec<&str> = entries
        .iter()
        .map(|k| k.split(':').nth(2).unwrap())
        .collect();
    assert_ne!(ids[0], ids[1], "each credential has its key id");
}

/// Write what a party without the secret can: at every key it sees, the same name with
/// lease and pause suffixes and with every role in place of `token`, and at the names
/// an unkeyed hash of the public parts gives (the old layout). Returns the count.
async fn forge(kv: &MemoryKv, server: &MockServer) -> usize {
    let now_slot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        / 15_000;
    let guessed = {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!([
            "v1",
            server.url("/token"),
            ID,
            "client_secret_basic",
            Vec::<String>::new(),
            None::<String>,
            Vec::<String>::new()
        ])
        .to_string();
        let hex: String = Sha256::digest(canonical.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("oauth2-token-provider:v1:{hex}")
    };
    let mut names = keys(kv);
    names.push(guessed);
    let mut targets = Vec::new();
    for name in names {
        targets.push(format!("{name}:refresh-paused"));
        for slot in now_slot..now_slot + 4 {
            targets.push(format!("{name}:lease:{slot}"));
        }
        if name.contains(":token:") {
            for role in ["lease", "holder", "pause", "failure"] {
                targets.push(name.replace(":token:", &format!(":{role}:")));
            }
        }
    }
    let forged = u64::MAX.to_string();
    for t in &targets {
        kv.set("default", t, forged.as_bytes()).await.unwrap();
    }
    targets.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_forged_without_the_secret_change_nothing() {
    // Short tokens: 4 s, no skew, renewed in their last half.
    let extra = [("expiry_skew_secs", "0"), ("refresh_ahead_percent", "50")];
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_expires_in(Some(4.into()));
    let kv = Arc::new(MemoryKv::new());
    let (host, _) = host(&server, &kv, SECRET, &extra);
    // The forger shares the keyspace and knows the client id, scope and token URL, but
    // not the secret: see `forge`.
    let written = forge(&kv, &server).await;
    // A cold miss from twenty instances: one fetch, nobody stalls.
    let results = get_all(instances(&host, N).await).await;
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap();
    assert!(results.iter().all(|(r, _)| r.is_ok()));
    assert_eq!(server.token_request_count(), 1);
    assert!(slowest < Duration::from_millis(1_500), "{slowest:?}");
    // Forge again over what the store holds now, then wait into the refresh window:
    // the token is renewed ahead despite every forged pause.
    let written = written + forge(&kv, &server).await;
    // (The window starts at 2 s, each instance up to 1 s later at random.)
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let mut late = host.instance().await.unwrap();
    late.get_token(&TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server.token_request_count(),
        2,
        "renewed ahead despite {written} forged values"
    );
    println!("forged {written} values; 2 token requests, slowest cold call {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_returns_costs_its_waiters_one_lease_and_one_fetch() {
    let extra = [("lease_ms", "2000"), ("token_deadline_ms", "1500")];
    let server = MockServer::start(ID, SECRET).await.unwrap();
    let kv = Arc::new(MemoryKv::new());
    let (host, log) = host(&server, &kv, SECRET, &extra);
    // A holder took the lease just now and was killed mid-fetch: its counter and its
    // record stay in the store.
    let (settings, key) = cache_key(&server, SECRET, &extra);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let dead = Holder {
        slot: now / 2000,
        generation: 0,
        started_ms: now,
    };
    kv.set("default", &key.lease(dead.slot, 0), b"1")
        .await
        .unwrap();
    let sealed = seal::seal_value(
        &dead,
        &settings.provider.cache.secret,
        &key.context(roles::HOLDER),
        [1; 24],
    );
    kv.set("default", &key.lease_holder(), &sealed)
        .await
        .unwrap();
    server.set_token_delay(Duration::from_millis(200));
    let started = Instant::now();
    let results = get_all(instances(&host, N).await).await;
    let all = started.elapsed();
    assert!(results.iter().all(|(r, _)| r.is_ok()), "{results:?}");
    assert_eq!(server.token_request_count(), 1, "one fetch, not {N}");
    // lease_ms (2 s) + one fetch (0.2 s) + polling and scheduling slack.
    assert!(all < Duration::from_millis(3_200), "{all:?}");
    assert!(lease_keys(&kv).is_empty(), "{:?}", lease_keys(&kv));
    let lease = outcomes(&log, "token.lease");
    assert_eq!(
        lease.iter().filter(|o| *o == "stale").count(),
        1,
        "{lease:?}"
    );
    println!(
        "dead holder: {N} callers answered in {all:?} with 1 token request; token.lease {lease:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_down_is_asked_one_retry_sequence_for_the_whole_fleet() {
    let extra = [
        ("max_retries", "2"),
        ("retry_base_ms", "50"),
        ("retry_max_delay_ms", "1000"),
        ("token_deadline_ms", "3000"),
    ];
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_canned(Some(Canned {
        status: 503,
        content_type: "text/plain".into(),
        body: b"down for maintenance".to_vec(),
    }));
    server.set_token_delay(Duration::from_millis(100));
    let kv = Arc::new(MemoryKv::new());
    let (host, _) = host(&server, &kv, SECRET, &extra);
    let results = get_all(instances(&host, N).await).await;
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap();
    assert!(
        results
            .iter()
            .all(|(r, _)| matches!(r, Err(ProviderError::Server(_))))
    );
    let requests = server.token_request_count();
    assert!(
        requests <= 3,
        "{requests} token requests (max_retries + 1 = 3)"
    );
    // Bound: the holder's retry sequence (token_deadline_ms, 3 s) + polling slack.
    assert!(slowest < Duration::from_millis(3_700), "{slowest:?}");
    // New callers inside the window fail at once, without a request.
    let started = Instant::now();
    let again = get_all(instances(&host, N).await).await;
    assert!(again.iter().all(|(r, _)| r.is_err()));
    assert_eq!(server.token_request_count(), requests);
    let fast = started.elapsed();
    println!(
        "endpoint down: {N} callers, {requests} token requests, slowest {slowest:?}; {N} more failed fast in {fast:?}"
    );
    assert!(lease_keys(&kv).is_empty(), "{:?}", lease_keys(&kv));
}
