//! Benchmarks of the component in the wasmtime host, printed side by side with their
//! ratios. Run: `cargo bench -p token-provider-host --bench provider` (needs
//! `redis-server` on PATH for the Redis rows; ./scripts/test.sh installs it).
//!
//! Every case runs against in-process loopback servers (token endpoint and API), one
//! after the other in this process, after a warm-up. Each sample is one whole call as a
//! host makes it (instantiation included where the case says "fresh instance").

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use token_provider_host::components::{embedded, new_engine};
use token_provider_host::kv::{KvBackend, MemoryKv, RedisKv};
use token_provider_host::testkit::redis_server::LocalRedis;
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{
    ApiRequest, Flavor, HostBuilder, Inherit, LogSink, TokenHost, TokenRequest, TokenSource,
};
use wasmtime::component::Component;

const ID: &str = "bench-client";
const SECRET: &str = "bench-secret";
const WARMUP: Duration = Duration::from_millis(300);
const RUN: Duration = Duration::from_secs(2);
const MAX_SAMPLES: usize = 50_000;

struct Stats {
    name: String,
    samples: Vec<Duration>,
}

impl Stats {
    fn quantile_us(&self, q: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort_unstable();
        let i = ((s.len() - 1) as f64 * q).round() as usize;
        s[i].as_secs_f64() * 1e6
    }
    fn median_us(&self) -> f64 {
        self.quantile_us(0.5)
    }
    fn mean_us(&self) -> f64 {
        self.samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / self.samples.len() as f64
    }
    fn print(&self) {
        println!(
            "{:<58} {:>10.1} {:>10.1} {:>10.1} {:>8}",
            self.name,
            self.median_us(),
            self.quantile_us(0.99),
            self.mean_us(),
            self.samples.len()
        );
    }
}

async fn measure<F, Fut>(name: &str, mut op: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        op().await;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < RUN && samples.len() < MAX_SAMPLES {
        let t = Instant::now();
        op().await;
        samples.push(t.elapsed());
    }
    let stats = Stats {
        name: name.to_string(),
        samples,
    };
    stats.print();
    stats
}

fn ratio(what: &str, a: &Stats, b: &Stats) {
    println!(
        "  ratio  {what}: {:.2}x  ({:.1} us / {:.1} us, medians)",
        a.median_us() / b.median_us(),
        a.median_us(),
        b.median_us()
    );
}

fn builder(server: &MockServer, kv: Arc<dyn KvBackend>) -> HostBuilder {
    TokenHost::builder()
        .config("token_url", server.url("/token"))
        .config("client_id", ID)
        .config("client_secret", SECRET)
        .config("allow_insecure_http", "true")
        .config("allowed_origins", server.origin())
        .kv(kv)
        .log(LogSink::Discard)
}

