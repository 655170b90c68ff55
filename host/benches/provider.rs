//! Benchmarks of the component in the wasmtime host, printed side by side with their
//! ratios. Run: `cargo bench -p token-provider-host --bench provider` (needs
//! `redis-server` on PATH for the Redis rows; ./scripts/test.sh installs it).
//!
//! Every case runs against in-process loopback servers (token endpoint and API), one
//! after the other in this process, after a warm-up. Each sample is one whole call as a
//! host makes it (instantiation included where the case says "fresh instance").

use bytes::Bytes;
use http_body_util::Full;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use token_provider_host::components::{
    EMBEDDED_INTERCEPTOR, embedded, new_engine, new_pooled_engine,
};
use token_provider_host::compose;
use token_provider_host::kv::{KvBackend, MemoryKv, RedisKv};
use token_provider_host::reuse::Reuse;
use token_provider_host::serve::{ErrorCode, ServiceResponse};
use token_provider_host::testkit::LatencyKv;
use token_provider_host::testkit::redis_server::LocalRedis;
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{
    ApiRequest, Flavor, HostBuilder, Inherit, LogSink, Phases, ProviderInstance, TokenHost,
    TokenRequest, TokenSource,
};
use wasmtime::component::Component;

mod common;
use common::example_component;

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
    /// The stats of `samples`, printed as a row.
    fn printed(name: &str, samples: Vec<Duration>) -> Stats {
        let stats = Stats {
            name: name.to_string(),
            samples,
        };
        stats.print();
        stats
    }
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
    Stats::printed(name, samples)
}

/// Two operations measured alternately, one sample of each in turn, so that whatever
/// the machine does meanwhile (frequency, other load) weighs on both alike: for the
/// ratios the goals are stated in. Prints both rows and `a`/`b`.
async fn measure_pair<A, FutA, B, FutB>(
    what: &str,
    (name_a, mut a): (&str, A),
    (name_b, mut b): (&str, B),
) -> (Stats, Stats)
where
    A: FnMut() -> FutA,
    FutA: Future<Output = ()>,
    B: FnMut() -> FutB,
    FutB: Future<Output = ()>,
{
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        a().await;
        b().await;
    }
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < 2 * RUN && sa.len() < MAX_SAMPLES {
        let t = Instant::now();
        a().await;
        sa.push(t.elapsed());
        let t = Instant::now();
        b().await;
        sb.push(t.elapsed());
    }
    let sa = Stats::printed(name_a, sa);
    let sb = Stats::printed(name_b, sb);
    ratio(&format!("{what} (interleaved)"), &sa, &sb);
    (sa, sb)
}

fn ratio(what: &str, a: &Stats, b: &Stats) {
    println!(
        "  ratio  {what}: {:.2}x  ({:.1} us / {:.1} us, medians)",
        a.median_us() / b.median_us(),
        a.median_us(),
        b.median_us()
    );
}

/// Time a native call (the core's code compiled for this machine), like [`measure`].
fn measure_sync(name: &str, mut op: impl FnMut()) -> Stats {
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        op();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < RUN / 4 && samples.len() < MAX_SAMPLES {
        let t = Instant::now();
        op();
        samples.push(t.elapsed());
    }
    Stats::printed(name, samples)
}

/// `n` fresh-instance calls of `call` on `host` (built with `phases`): where a call's
/// time goes, as means per call. Instantiation is timed here, each import phase by the
/// host ([`Phases`]); the rest is the component's own work (and wasmtime's glue).
async fn breakdown<F, Fut>(title: &str, host: &TokenHost, phases: &Phases, n: u32, mut call: F)
where
    F: FnMut(ProviderInstance) -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..200 {
        call(host.instance().await.unwrap()).await;
    }
    phases.take();
    let (mut instantiate, mut total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let instance = host.instance().await.unwrap();
        instantiate += t.elapsed();
        call(instance).await;
        total += t.elapsed();
    }
    let spent = phases.take();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let total_us = per(total);
    let row = |name: &str, calls: f64, us: f64| {
        println!(
            "  {name:<40} {calls:>8.1} {us:>10.1} {:>7.1}%",
            100.0 * us / total_us
        );
    };
    println!("{title} ({n} calls, means per call)");
    println!(
        "  {:<40} {:>8} {:>10} {:>8}",
        "phase", "calls", "us", "share"
    );
    row("instantiate", 1.0, per(instantiate));
    let mut imports = Duration::ZERO;
    for (phase, s) in &spent {
        row(phase, s.calls as f64 / f64::from(n), per(s.time));
        imports += s.time;
    }
    row(
        "the component's own work (the rest)",
        f64::NAN,
        per(total.saturating_sub(instantiate + imports)),
    );
    row("total", f64::NAN, total_us);
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

/// `authorized-client.send` on `instance`; the API must answer 200.
async fn send_on(mut instance: ProviderInstance, request: &ApiRequest) {
    assert_eq!(instance.send(request).await.unwrap().unwrap().status, 200);
}

/// `authorized-client.send` on a fresh instance; the API must answer 200.
async fn send_ok(host: &TokenHost, request: &ApiRequest) {
    send_on(host.instance().await.unwrap(), request).await;
}

fn api_request(server: &MockServer) -> ApiRequest {
    ApiRequest::get(server.url("/api/orders"))
}

/// The baseline: `examples/plain-http` sends the same GET with a static token, on a
/// fresh instance that gets outbound HTTP and nothing else.
async fn plain_get(host: &TokenHost, component: &Component, authority: &str, bearer: &str) {
    let (mut store, instance) = host
        .instantiate_other_with(component, Inherit::NOTHING.outbound_http())
        .await
        .unwrap();
    let iface = instance
        .get_export_index(&mut store, None, "example:plain-http/fetch@0.1.0")
        .unwrap();
    let get = instance
        .get_export_index(&mut store, Some(&iface), "get")
        .unwrap();
    let get = instance
        .get_typed_func::<(String, String, String), (Result<u16, String>,)>(&mut store, &get)
        .unwrap();
    let (status,) = get
        .call_async(
            &mut store,
            (
                authority.to_string(),
                "/api/orders".into(),
                bearer.to_string(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, Ok(200));
}

/// Build the plain wasi:http baseline component (examples/plain-http).
fn plain_http_component() -> Vec<u8> {
    example_component("plain-http", "plain_http.wasm")
}

/// A request for examples/p3-app: forwarded to the API's `/api/orders`, with
/// `authorization` if given (the app sends on the headers it gets).
fn p3_request(api: &str, authorization: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::builder()
        .uri("http://app.example/api/orders")
        .header("x-forward-to", api);
    if let Some(value) = authorization {
        r = r.header("authorization", value);
    }
    r.body(Full::new(Bytes::new())).unwrap()
}

/// The token interceptor composed in front of examples/p3-app, against the same app
/// alone that sends the token itself: on one warm instance each (token in the
/// interceptor's memory) and on a fresh instance per request (token in the store).
async fn interceptor_rows(server: &MockServer, host: &TokenHost, bearer: &str) {
    println!(
        "
the token interceptor: app -> interceptor -> host vs app -> host (examples/p3-app, WASIp3;\nthe app alone is given the token in its request and sends it on)"
    );
    let app = example_component("p3-app", "p3_app.wasm");
    let composed = compose::wrap(&app, EMBEDDED_INTERCEPTOR).unwrap();
    let app = Component::new(host.engine(), &app).unwrap();
    let composed = Component::new(host.engine(), &composed).unwrap();
    let api = server.origin();
    let ok = |answer: anyhow::Result<Result<ServiceResponse, ErrorCode>>| {
        let response = answer.unwrap().unwrap();
        assert_eq!(response.status(), 200, "{response:?}");
    };
    let mut warm_with = host
        .service_instance(&composed, Inherit::ALL)
        .await
        .unwrap();
    let mut warm_alone = host.service_instance(&app, Inherit::ALL).await.unwrap();
    // `measure_pair`'s loop written out: its closures cannot lend the instances to the
    // futures they return.
    let (mut with, mut alone) = (Vec::new(), Vec::new());
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        ok(warm_with.handle(p3_request(&api, None)).await);
        ok(warm_alone.handle(p3_request(&api, Some(bearer))).await);
    }
    let start = Instant::now();
    while start.elapsed() < 2 * RUN && with.len() < MAX_SAMPLES {
        let t = Instant::now();
        ok(warm_with.handle(p3_request(&api, None)).await);
        with.push(t.elapsed());
        let t = Instant::now();
        ok(warm_alone.handle(p3_request(&api, Some(bearer))).await);
        alone.push(t.elapsed());
    }
    let with = Stats::printed("app + interceptor, warm instance, token in memory", with);
    let alone = Stats::printed("app alone, warm instance, token in the request", alone);
    ratio(
        "interceptor vs app alone, warm (interleaved)",
        &with,
        &alone,
    );
    // As Spin 4.1 runs WASIp3 components: reused instances (128 requests, 16 at once,
    // 1 s idle), one request at a time here, so one warm instance each.
    let pool_with = host
        .service_pool(&composed, Inherit::ALL, Reuse::SPIN)
        .unwrap();
    let pool_alone = host.service_pool(&app, Inherit::ALL, Reuse::SPIN).unwrap();
    measure_pair(
        "interceptor vs app alone, Spin's instance reuse",
        ("app + interceptor, Spin's instance reuse", || async {
            ok(pool_with.handle(p3_request(&api, None)).await)
        }),
        (
            "app alone, Spin's instance reuse, token in the request",
            || async { ok(pool_alone.handle(p3_request(&api, Some(bearer))).await) },
        ),
    )
    .await;
    // The component hop alone: the app sets its own Authorization, which the
    // interceptor passes on untouched after its decision (and a `passed` line).
    measure_pair(
        "interceptor passing the request on vs app alone, Spin's instance reuse",
        (
            "app + interceptor, the app's own Authorization passed on",
            || async { ok(pool_with.handle(p3_request(&api, Some(bearer))).await) },
        ),
        (
            "app alone, Spin's instance reuse, token in the request",
            || async { ok(pool_alone.handle(p3_request(&api, Some(bearer))).await) },
        ),
    )
    .await;
    measure_pair(
        "interceptor vs app alone, fresh instances",
        (
            "app + interceptor, fresh instance, token in the store",
            || async {
                ok(host
                    .handle_http(&composed, Inherit::ALL, p3_request(&api, None))
                    .await);
            },
        ),
        (
            "app alone, fresh instance, token in the request",
            || async {
                ok(host
                    .handle_http(&app, Inherit::ALL, p3_request(&api, Some(bearer)))
                    .await);
            },
        ),
    )
    .await;
}

/// DPoP (issue 25): a request with a DPoP token against the same request with a Bearer
/// token, side by side, for `send` and for the interceptor. The difference is what a
/// proof costs per request inside the component (an ES256 signature over the proof,
/// the token's hash, the JSON and base64url): the test server's checks are off here
/// (`set_check_dpop(false)`), so the rows time the client's side only.
async fn dpop_rows() {
    println!("\nDPoP: a proof per request (ES256, generated key) vs a Bearer token, interleaved");
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_record_api(false);
    server.set_check_dpop(false);
    let bearer = builder(&server, Arc::new(MemoryKv::new())).build().unwrap();
    let dpop = builder(&server, Arc::new(MemoryKv::new()))
        .config("dpop", "on")
        .build()
        .unwrap();
    let request = api_request(&server);
    let mut warm_dpop = dpop.instance().await.unwrap();
    let proof_len = dpop_proof_alone(&mut warm_dpop, &request.url).await;
    dpop_warm_send_rows(&server, &bearer, warm_dpop, proof_len).await;
    // Fresh instances (token and key from the store), as Spin runs the provider.
    let (with, without) = measure_pair(
        "send DPoP vs Bearer, fresh instances",
        ("send, DPoP token, fresh instance", || async {
            send_ok(&dpop, &request).await
        }),
        ("send, Bearer token, fresh instance", || async {
            send_ok(&bearer, &request).await
        }),
    )
    .await;
    println!(
        "  a proof and the key's store read add {:.1} us to send (median difference)",
        with.median_us() - without.median_us()
    );
    dpop_interceptor_rows(&server, &dpop, &bearer, proof_len).await;
}

/// The proof alone, inside the component: the `dpop.proof` export against `get-token`
/// (which `proof` also does first), on one warm instance (token and key in memory, the
/// table of `token_provider_es256` built), no HTTP. Returns how long a proof is.
async fn dpop_proof_alone(warm_dpop: &mut ProviderInstance, url: &str) -> usize {
    let token_request = TokenRequest::default_request();
    let proof_len = {
        let proven = warm_dpop.dpop_proof(&token_request, "GET", url).await;
        proven.unwrap().unwrap().proof.len()
    };
    let (mut proofs, mut tokens) = (Vec::new(), Vec::new());
    let warm = Instant::now();
    loop {
        let measuring = warm.elapsed() >= WARMUP;
        let t = Instant::now();
        let proven = warm_dpop.dpop_proof(&token_request, "GET", url).await;
        assert!(proven.unwrap().is_ok());
        let proof = t.elapsed();
        let t = Instant::now();
        assert!(warm_dpop.get_token(&token_request).await.unwrap().is_ok());
        if measuring {
            proofs.push(proof);
            tokens.push(t.elapsed());
        }
        if warm.elapsed() >= WARMUP + RUN || proofs.len() >= MAX_SAMPLES {
            break;
        }
    }
    let proofs = Stats::printed("dpop.proof, warm instance", proofs);
    let tokens = Stats::printed("get-token, warm instance", tokens);
    ratio("dpop.proof vs get-token (interleaved)", &proofs, &tokens);
    println!(
        "  a proof takes {:.1} us inside the component (median difference; {proof_len} bytes)",
        proofs.median_us() - tokens.median_us()
    );
    proof_len
}

/// `send` on warm instances, one request after another: DPoP, Bearer, and Bearer with
/// a header as long as the proof (what the header's bytes cost on their own; they also
/// cross into the component, so a little more than the proof's do).
async fn dpop_warm_send_rows(
    server: &MockServer,
    bearer: &TokenHost,
    mut warm_dpop: ProviderInstance,
    proof_len: usize,
) {
    let request = api_request(server);
    let mut warm_bearer = bearer.instance().await.unwrap();
    let padded = ApiRequest {
        headers: vec![("x-padding".into(), "p".repeat(proof_len).into())],
        ..api_request(server)
    };
    let (mut with, mut without, mut pad) = (Vec::new(), Vec::new(), Vec::new());
    let one = async |i: &mut ProviderInstance, r: &ApiRequest, s: Option<&mut Vec<Duration>>| {
        let t = Instant::now();
        assert_eq!(i.send(r).await.unwrap().unwrap().status, 200);
        if let Some(s) = s {
            s.push(t.elapsed());
        }
    };
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        one(&mut warm_dpop, &request, None).await;
        one(&mut warm_bearer, &request, None).await;
        one(&mut warm_bearer, &padded, None).await;
    }
    let start = Instant::now();
    while start.elapsed() < 3 * RUN && with.len() < MAX_SAMPLES {
        one(&mut warm_dpop, &request, Some(&mut with)).await;
        one(&mut warm_bearer, &request, Some(&mut without)).await;
        one(&mut warm_bearer, &padded, Some(&mut pad)).await;
    }
    let with = Stats::printed("send, DPoP token, warm instance", with);
    let without = Stats::printed("send, Bearer token, warm instance", without);
    let pad = Stats::printed("send, Bearer token and a header of the proof's size", pad);
    ratio("send DPoP vs Bearer, warm (interleaved)", &with, &without);
    println!(
        "  a proof adds {:.1} us to send (median difference); a header of its size alone {:.1} us",
        with.median_us() - without.median_us(),
        pad.median_us() - without.median_us()
    );
}