async fn get_token(host: &TokenHost) -> TokenSource {
    let mut i = host.instance().await.unwrap();
    i.get_token(&TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap()
        .source
}

/// `authorized-client.send` on a fresh instance; the API must answer 200.
async fn send_ok(host: &TokenHost, request: &ApiRequest) {
    let resp = host
        .instance()
        .await
        .unwrap()
        .send(request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
}

fn api_request(server: &MockServer) -> ApiRequest {
    ApiRequest {
        method: "GET".into(),
        url: server.url("/api/orders"),
        headers: vec![],
        body: None,
        token: None,
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build the plain wasi:http baseline component (examples/plain-http).
fn plain_http_component() -> Vec<u8> {
    let mut cmd = std::process::Command::new("cargo");
    cmd.args([
        "build",
        "--quiet",
        "--manifest-path",
        "examples/plain-http/Cargo.toml",
        "--target",
        "wasm32-wasip2",
        "--release",
        "--target-dir",
        "target/examples",
    ])
    .current_dir(repo_root());
    token_provider_host::testkit::process::user_environment(&mut cmd);
    assert!(
        cmd.status().unwrap().success(),
        "building examples/plain-http failed"
    );
    std::fs::read(repo_root().join("target/examples/wasm32-wasip2/release/plain_http.wasm"))
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_record_api(false);
    println!(
        "{:<58} {:>10} {:>10} {:>10} {:>8}",
        "case", "median us", "p99 us", "mean us", "samples"
    );

    // --- get-token, cache hit ---------------------------------------------------------
    println!("\nget-token, cache hit");
    let memory = builder(&server, Arc::new(MemoryKv::new())).build().unwrap();
    assert_eq!(get_token(&memory).await, TokenSource::Fresh);
    let fresh_memory = measure("fresh instance per call, memory store", || async {
        assert_eq!(get_token(&memory).await, TokenSource::Store);
    })
    .await;
    let redis = LocalRedis::start();
    let fresh_redis = match &redis {
        Ok(redis) => {
            let kv = RedisKv::connect(&redis.url()).await.unwrap();
            let host = builder(&server, Arc::new(kv)).build().unwrap();
            assert_eq!(get_token(&host).await, TokenSource::Fresh);
            Some(
                measure(
                    "fresh instance per call, Redis store (loopback)",
                    || async {
                        assert_eq!(get_token(&host).await, TokenSource::Store);
                    },
                )
                .await,
            )
        }
        Err(e) => {
            println!("  (Redis rows skipped: {e})");
            None
        }
    };
    let mut reused = memory.instance().await.unwrap();
    // `measure`'s loop written out: its closure cannot lend `&mut reused` to the future
    // it returns, and a lock around the instance would be timed too.
    let reused_hit = {
        let reused = &mut reused;
        let mut samples = Vec::new();
        let warm = Instant::now();
        let req = TokenRequest::default_request();
        while warm.elapsed() < WARMUP {
            reused.get_token(&req).await.unwrap().unwrap();
        }
        let start = Instant::now();
        while start.elapsed() < RUN && samples.len() < MAX_SAMPLES {
            let t = Instant::now();
            let tok = reused.get_token(&req).await.unwrap().unwrap();
            samples.push(t.elapsed());
            assert_eq!(tok.source, TokenSource::Memory);
        }
        let s = Stats {
            name: "reused instance (its memory cache)".into(),
            samples,
        };
        s.print();
        s
    };
    if let Some(r) = &fresh_redis {
        ratio(
            "Redis store vs memory store (fresh instances)",
            r,
            &fresh_memory,
        );
    }
    ratio(
        "fresh instance vs reused instance",
        &fresh_memory,
        &reused_hit,
    );

    // --- authorized request vs the same plain wasi:http request -------------------------
    println!("\nauthorized request vs plain wasi:http request to a loopback API");
    let token = memory
        .instance()
        .await
        .unwrap()
        .get_token(&TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap()
        .token;
    let request = api_request(&server);
    let wrapped = measure(
        "authorized-client.send, fresh instance, cached token",
        || send_ok(&memory, &request),
    )
    .await;
    let plain_bytes = plain_http_component();
    let plain_component = Component::new(memory.engine(), &plain_bytes).unwrap();
    let authority = server.addr().to_string();
    let bearer = format!("Bearer {token}");
    let plain = measure(
        "plain wasi:http GET, fresh instance (examples/plain-http)",
        || async {
            // The baseline sends its own request: it needs outbound HTTP, nothing else.
            let (mut store, instance) = memory
                .instantiate_other_with(&plain_component, Inherit::NOTHING.outbound_http())
                .await
                .unwrap();
            let iface = instance
                .get_export_index(&mut store, None, "example:plain-http/fetch@0.1.0")
                .unwrap();
            let get = instance
                .get_export_index(&mut store, Some(&iface), "get")
                .unwrap();
            let get = instance
                .get_typed_func::<(String, String, String), (Result<u16, String>,)>(
                    &mut store, &get,
                )
                .unwrap();
            let (status,) = get
                .call_async(
                    &mut store,
                    (authority.clone(), "/api/orders".into(), bearer.clone()),
                )
                .await
                .unwrap();
            assert_eq!(status, Ok(200));
        },
    )
    .await;
    ratio("authorized-client.send vs plain request", &wrapped, &plain);

    // --- our cache vs a token per request ------------------------------------------------
    println!("\nthe same requests: with our cache vs fetching a token for each (no cache)");
    let no_cache = builder(&server, Arc::new(MemoryKv::new()))
        .config("kv_store", "")
        .build()
        .unwrap();
    let before = server.token_request_count();
    let uncached = measure(
        "send, fresh instance, no store: token request + API call",
        || send_ok(&no_cache, &request),
    )
    .await;
    let fetched = server.token_request_count() - before;
    assert!(
        fetched >= uncached.samples.len(),
        "every call fetched a token"
    );
    ratio("token per request vs cached token", &uncached, &wrapped);
    println!(
        "  (token endpoint on loopback answering at once; a real one adds its latency to every uncached call)"
    );

    // --- cold start ----------------------------------------------------------------------
    println!("\ncold start");
    let engine = new_engine().unwrap();
    let bytes = Flavor::Spin.embedded_bytes();
    let mut compile = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        Component::new(&engine, bytes).unwrap();
        compile.push(t.elapsed());
    }
    Stats {
        name: "compile the component (Component::new)".into(),
        samples: compile,
    }
    .print();
    let precompiled = engine.precompile_component(bytes).unwrap();
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    // Seed the shared store so the first call is a store hit.
    let seeded = builder(&server, kv.clone()).build().unwrap();
    get_token(&seeded).await;
    let cold = measure(
        "deserialize precompiled + link + instantiate + first get-token",
        || async {
            // SAFETY: the bytes come from `precompile_component` on this engine, just above.
            let component = unsafe { Component::deserialize(&engine, &precompiled) }.unwrap();
            let host = builder(&server, kv.clone())
                .build_with(engine.clone(), component)
                .unwrap();
            assert_eq!(get_token(&host).await, TokenSource::Store);
        },
    )
    .await;
    let (e, c) = embedded(Flavor::Spin);
    let linked = builder(&server, kv.clone()).build_with(e, c).unwrap();
    let inst = measure("instantiate only (pre-linked)", || async {
        linked.instance().await.unwrap();
    })
    .await;
    ratio(
        "cold start from precompiled vs instantiate only",
        &cold,
        &inst,
    );

    // --- size --------------------------------------------------------------------------
    println!("\ncomponent size (profile `component`: opt-level s, LTO, strip, panic=abort)");
    for (name, flavor) in [
        ("token_provider.wasm (Spin flavor)", Flavor::Spin),
        (
            "token_provider_wasmtime.wasm (wasmtime flavor)",
            Flavor::Wasmtime,
        ),
    ] {
        println!("{name:<58} {:>10} bytes", flavor.embedded_bytes().len());
    }
    println!(
        "{:<58} {:>10} bytes",
        "plain_http.wasm (baseline, no provider)",
        plain_bytes.len()
    );
    drop(redis);
}