/// The interceptor, under Spin's instance reuse (token and key in memory), and what a
/// header of a proof's size costs on that path.
async fn dpop_interceptor_rows(
    server: &MockServer,
    dpop: &TokenHost,
    bearer: &TokenHost,
    proof_len: usize,
) {
    let app = example_component("p3-app", "p3_app.wasm");
    let composed = compose::wrap(&app, EMBEDDED_INTERCEPTOR).unwrap();
    let composed = Component::new(dpop.engine(), &composed).unwrap();
    let pool_dpop = dpop
        .service_pool(&composed, Inherit::ALL, Reuse::SPIN)
        .unwrap();
    let pool_bearer = bearer
        .service_pool(&composed, Inherit::ALL, Reuse::SPIN)
        .unwrap();
    let api = server.origin();
    let ok = |answer: anyhow::Result<Result<ServiceResponse, ErrorCode>>| {
        let response = answer.unwrap().unwrap();
        assert_eq!(response.status(), 200, "{response:?}");
    };
    let bearer_row = || async { ok(pool_bearer.handle(p3_request(&api, None)).await) };
    let bearer_name = "app + interceptor, Bearer token, Spin's instance reuse";
    let (with, without) = measure_pair(
        "interceptor DPoP vs Bearer, Spin's instance reuse",
        (
            "app + interceptor, DPoP token, Spin's instance reuse",
            || async { ok(pool_dpop.handle(p3_request(&api, None)).await) },
        ),
        (bearer_name, bearer_row),
    )
    .await;
    println!(
        "  a proof adds {:.1} us to an intercepted request (median difference)",
        with.median_us() - without.median_us()
    );
    // What a header of the proof's size costs on its own on that path: the app sends on
    // the headers it gets, so this one crosses into the app and back out through the
    // interceptor (a little more than the proof's way: out of the interceptor only).
    let padded = || {
        let mut r = p3_request(&api, None);
        let value = http::HeaderValue::from_str(&"p".repeat(proof_len)).unwrap();
        r.headers_mut().insert("x-padding", value);
        r
    };
    let (pad, bare) = measure_pair(
        "interceptor Bearer with a header of a proof's size vs without, Spin's instance reuse",
        (
            "app + interceptor, Bearer token and a header of the proof's size",
            || async { ok(pool_bearer.handle(padded()).await) },
        ),
        (bearer_name, bearer_row),
    )
    .await;
    println!(
        "  a header of a proof's size adds {:.1} us to an intercepted request (median difference)",
        pad.median_us() - bare.median_us()
    );
}

/// The two scenarios measured in a real Spin 4.1 (issue 21), reproduced under Spin's
/// instance reuse (`Reuse::SPIN`) with the embedded interceptor and, if
/// `TOKEN_PROVIDER_BENCH_INTERCEPTOR_BEFORE` names another build of it, with that one
/// too, one after the other:
/// - renewals under load: a token endpoint that takes 1 s, 4 s tokens renewed in their
///   second half, 8 clients sending one request after another for 16 s: how many
///   requests took over 200 ms, and the slowest;
/// - a revocation: 24 requests at once (several instances hold the token), the API
///   revokes it, then 12 GETs and 12 POSTs of 8 bytes at once: how many came back to
///   the app as 401, and how many tokens were fetched for them.
async fn spin_scenarios(app: &[u8]) {
    let mut builds = vec![("embedded".to_string(), EMBEDDED_INTERCEPTOR.to_vec())];
    if let Some(path) = std::env::var_os("TOKEN_PROVIDER_BENCH_INTERCEPTOR_BEFORE") {
        let bytes = std::fs::read(&path).expect("a readable interceptor build");
        builds.push((format!("{}", PathBuf::from(path).display()), bytes));
    }
    if let [(_, embedded), (before_name, before)] = &builds[..] {
        per_request_against(app, embedded, before_name, before).await;
    }
    for (name, interceptor) in &builds {
        let composed = compose::wrap(app, interceptor).unwrap();
        println!(
            "
Spin's scenarios, interceptor: {name}"
        );
        renewals_under_load(&composed).await;
        revocation(&composed).await;
    }
}

/// The embedded interceptor against another build, per request under Spin's reuse
/// (interleaved; the token in memory, one request at a time).
async fn per_request_against(app: &[u8], embedded: &[u8], before_name: &str, before: &[u8]) {
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_record_api(false);
    let host = builder(&server, Arc::new(MemoryKv::new())).build().unwrap();
    let pool = |interceptor: &[u8]| {
        let composed = compose::wrap(app, interceptor).unwrap();
        let component = Component::new(host.engine(), composed).unwrap();
        host.service_pool(&component, Inherit::ALL, Reuse::SPIN)
            .unwrap()
    };
    let (now, then) = (pool(embedded), pool(before));
    let api = server.origin();
    let ok = |answer: anyhow::Result<Result<ServiceResponse, ErrorCode>>| {
        assert_eq!(answer.unwrap().unwrap().status(), 200);
    };
    println!();
    measure_pair(
        &format!("embedded interceptor vs {before_name}, Spin's instance reuse"),
        (
            "app + embedded interceptor, Spin's instance reuse",
            || async { ok(now.handle(p3_request(&api, None)).await) },
        ),
        (
            "app + the other interceptor build, Spin's instance reuse",
            || async { ok(then.handle(p3_request(&api, None)).await) },
        ),
    )
    .await;
}

async fn renewals_under_load(composed: &[u8]) {
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_record_api(false);
    server.set_expires_in(Some(4.into()));
    server.set_token_delay(Duration::from_secs(1));
    let host = builder(&server, Arc::new(MemoryKv::new()))
        .config("expiry_skew_secs", "0")
        .config("refresh_ahead_percent", "50")
        .build()
        .unwrap();
    let component = Component::new(host.engine(), composed).unwrap();
    let pool = host
        .service_pool(&component, Inherit::ALL, Reuse::SPIN)
        .unwrap();
    let api = server.origin();
    let first = pool.handle(p3_request(&api, None)).await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    let fetched_before = server.token_request_count();
    let start = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (pool, api) = (pool.clone(), api.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut failed = 0;
                while start.elapsed() < Duration::from_secs(16) {
                    let t = Instant::now();
                    match pool.handle(p3_request(&api, None)).await {
                        Ok(Ok(r)) if r.status() == 200 => {}
                        _ => failed += 1,
                    }
                    times.push(t.elapsed());
                }
                (times, failed)
            })
        })
        .collect();
    let (mut times, mut failed) = (Vec::new(), 0);
    for client in clients {
        let (t, f) = client.await.unwrap();
        times.extend(t);
        failed += f;
    }
    let slow = times
        .iter()
        .filter(|t| **t > Duration::from_millis(200))
        .count();
    let slowest = times.iter().max().unwrap();
    println!(
        "renewals under load (1 s token endpoint, 4 s tokens, 8 clients, 16 s): {} requests, {} over 200 ms, slowest {:.0} ms, {} not 200, {} token requests, {} instances",
        times.len(),
        slow,
        slowest.as_secs_f64() * 1e3,
        failed,
        server.token_request_count() - fetched_before,
        pool.instances_made()
    );
}

async fn revocation(composed: &[u8]) {
    let server = MockServer::start(ID, SECRET).await.unwrap();
    let host = builder(&server, Arc::new(MemoryKv::new())).build().unwrap();
    let component = Component::new(host.engine(), composed).unwrap();
    let pool = host
        .service_pool(&component, Inherit::ALL, Reuse::SPIN)
        .unwrap();
    let api = server.origin();
    let wave = |post: bool| {
        let calls: Vec<_> = (0..24)
            .map(|i| {
                let pool = pool.clone();
                let mut request = p3_request(&api, None);
                if post && i % 2 == 1 {
                    *request.method_mut() = http::Method::POST;
                    *request.body_mut() = Full::new(Bytes::from_static(b"order=42"));
                }
                tokio::spawn(async move { pool.handle(request).await })
            })
            .collect();
        async move {
            let mut unauthorized = 0;
            for call in calls {
                let answer = call.await.unwrap().unwrap().unwrap();
                if answer.status() == 401 {
                    unauthorized += 1;
                }
            }
            unauthorized
        }
    };
    assert_eq!(wave(false).await, 0);
    let before = server.token_request_count();
    server.revoke_all();
    let unauthorized = wave(true).await;
    println!(
        "a revocation (24 requests at once after it, 12 of them POSTs of 8 bytes, on {} instances): {} answered 401 to the app, {} token requests",
        pool.instances_made(),
        unauthorized,
        server.token_request_count() - before
    );
}

/// `TOKEN_PROVIDER_BENCH_OTHER=path/to/other.wasm`: the embedded component and another
/// build of it (a size or speed trade-off under study), side by side in one run: each
/// compiled three times in turn (the median), then every row interleaved.
async fn compare_with(
    server: &MockServer,
    kv: &Arc<dyn KvBackend>,
    request: &ApiRequest,
    path: PathBuf,
) {
    println!(
        "\nthe embedded component vs {} (pooled engine)",
        path.display()
    );
    let other = std::fs::read(&path).expect("TOKEN_PROVIDER_BENCH_OTHER names a readable file");
    let engine = new_pooled_engine().unwrap();
    let builds = [
        ("embedded", Flavor::Spin.embedded_bytes()),
        ("other", &other[..]),
    ];
    let mut compile_ms = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, (_, bytes)) in builds.iter().enumerate() {
            let t = Instant::now();
            drop(Component::new(&engine, bytes).unwrap());
            compile_ms[i].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut hosts = Vec::new();
    for (i, (name, bytes)) in builds.iter().enumerate() {
        compile_ms[i].sort_by(f64::total_cmp);
        println!("{:<58} {:>10} bytes", format!("{name}: size"), bytes.len());
        println!(
            "{:<58} {:>10.1} ms",
            format!("{name}: Component::new (median of 3, alternating)"),
            compile_ms[i][1]
        );
        let component = Component::new(&engine, bytes).unwrap();
        let host = builder(server, kv.clone())
            .build_with(engine.clone(), component)
            .unwrap();
        get_token(&host).await;
        hosts.push(host);
    }
    println!(
        "  ratio  Component::new: other vs embedded: {:.2}x",
        compile_ms[1][1] / compile_ms[0][1]
    );
    let (embedded, other) = (&hosts[0], &hosts[1]);
    let hit = async |host| assert_eq!(get_token(host).await, TokenSource::Store);
    measure_pair(
        "get-token hit, fresh instance: other vs embedded",
        ("other: get-token, fresh instance, store hit", || hit(other)),
        ("embedded: get-token, fresh instance, store hit", || {
            hit(embedded)
        }),
    )
    .await;
    measure_pair(
        "send, fresh instance: other vs embedded",
        ("other: send, fresh instance, cached token", || {
            send_ok(other, request)
        }),
        ("embedded: send, fresh instance, cached token", || {
            send_ok(embedded, request)
        }),
    )
    .await;
    compare_on_demand(server, kv, &builds).await;
    compare_signing(server, &engine, &builds).await;
}

/// An ES256 `private_key_jwt` token fetch on a warm instance of each build, forced so
/// that every call signs, interleaved call by call; and `client_secret_basic` beside
/// them, so that the difference is the signing.
async fn compare_signing(
    server: &MockServer,
    engine: &wasmtime::Engine,
    builds: &[(&str, &[u8]); 2],
) {
    println!(
        "
ES256 signing: a forced private_key_jwt fetch on a warm instance"
    );
    server.set_accept_assertions(true);
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let forced = TokenRequest {
        force_refresh: true,
        ..TokenRequest::default_request()
    };
    let mut instances = Vec::new();
    for (name, bytes) in builds {
        let component = Component::new(engine, bytes).unwrap();
        for es256 in [true, false] {
            let mut b = builder(server, Arc::new(MemoryKv::new())).config("kv_store", "");
            if es256 {
                b = b
                    .config("auth_method", "private_key_jwt")
                    .config("client_private_key", p256.as_str());
            }
            let host = b.build_with(engine.clone(), component.clone()).unwrap();
            let label = if es256 {
                "ES256"
            } else {
                "client_secret_basic"
            };
            instances.push((
                format!("{name}: forced fetch, {label}"),
                host.instance().await.unwrap(),
            ));
        }
    }
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        for (_, instance) in &mut instances {
            instance.get_token(&forced).await.unwrap().unwrap();
        }
    }
    let mut samples = vec![Vec::new(); instances.len()];
    let run = Instant::now();
    while run.elapsed() < RUN * 2 && samples[0].len() < MAX_SAMPLES {
        for (i, (_, instance)) in instances.iter_mut().enumerate() {
            let t = Instant::now();
            instance.get_token(&forced).await.unwrap().unwrap();
            samples[i].push(t.elapsed());
        }
    }
    let rows: Vec<Stats> = instances
        .iter()
        .zip(samples)
        .map(|((name, _), samples)| Stats::printed(name, samples))
        .collect();
    let signing = |es256: &Stats, basic: &Stats| es256.median_us() - basic.median_us();
    let (embedded, other) = (signing(&rows[0], &rows[1]), signing(&rows[2], &rows[3]));
    println!(
        "  signing inside the component (median difference): embedded {embedded:.1} us, other {other:.1} us; other vs embedded {:.2}x",
        other / embedded
    );
}

/// The host bench's own figures for both builds, side by side on the on-demand engine
/// the main rows use: a fresh instance's store hit and instantiation alone, and a cold
/// start from a mapped precompiled file (deserialize, link, instantiate, one get-token).
async fn compare_on_demand(
    server: &MockServer,
    kv: &Arc<dyn KvBackend>,
    builds: &[(&str, &[u8]); 2],
) {
    println!(
        "
the same, on the on-demand engine of the main rows"
    );
    let engine = new_engine().unwrap();
    let mut hosts = Vec::new();
    let mut files = Vec::new();
    for (name, bytes) in builds {
        let host = builder(server, kv.clone())
            .build_with(engine.clone(), Component::new(&engine, bytes).unwrap())
            .unwrap();
        get_token(&host).await;
        hosts.push(host);
        let file = std::env::temp_dir().join(format!(
            "token-provider-bench-{}-{name}.cwasm",
            std::process::id()
        ));
        std::fs::write(&file, engine.precompile_component(bytes).unwrap()).unwrap();
        files.push(file);
    }
    let (embedded, other) = (&hosts[0], &hosts[1]);
    let hit = async |host| assert_eq!(get_token(host).await, TokenSource::Store);
    let inst = async |host: &TokenHost| drop(host.instance().await.unwrap());
    let (hit_other, hit_embedded) = measure_pair(
        "fresh-instance hit: other vs embedded",
        ("other: get-token, fresh instance, store hit", || hit(other)),
        ("embedded: get-token, fresh instance, store hit", || {
            hit(embedded)
        }),
    )
    .await;
    let (inst_other, inst_embedded) = measure_pair(
        "instantiate only: other vs embedded",
        ("other: instantiate only (pre-linked)", || inst(other)),
        ("embedded: instantiate only (pre-linked)", || inst(embedded)),
    )
    .await;
    let cold = |file: &PathBuf| {
        let (engine, file) = (&engine, file.clone());
        async move {
            // SAFETY: the file holds what `precompile_component` on this engine wrote.
            let component = unsafe { Component::deserialize_file(engine, &file) }.unwrap();
            let host = builder(server, kv.clone())
                .build_with(engine.clone(), component)
                .unwrap();
            assert_eq!(get_token(&host).await, TokenSource::Store);
        }
    };
    let (cold_other, cold_embedded) = measure_pair(
        "cold start from a mapped precompiled file: other vs embedded",
        ("other: cold start, mapped file", || cold(&files[1])),
        ("embedded: cold start, mapped file", || cold(&files[0])),
    )
    .await;
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    for (name, hit, inst, cold) in [
        ("other", &hit_other, &inst_other, &cold_other),
        ("embedded", &hit_embedded, &inst_embedded, &cold_embedded),
    ] {
        ratio(
            &format!("{name}: fresh-instance hit vs instantiate only"),
            hit,
            inst,
        );
        ratio(
            &format!("{name}: cold start from a mapped precompiled file vs instantiate only"),
            cold,
            inst,
        );
    }
}

/// `TOKEN_PROVIDER_BENCH_ONLY=hit`: fresh-instance store hits and nothing else, on an
/// engine that writes perf maps, so that a profile of the run is the hit's.
async fn profile_hit(server: &MockServer) {
    let bytes = match std::env::var_os("TOKEN_PROVIDER_BENCH_COMPONENT") {
        Some(path) => std::fs::read(&path).expect("TOKEN_PROVIDER_BENCH_COMPONENT is readable"),
        None => Flavor::Spin.embedded_bytes().to_vec(),
    };
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let component = Component::new(&engine, &bytes).unwrap();
    let host = builder(server, Arc::new(MemoryKv::new()))
        .build_with(engine, component)
        .unwrap();
    assert_eq!(get_token(&host).await, TokenSource::Fresh);
    // Minor page faults per call (the kernel's count for this process): what a fresh
    // instance's memory costs the host beyond the guest's own instructions.
    let faults = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        fields
            .get(7)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    const CALLS: u64 = 2000;
    let before = faults();
    for _ in 0..CALLS {
        host.instance().await.unwrap();
    }
    let instantiate = faults() - before;
    let before = faults();
    for _ in 0..CALLS {
        assert_eq!(get_token(&host).await, TokenSource::Store);
    }
    let hit = faults() - before;
    println!(
        "minor page faults per call: instantiate only {:.1}, fresh-instance hit {:.1}",
        instantiate as f64 / CALLS as f64,
        hit as f64 / CALLS as f64
    );
    hit_vs_instantiate("profiled engine", &host).await;
}

/// A fresh instance's store hit against instantiation alone, interleaved, on `host`
/// (its store already holds the token).
async fn hit_vs_instantiate(engine: &str, host: &TokenHost) -> (Stats, Stats) {
    measure_pair(
        &format!("fresh-instance hit vs instantiate only ({engine})"),
        ("fresh instance per call, memory store", || async {
            assert_eq!(get_token(host).await, TokenSource::Store);
        }),
        ("instantiate only (pre-linked)", || async {
            host.instance().await.unwrap();
        }),
    )
    .await
}

/// Compiling, then a cold start (a new host for a precompiled component: deserialize,
/// link, instantiate, one get-token) and its parts, against instantiation alone.
async fn cold_rows(server: &MockServer) {
    println!("\ncold start");
    let engine = new_engine().unwrap();
    let bytes = Flavor::Spin.embedded_bytes();
    let mut compile = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        Component::new(&engine, bytes).unwrap();
        compile.push(t.elapsed());
    }
    Stats::printed("compile the component (Component::new)", compile);
    let precompiled = engine.precompile_component(bytes).unwrap();
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    // Seed the shared store so the first call is a store hit.
    let seeded = builder(server, kv.clone()).build().unwrap();
    get_token(&seeded).await;
    // A host that keeps precompiled components on disk maps the file instead of copying
    // bytes (`wasmtime run --allow-precompiled` does).
    let cwasm =
        std::env::temp_dir().join(format!("token-provider-bench-{}.cwasm", std::process::id()));
    std::fs::write(&cwasm, &precompiled).unwrap();
    // One cold start: load the component, link it, instantiate it, one get-token.
    let cold_start = |from_file: bool| {
        let (engine, server, kv, cwasm, precompiled) = (&engine, server, &kv, &cwasm, &precompiled);
        async move {
            // SAFETY: both hold what `precompile_component` on this engine produced.
            let component = if from_file {
                unsafe { Component::deserialize_file(engine, cwasm) }
            } else {
                unsafe { Component::deserialize(engine, precompiled) }
            }
            .unwrap();
            let host = builder(server, kv.clone())
                .build_with(engine.clone(), component)
                .unwrap();
            assert_eq!(get_token(&host).await, TokenSource::Store);
        }
    };
    let cold = measure(
        "deserialize precompiled + link + instantiate + first get-token",
        || cold_start(false),
    )
    .await;
    let cold_file = measure(
        "the same, the precompiled file mapped (deserialize_file)",
        || cold_start(true),
    )
    .await;
    // The parts of a cold start that are not the component's own: the host's linking
    // (a `Linker` with WASI and the key-value and config imports, then
    // `instantiate_pre`), and mapping the precompiled file.
    let component = Component::new(&engine, bytes).unwrap();
    measure("link only (HostBuilder::build_with)", || async {
        drop(
            builder(server, kv.clone())
                .build_with(engine.clone(), component.clone())
                .unwrap(),
        );
    })
    .await;
    measure(
        "map the precompiled file only (deserialize_file)",
        || async {
            // SAFETY: the file holds what `precompile_component` on this engine wrote.
            drop(unsafe { Component::deserialize_file(&engine, &cwasm) }.unwrap());
        },
    )
    .await;
    let _ = std::fs::remove_file(&cwasm);
    let (e, c) = embedded(Flavor::Spin);
    let linked = builder(server, kv.clone()).build_with(e, c).unwrap();
    let inst = measure("instantiate only (pre-linked)", || async {
        linked.instance().await.unwrap();
    })
    .await;
    ratio(
        "cold start from precompiled bytes vs instantiate only",
        &cold,
        &inst,
    );
    ratio(
        "cold start from a mapped precompiled file vs instantiate only",
        &cold_file,
        &inst,
    );
}

/// The steps of a store hit in the core, timed natively.
fn native_rows(server: &MockServer) {
    use std::hint::black_box;
    use token_provider_core::{
        AccessToken, Event, Outcome, Settings, TokenRequest as CoreRequest,
        internal::{Entry, KeyNames, Secret, TokenParams, seal},
    };
    let token_url = server.url("/token");
    let origin = server.origin();
    let pairs = [
        ("token_url", token_url.as_str()),
        ("client_id", ID),
        ("client_secret", SECRET),
        ("allow_insecure_http", "true"),
        ("allowed_origins", origin.as_str()),
    ];
    let settings = Settings::from_pairs(&pairs).unwrap();
    measure_sync("read and check the settings (every key)", || {
        black_box(Settings::from_pairs(black_box(&pairs)).unwrap());
    });
    let secret = Secret::new(SECRET);
    measure_sync("derive the store's naming keys (HKDF)", || {
        black_box(KeyNames::new(black_box(&secret)));
    });
    let settings = &settings.provider;
    let params = TokenParams::resolve(&CoreRequest::default(), &settings.client).unwrap();
    measure_sync("resolve the request, cache key and its name (HMAC)", || {
        let p = TokenParams::resolve(black_box(&CoreRequest::default()), &settings.client).unwrap();
        black_box(settings.cache_key(&p).store_key());
    });
    let key = settings.cache_key(&params);
    let entry = Entry {
        access_token: AccessToken::new("a-token-of-typical-length-0123456789abcdef"),
        scopes: vec![],
        issued_at_ms: 1,
        expires_at_ms: u64::MAX / 2,
        dpop: None,
    };
    let sealed = seal::seal(&entry, &settings.cache.secret, &key, [7; 24]);
    measure_sync(
        "open the sealed entry (XChaCha20-Poly1305 + JSON; key derived once)",
        || {
            black_box(seal::open(black_box(&sealed), &settings.cache.secret, &key).unwrap());
        },
    );
    measure_sync("one audit line (JSON)", || {
        let mut ev = Event::new(Outcome::CacheHit, &settings.audit, &params.scopes);
        ev.cache = Some("store");
        ev.fingerprint = Some(entry.access_token.fingerprint());
        black_box(ev.to_line());
    });
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

    // Comparing another build of the component instead (a size or speed trade-off under
    // study): only that, side by side with the embedded one.
    if let Some(path) = std::env::var_os("TOKEN_PROVIDER_BENCH_OTHER") {
        let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
        compare_with(&server, &kv, &api_request(&server), PathBuf::from(path)).await;
        return;
    }

    // `TOKEN_PROVIDER_BENCH_ONLY=hit`: only a fresh instance's store hit, for a profiler
    // (`perf record`): on an on-demand engine writing perf maps (`/tmp/perf-PID.map`),
    // of the component in `TOKEN_PROVIDER_BENCH_COMPONENT` (a build that keeps its
    // function names) or the embedded one.
    if std::env::var("TOKEN_PROVIDER_BENCH_ONLY").as_deref() == Ok("hit") {
        profile_hit(&server).await;
        return;
    }
    // `TOKEN_PROVIDER_BENCH_ONLY=cold`: only compiling and the cold-start rows (both
    // cold starts, linking alone, mapping alone), for a profiler or a quick look.
    if std::env::var("TOKEN_PROVIDER_BENCH_ONLY").as_deref() == Ok("cold") {
        cold_rows(&server).await;
        return;
    }

    // `TOKEN_PROVIDER_BENCH_ONLY=interceptor`: only the interceptor rows (a quick run
    // while working on the interceptor).
    if std::env::var("TOKEN_PROVIDER_BENCH_ONLY").as_deref() == Ok("interceptor") {
        let host = builder(&server, Arc::new(MemoryKv::new())).build().unwrap();
        let token = host
            .instance()
            .await
            .unwrap()
            .get_token(&TokenRequest::default_request())
            .await
            .unwrap()
            .unwrap()
            .token;
        interceptor_rows(&server, &host, &format!("Bearer {token}")).await;
        spin_scenarios(&example_component("p3-app", "p3_app.wasm")).await;
        return;
    }

    // `TOKEN_PROVIDER_BENCH_ONLY=signing`: only the client-assertion rows.
    if std::env::var("TOKEN_PROVIDER_BENCH_ONLY").as_deref() == Ok("signing") {
        signing_rows(&server).await;
        return;
    }

    // `TOKEN_PROVIDER_BENCH_ONLY=dpop`: only the DPoP rows.
    if std::env::var("TOKEN_PROVIDER_BENCH_ONLY").as_deref() == Ok("dpop") {
        dpop_rows().await;
        return;
    }

    // --- get-token, cache hit ---------------------------------------------------------
    println!("\nget-token, cache hit");
    let memory_kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let memory = builder(&server, memory_kv.clone()).build().unwrap();
    assert_eq!(get_token(&memory).await, TokenSource::Fresh);
    let (fresh_memory, _) = hit_vs_instantiate("on-demand engine", &memory).await;
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
        Stats::printed("reused instance (its memory cache)", samples)
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
    let plain_bytes = plain_http_component();
    let plain_component = Component::new(memory.engine(), &plain_bytes).unwrap();
    let authority = server.addr().to_string();
    let bearer = format!("Bearer {token}");
    let (wrapped, _) = measure_pair(
        "authorized-client.send vs plain request",
        (
            "authorized-client.send, fresh instance, cached token",
            || send_ok(&memory, &request),
        ),
        (
            "plain wasi:http GET, fresh instance (examples/plain-http)",
            || plain_get(&memory, &plain_component, &authority, &bearer),
        ),
    )
    .await;

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

    // --- the interceptor -----------------------------------------------------------------
    interceptor_rows(&server, &memory, &bearer).await;
    dpop_rows().await;
    spin_scenarios(&example_component("p3-app", "p3_app.wasm")).await;

    // --- where the time goes -------------------------------------------------------------
    println!("\nwhere the time goes (import calls timed by the host)");
    let log_path =
        std::env::temp_dir().join(format!("token-provider-bench-{}.log", std::process::id()));
    let phases = Phases::new();
    let phased = builder(&server, memory_kv.clone())
        .log(LogSink::File(log_path.clone()))
        .phases(phases.clone())
        .build()
        .unwrap();
    breakdown(
        "get-token, fresh instance, store hit (memory store, audit to a file)",
        &phased,
        &phases,
        2_000,
        |mut i| async move {
            let t = i.get_token(&TokenRequest::default_request()).await;
            assert_eq!(t.unwrap().unwrap().source, TokenSource::Store);
        },
    )
    .await;
    breakdown(
        "send, fresh instance, cached token (memory store, audit to a file)",
        &phased,
        &phases,
        2_000,
        |i| send_on(i, &request),
    )
    .await;

    // --- an emulated Spin request ---------------------------------------------------------
    println!(
        "\nemulated Spin request: an engine with pooled instance slots (as Spin's), a fresh instance per\nrequest, a store whose open takes 2 us and every other call 40 us (SQLite-like; or real Redis on\nloopback), the audit log appended to a file; the baseline on the same engine"
    );
    let pooled = new_pooled_engine().unwrap();
    let provider_pooled = Component::new(&pooled, Flavor::Spin.embedded_bytes()).unwrap();
    let plain_pooled = Component::new(&pooled, &plain_bytes).unwrap();
    // Opening a store in Spin checks the label against the component's allowed stores
    // (no database call); a get is a query on a blocking thread.
    let sqlite_like: Arc<dyn KvBackend> = Arc::new(LatencyKv::new(
        memory_kv.clone(),
        Duration::from_micros(2),
        Duration::from_micros(40),
    ));
    let spin_phases = Phases::new();
    let spin_like = builder(&server, sqlite_like)
        .log(LogSink::File(log_path.clone()))
        .phases(spin_phases.clone())
        .build_with(pooled.clone(), provider_pooled.clone())
        .unwrap();
    let (_, spin_plain) = measure_pair(
        "send (emulated Spin, SQLite-like) vs plain request (pooled)",
        ("send, emulated Spin request (SQLite-like store)", || {
            send_ok(&spin_like, &request)
        }),
        ("plain wasi:http GET, pooled engine", || {
            plain_get(&spin_like, &plain_pooled, &authority, &bearer)
        }),
    )
    .await;
    measure_pair(
        "get-token hit vs instantiate only (pooled, SQLite-like)",
        (
            "get-token, emulated Spin request (SQLite-like store)",
            || async {
                assert_eq!(get_token(&spin_like).await, TokenSource::Store);
            },
        ),
        ("instantiate only, pooled engine", || async {
            spin_like.instance().await.unwrap();
        }),
    )
    .await;
    if let Ok(redis) = &redis {
        let kv = RedisKv::connect(&redis.url()).await.unwrap();
        let host = builder(&server, Arc::new(kv))
            .log(LogSink::File(log_path.clone()))
            .build_with(pooled.clone(), provider_pooled.clone())
            .unwrap();
        // The Redis rows above stored the token already, or this fetches it.
        get_token(&host).await;
        let redis_send = measure("send, emulated Spin request (Redis store)", || {
            send_ok(&host, &request)
        })
        .await;
        ratio(
            "send (emulated Spin, Redis) vs plain request (pooled)",
            &redis_send,
            &spin_plain,
        );
    }
    breakdown(
        "send, emulated Spin request (SQLite-like store)",
        &spin_like,
        &spin_phases,
        1_000,
        |i| send_on(i, &request),
    )
    .await;
    let _ = std::fs::remove_file(&log_path);

    // --- the component's own work, natively ---------------------------------------------
    println!(
        "\nthe component's own work on a store hit, natively (the core's code built for this machine;\nin the component it runs as wasm, slower by a factor, in the same proportions)"
    );
    native_rows(&server);

    cold_rows(&server).await;

    signing_rows(&server).await;

    // --- size --------------------------------------------------------------------------
    println!(
        "\ncomponent size (profile `component`: opt-level z with SHA-256 and the cipher at 3, LTO, strip,\npanic=abort; then wasm-opt -Oz)"
    );
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
        "token_interceptor.wasm (Spin flavor)",
        EMBEDDED_INTERCEPTOR.len()
    );
    println!(
        "{:<58} {:>10} bytes",
        "plain_http.wasm (baseline, no provider)",
        plain_bytes.len()
    );
    drop(redis);
}

const RSA_2048: &str = include_str!("../../tests/fixtures/rsa-2048.pem");

/// Client assertions: each method's token request made by the component (a forced
/// fetch on a warm instance, against the in-process server, which accepts assertions
/// without verifying them), side by side with `client_secret_basic`: the difference
/// is what signing costs inside the component. Then the same signatures natively.
async fn signing_rows(server: &MockServer) {
    println!("
client assertions: a forced token fetch per method, warm instance (the difference to client_secret_basic is the signing)");
    server.set_accept_assertions(true);
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let methods: [(&str, &[(&str, &str)]); 5] = [
        ("client_secret_basic", &[]),
        (
            "client_secret_jwt (HS256)",
            &[("auth_method", "client_secret_jwt")],
        ),
        (
            "private_key_jwt ES256",
            &[
                ("auth_method", "private_key_jwt"),
                ("client_private_key", &p256),
            ],
        ),
        (
            "private_key_jwt RS256 (2048-bit key)",
            &[
                ("auth_method", "private_key_jwt"),
                ("client_private_key", RSA_2048),
            ],
        ),
        (
            "private_key_jwt PS256 (2048-bit key)",
            &[
                ("auth_method", "private_key_jwt"),
                ("client_private_key", RSA_2048),
                ("client_assertion_alg", "PS256"),
            ],
        ),
    ];
    let forced = TokenRequest {
        force_refresh: true,
        ..TokenRequest::default_request()
    };
    let mut rows = Vec::new();
    for (name, extra) in methods {
        let mut b = builder(server, Arc::new(MemoryKv::new())).config("kv_store", "");
        for (k, v) in extra {
            b = b.config(*k, *v);
        }
        let host = b.build().unwrap();
        let mut instance = host.instance().await.unwrap();
        // `measure`'s loop written out: the warm instance is borrowed mutably.
        let warm = Instant::now();
        while warm.elapsed() < WARMUP {
            instance.get_token(&forced).await.unwrap().unwrap();
        }
        let mut samples = Vec::new();
        let run = Instant::now();
        while run.elapsed() < RUN && samples.len() < MAX_SAMPLES {
            let t = Instant::now();
            instance.get_token(&forced).await.unwrap().unwrap();
            samples.push(t.elapsed());
        }
        rows.push(Stats::printed(&format!("forced fetch, {name}"), samples));
    }
    for row in &rows[1..] {
        ratio(
            &format!("{} vs client_secret_basic", &row.name[14..]),
            row,
            &rows[0],
        );
        println!(
            "         signing inside the component: about {:.1} us (median difference)",
            row.median_us() - rows[0].median_us()
        );
    }
    server.set_accept_assertions(false);

    println!(
        "
client assertions signed natively (the core's code on this machine)"
    );
    use token_provider_core::internal::{
        Alg, Claims, PrivateKey, client_auth::KeyIds, client_auth::client_secret_jwt,
        client_auth::private_key_jwt,
    };
    let claims = Claims {
        client_id: ID,
        audience: "https://auth.example.com/token",
        now_secs: 1_800_000_000,
        lifetime_secs: 60,
        jti: [7; 16],
        typ: "JWT",
    };
    let random = |out: &mut [u8]| out.fill(0x5a);
    measure_sync("HS256 (client_secret_jwt)", || {
        std::hint::black_box(client_secret_jwt(&claims, SECRET.as_bytes()));
    });
    for (name, pem, alg) in [
        ("ES256", p256.as_str(), None),
        ("RS256 (2048-bit key)", RSA_2048, None),
        ("PS256 (2048-bit key)", RSA_2048, Some(Alg::Ps256)),
    ] {
        let key = PrivateKey::from_pem(pem, alg).unwrap();
        measure_sync(name, || {
            std::hint::black_box(private_key_jwt(&claims, &key, KeyIds::default(), &random));
        });
    }
}
