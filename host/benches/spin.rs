//! Spin 4.1's request path around the gateway app, emulated, and timed span by span as
//! Spin's own tracing spans it. Run: `cargo bench -p token-provider-host --bench spin`
//! (without `--bench` on the command line, as `cargo test` runs it, it makes one request
//! per app and checks the answers and the spans: the emulation's own test).
//!
//! What Spin does for a WASI 0.2 HTTP component with a dependency, and this emulation
//! with it (docs/performance.md has the table and the Spin source it was read from):
//! - **At load**: the dependency (the provider) gets a deny adapter plugged into what it
//!   does not inherit (`wasi:cli/environment`; here examples/deny-environment), is
//!   plugged into the gateway's import, and the whole is compiled and pre-instantiated
//!   once, on an engine with Spin's knobs (pooling allocator, epoch interruption with a
//!   10 ms ticker).
//! - **Per request**: a fresh store and instance (Spin reuses instances only for WASIp3
//!   handlers); a new WASI context with two log files opened for its stdout and stderr;
//!   a call hook taking the time on every host/wasm transition (Spin's
//!   `cpu-time-metrics`); the request given scheme `http` and Spin's seven `spin-*`
//!   headers; the handler run on a task of its own.
//! - **Variables**: `wasi:config` `get`/`get-all` and `fermyon:spin/variables` `get`
//!   resolve the component's templates from `spin.toml` on every call, each variable
//!   through the providers in Spin's order (the `--variable` values, then
//!   `SPIN_VARIABLE_*` read on a blocking section, then the manifest default), with no
//!   cache; the first outbound request of an instance resolves every app variable (the
//!   allowed-hosts templates).
//! - **Key-value**: Spin's default SQLite store (one connection behind a mutex, a
//!   blocking section and a cached statement per call), or Redis with a `PING` on every
//!   `open`.
//! - **Outbound HTTP**: the request checked against the allowed hosts, `Host` removed,
//!   sent on a task of its own through one pooled client per app.
//!
//! The spans timed per request (medians over interleaved rounds), each ending where
//! Spin's does: the whole request and the component's execution (instantiation and the
//! handler) at the response's head; the outbound GET at its response's head; `get-all`,
//! the store, the app's variable reads; everything else in the execution. Besides them:
//! the guest's own time (the call hook, whole handler) and what comes after the head
//! (the body, the handler's return, the instance's drop: outside Spin's spans, but on
//! its CPU).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use token_provider_host::Flavor;
use token_provider_host::bindings::wasi::config0_2_0_draft_2024_09_27::store as config_store;
use token_provider_host::keyvalue::{WasiKeyValue, WasiKeyValueCtx};
use token_provider_host::kv::{KeyPage, KvBackend, KvResult, RedisKv};
use token_provider_host::testkit::redis_server::LocalRedis;
use token_provider_host::testkit::testserver::MockServer;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{CallHook, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

mod spin_variables {
    wasmtime::component::bindgen!({
        inline: "
            package fermyon:spin@2.0.0;
            interface variables {
                variant error { invalid-name(string), undefined(string), provider(string), other(string) }
                get: func(name: string) -> result<string, error>;
            }
            world vars { import variables; }
        ",
        imports: { default: async },
    });
}
use spin_variables::fermyon::spin::variables as spin_vars;

mod common;

const ID: &str = "bench-client";
const SECRET: &str = "bench-secret";
const ROUNDS: usize = 1_500;
const WARMUP_ROUNDS: usize = 150;

// --- spans ------------------------------------------------------------------------------

/// The spans of one request, in nanoseconds (added to from the host calls and tasks).
#[derive(Default)]
struct Spans {
    outbound: AtomicU64,
    get_all: AtomicU64,
    kv: AtomicU64,
    vars: AtomicU64,
}

#[derive(Clone, Copy)]
enum Span {
    Outbound,
    GetAll,
    Kv,
    Vars,
}

impl Spans {
    fn cell(&self, span: Span) -> &AtomicU64 {
        match span {
            Span::Outbound => &self.outbound,
            Span::GetAll => &self.get_all,
            Span::Kv => &self.kv,
            Span::Vars => &self.vars,
        }
    }
    fn add(&self, span: Span, d: Duration) {
        self.cell(span)
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    fn get(&self, span: Span) -> Duration {
        Duration::from_nanos(self.cell(span).load(Ordering::Relaxed))
    }
}

/// One request's timings.
#[derive(Clone, Copy, Default)]
struct Sample {
    whole: Duration,
    execution: Duration,
    outbound: Duration,
    get_all: Duration,
    kv: Duration,
    vars: Duration,
    guest: Duration,
    /// From the response's head to the instance's drop (outside Spin's spans).
    after: Duration,
}

impl Sample {
    fn rest(&self) -> Duration {
        self.execution
            .saturating_sub(self.outbound + self.get_all + self.kv + self.vars)
    }
}

// --- variables --------------------------------------------------------------------------

/// A parsed `{{ name }}` template.
#[derive(Clone, Debug)]
enum Part {
    Lit(String),
    Var(String),
}

fn parse_template(t: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Lit(rest[..start].to_string()));
        }
        let end = rest[start..].find("}}").expect("a closed template") + start;
        parts.push(Part::Var(rest[start + 2..end].trim().to_string()));
        rest = &rest[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    parts
}

/// The app's variables as Spin resolves them: `spin.toml`'s `[variables]` (defaults),
/// the gateway's `[component.gateway.variables]` templates, its allowed-hosts templates,
/// and the values given on the command line (`spin up --variable`).
struct Resolver {
    app: Vec<(String, Option<String>)>,
    component: Vec<(String, Vec<Part>)>,
    allowed_hosts: Vec<Vec<Part>>,
    cli: HashMap<String, String>,
}

impl Resolver {
    fn from_manifest(manifest: &str, component: &str, cli: HashMap<String, String>) -> Self {
        let m: toml::Table = toml::from_str(manifest).expect("a TOML manifest");
        let app = m["variables"]
            .as_table()
            .expect("[variables]")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.get("default").map(|d| d.as_str().unwrap().to_string()),
                )
            })
            .collect();
        let c = &m["component"][component];
        let component = c["variables"]
            .as_table()
            .expect("the component's variables")
            .iter()
            .map(|(k, v)| (k.clone(), parse_template(v.as_str().unwrap())))
            .collect();
        let allowed_hosts = c["allowed_outbound_hosts"]
            .as_array()
            .expect("allowed_outbound_hosts")
            .iter()
            .map(|v| parse_template(v.as_str().unwrap()))
            .collect();
        Resolver {
            app,
            component,
            allowed_hosts,
            cli,
        }
    }

    /// One app variable through Spin's providers: the command line's (a map), then the
    /// environment's (`SPIN_VARIABLE_NAME`, on a blocking section as Spin's), then the
    /// manifest's default.
    fn variable(&self, name: &str) -> Result<String, String> {
        if let Some(v) = self.cli.get(name) {
            return Ok(v.clone());
        }
        let env_key = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        if let Ok(v) = tokio::task::block_in_place(|| std::env::var(&env_key)) {
            return Ok(v);
        }
        match self.app.iter().find(|(n, _)| n == name) {
            Some((_, Some(default))) => Ok(default.clone()),
            Some((_, None)) => Err(format!("no value for required variable {name}")),
            None => Err(format!("no variable {name}")),
        }
    }

    fn render(&self, parts: &[Part]) -> Result<String, String> {
        let mut out = String::new();
        for p in parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => out.push_str(&self.variable(name)?),
            }
        }
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<String>, String> {
        match self.component.iter().find(|(k, _)| k == key) {
            Some((_, t)) => self.render(t).map(Some),
            None => Ok(None),
        }
    }

    fn get_all(&self) -> Result<Vec<(String, String)>, String> {
        self.component
            .iter()
            .map(|(k, t)| Ok((k.clone(), self.render(t)?)))
            .collect()
    }

    /// What the first outbound request of an instance does: resolve every app variable,
    /// then the allowed-hosts templates.
    fn allowed_origins(&self) -> Vec<String> {
        for (name, _) in &self.app {
            let _ = self.variable(name);
        }
        self.allowed_hosts
            .iter()
            .filter_map(|t| self.render(t).ok())
            .collect()
    }
}

// --- key-value --------------------------------------------------------------------------

/// Spin's default key-value store: SQLite, one connection behind a mutex, each call on a
/// blocking section with a cached statement (no PRAGMAs: writes are synchronous).
struct SqliteKv {
    conn: Mutex<rusqlite::Connection>,
}

impl SqliteKv {
    fn open(path: &Path) -> Self {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key))",
            [],
        )
        .unwrap();
        SqliteKv {
            conn: Mutex::new(conn),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>) -> KvResult<R> {
        tokio::task::block_in_place(|| f(&self.conn.lock().unwrap())).map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl KvBackend for SqliteKv {
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(|c| {
            let mut st =
                c.prepare_cached("SELECT value FROM spin_key_value WHERE store=$1 AND key=$2")?;
            let mut rows = st.query_map([label, key], |r| r.get::<_, Vec<u8>>(0))?;
            rows.next().transpose()
        })
    }
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT(store, key) DO UPDATE SET value=$3",
            )?
            .execute(rusqlite::params![label, key, value])
            .map(drop)
        })
    }
    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store=$1 AND key=$2")?
                .execute([label, key])
                .map(drop)
        })
    }
    async fn list_keys(&self, label: &str, _: Option<u64>, _: usize) -> KvResult<KeyPage> {
        let keys = self.with(|c| {
            let mut st = c.prepare_cached("SELECT key FROM spin_key_value WHERE store=$1")?;
            let keys = st.query_map([label], |r| r.get::<_, String>(0))?;
            keys.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(KeyPage { keys, cursor: None })
    }
    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let old: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM spin_key_value WHERE store=$1 AND key=$2")?
                .query_map([label, key], |r| r.get(0))?
                .next()
                .transpose()?;
            let old = old
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
            let new = old + delta;
            tx.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT(store, key) DO UPDATE SET value=$3",
            )?
            .execute(rusqlite::params![label, key, new.to_string().as_bytes()])?;
            tx.commit()?;
            Ok(new)
        })
    }
}

/// Spin's Redis store: one shared connection, and a `PING` on every `open`.
struct PingingRedis(RedisKv, redis::aio::ConnectionManager);

impl PingingRedis {
    async fn connect(url: &str) -> Self {
        let kv = RedisKv::connect(url).await.unwrap();
        let client = redis::Client::open(url).unwrap();
        PingingRedis(kv, client.get_connection_manager().await.unwrap())
    }
}

#[async_trait::async_trait]
impl KvBackend for PingingRedis {
    async fn open(&self, label: &str) -> KvResult<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.1.clone())
            .await
            .map_err(|e| e.to_string())?;
        self.0.open(label).await
    }
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.0.get(label, key).await
    }
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.0.set(label, key, value).await
    }
    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        self.0.delete(label, key).await
    }
    async fn list_keys(&self, label: &str, c: Option<u64>, page: usize) -> KvResult<KeyPage> {
        self.0.list_keys(label, c, page).await
    }
    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        self.0.increment(label, key, delta).await
    }
}

/// A request's view of the app's store: each call's time goes to its `kv` span.
struct TimedKv {
    inner: Arc<dyn KvBackend>,
    spans: Arc<Spans>,
}

impl TimedKv {
    async fn timed<R>(&self, f: impl Future<Output = R>) -> R {
        let started = Instant::now();
        let r = f.await;
        self.spans.add(Span::Kv, started.elapsed());
        r
    }
}

#[async_trait::async_trait]
impl KvBackend for TimedKv {
    async fn open(&self, label: &str) -> KvResult<()> {
        self.timed(self.inner.open(label)).await
    }
    async fn get(&self, label: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.timed(self.inner.get(label, key)).await
    }
    async fn set(&self, label: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.timed(self.inner.set(label, key, value)).await
    }
    async fn delete(&self, label: &str, key: &str) -> KvResult<()> {
        self.timed(self.inner.delete(label, key)).await
    }
    async fn list_keys(&self, label: &str, c: Option<u64>, page: usize) -> KvResult<KeyPage> {
        self.timed(self.inner.list_keys(label, c, page)).await
    }
    async fn increment(&self, label: &str, key: &str, delta: i64) -> KvResult<i64> {
        self.timed(self.inner.increment(label, key, delta)).await
    }
}

// --- outbound HTTP ----------------------------------------------------------------------

type HttpClient = Client<HttpConnector, WasiBody>;
type BoxFuture<T> = Box<dyn Future<Output = T> + Send>;

/// Spin's outbound HTTP for one instance: on its first request every app variable is
/// resolved for the allowed-hosts check; `Host` is removed; the request is sent on a task
/// of its own through the app's pooled client; its span ends at the response's head.
struct Outbound {
    client: HttpClient,
    resolver: Arc<Resolver>,
    allowed: Option<Vec<String>>,
    spans: Arc<Spans>,
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: BoxFuture<Result<(), HttpError>>,
    ) -> BoxFuture<
        wasmtime_wasi_http::Result<(http::Response<WasiBody>, BoxFuture<Result<(), HttpError>>)>,
    > {
        drop(fut);
        let started = Instant::now();
        let resolver = &self.resolver;
        let allowed = self
            .allowed
            .get_or_insert_with(|| resolver.allowed_origins());
        let uri = request.uri();
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or("")
        );
        if !allowed.contains(&origin) {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        request.headers_mut().remove(http::header::HOST);
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(Duration::from_secs(600));
        let client = self.client.clone();
        let spans = self.spans.clone();
        let task =
            tokio::spawn(
                async move { tokio::time::timeout(first_byte, client.request(request)).await },
            );
        Box::new(async move {
            let response = match task.await {
                Ok(Ok(Ok(response))) => response,
                Ok(Ok(Err(e))) => return Err(HttpError::InternalError(Some(e.to_string()))),
                Ok(Err(_)) => return Err(HttpError::ConnectionReadTimeout),
                Err(e) => return Err(HttpError::InternalError(Some(e.to_string()))),
            };
            spans.add(Span::Outbound, started.elapsed());
            let response = response.map(|body| {
                body.map_err(|e| HttpError::InternalError(Some(e.to_string())))
                    .boxed_unsync()
            });
            Ok((response, Box::new(async { Ok(()) }) as BoxFuture<_>))
        })
    }
}

// --- the store's state ------------------------------------------------------------------

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outbound,
    table: ResourceTable,
    kv: WasiKeyValueCtx,
    resolver: Arc<Resolver>,
    spans: Arc<Spans>,
    /// Spin's `cpu-time-metrics`: the guest's time, from the call hook.
    guest: Duration,
    entered: Option<Instant>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The variables' host functions (`wasi:config/store` for the provider,
/// `fermyon:spin/variables` for the apps), on the app's resolver.
struct Vars<'a> {
    resolver: &'a Resolver,
    spans: &'a Spans,
}

struct HasVars;

impl HasData for HasVars {
    type Data<'a> = Vars<'a>;
}

fn vars(s: &mut State) -> Vars<'_> {
    Vars {
        resolver: &s.resolver,
        spans: &s.spans,
    }
}

impl config_store::Host for Vars<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_store::Error>> {
        let started = Instant::now();
        let r = self
            .resolver
            .get(&key)
            .map_err(config_store::Error::Upstream);
        self.spans.add(Span::Vars, started.elapsed());
        Ok(r)
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, config_store::Error>> {
        let started = Instant::now();
        let r = self
            .resolver
            .get_all()
            .map_err(config_store::Error::Upstream);
        self.spans.add(Span::GetAll, started.elapsed());
        Ok(r)
    }
}

impl spin_vars::Host for Vars<'_> {
    async fn get(&mut self, name: String) -> Result<String, spin_vars::Error> {
        let started = Instant::now();
        let r = match self.resolver.get(&name) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(spin_vars::Error::Undefined(format!("no variable {name}"))),
            Err(e) => Err(spin_vars::Error::Provider(e)),
        };
        self.spans.add(Span::Vars, started.elapsed());
        r
    }
}

fn linker(engine: &Engine) -> Linker<State> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    token_provider_host::keyvalue::add_to_linker(&mut linker, |s: &mut State| {
        WasiKeyValue::new(&s.kv, &mut s.table)
    })
    .unwrap();
    config_store::add_to_linker::<State, HasVars>(&mut linker, vars).unwrap();
    spin_vars::add_to_linker::<State, HasVars>(&mut linker, vars).unwrap();
    linker
}

// --- the engine and the app -------------------------------------------------------------

/// An engine with Spin 4.1's settings (crates/core/src/lib.rs): pooled instance slots
/// (Spin's per-instance factors, for 100 instances instead of 1,000), epoch interruption
/// with a 10 ms ticker.
fn spin_engine() -> Engine {
    const MB: usize = 1 << 20;
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true);
    // `perf record` can name the guest's functions (profiling, not timing).
    if std::env::var_os("TOKEN_PROVIDER_BENCH_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let max_instances = 100;
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        .total_memories(max_instances)
        .total_tables(2 * max_instances)
        .total_stacks(max_instances)
        .total_core_instances(4 * max_instances)
        .table_elements(100_000)
        .max_component_instance_size(10 * MB)
        .max_core_instance_size(10 * MB)
        .max_core_instances_per_component(200)
        .max_tables_per_component(64)
        .max_memories_per_component(32)
        .max_tables_per_module(2)
        .max_memories_per_module(2)
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(2 * MB)
        .table_keep_resident(MB / 2);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).unwrap();
    let ticker = engine.weak();
    std::thread::spawn(move || {
        while let Some(engine) = ticker.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    engine
}

/// `plug` plugged into `socket`'s imports (what `wac plug` and Spin's composition do).
fn plug(socket: &[u8], plug: &[u8]) -> Vec<u8> {
    use wac_graph::{CompositionGraph, EncodeOptions, types::Package};
    let mut graph = CompositionGraph::new();
    let socket =
        Package::from_bytes("app:socket", None, socket.to_vec(), graph.types_mut()).unwrap();
    let socket = graph.register_package(socket).unwrap();
    let plug = Package::from_bytes("app:plug", None, plug.to_vec(), graph.types_mut()).unwrap();
    let plug = graph.register_package(plug).unwrap();
    wac_graph::plug(&mut graph, vec![plug], socket).unwrap();
    graph.encode(EncodeOptions::default()).unwrap()
}

/// One app as Spin loads it: composed, compiled and pre-instantiated once, with its
/// variables, its store and its outbound client.
struct App {
    pre: ProxyPre<State>,
    resolver: Arc<Resolver>,
    kv: Arc<dyn KvBackend>,
    client: HttpClient,
    logs: PathBuf,
}

impl App {
    fn load(
        engine: &Engine,
        wasm: &[u8],
        resolver: Resolver,
        kv: Arc<dyn KvBackend>,
        logs: &Path,
    ) -> App {
        let component = Component::new(engine, wasm).unwrap();
        let pre = linker(engine).instantiate_pre(&component).unwrap();
        App {
            pre: ProxyPre::new(pre).unwrap(),
            resolver: Arc::new(resolver),
            kv,
            client: Client::builder(TokioExecutor::new()).build_http(),
            logs: logs.to_path_buf(),
        }
    }

    /// A fresh store with Spin's per-instance state (its stdio log files opened).
    fn store(&self, spans: &Arc<Spans>) -> Store<State> {
        let log = |stream: &str| {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.logs.join(format!("gateway_{stream}.txt")))
                .unwrap();
            wasmtime_wasi::cli::OutputFile::new(file)
        };
        let wasi = WasiCtx::builder()
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .build();
        let state = State {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: Outbound {
                client: self.client.clone(),
                resolver: self.resolver.clone(),
                allowed: None,
                spans: spans.clone(),
            },
            table: ResourceTable::new(),
            kv: WasiKeyValueCtx::new(Arc::new(TimedKv {
                inner: self.kv.clone(),
                spans: spans.clone(),
            })),
            resolver: self.resolver.clone(),
            spans: spans.clone(),
            guest: Duration::ZERO,
            entered: None,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.set_epoch_deadline(u64::MAX / 2);
        store.call_hook(|mut cx, hook| {
            let s = cx.data_mut();
            match hook {
                CallHook::CallingWasm | CallHook::ReturningFromHost => {
                    s.entered = Some(Instant::now())
                }
                CallHook::ReturningFromWasm | CallHook::CallingHost => {
                    if let Some(t) = s.entered.take() {
                        s.guest += t.elapsed();
                    }
                }
            }
            Ok(())
        });
        store
    }

    /// Only the instantiation of a request's instance (its store set up as for a request).
    async fn instantiate_only(&self) -> Duration {
        let started = Instant::now();
        let mut store = self.store(&Arc::new(Spans::default()));
        self.pre.instantiate_async(&mut store).await.unwrap();
        started.elapsed()
    }

    /// One request as Spin's HTTP trigger makes it: `GET {path}`, its answer's status and
    /// body, and the spans.
    async fn request(self: &Arc<Self>, path: &str) -> (u16, Bytes, Sample) {
        let started = Instant::now();
        let req = spin_request(path);
        let spans = Arc::new(Spans::default());
        let app = self.clone();
        let task_spans = spans.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = Instant::now();
        let handler = tokio::spawn(async move {
            let mut store = app.store(&task_spans);
            let proxy = app.pre.instantiate_async(&mut store).await.unwrap();
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, req)
                .unwrap();
            let out = store.data_mut().http().new_response_outparam(tx).unwrap();
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
                .unwrap();
            store.data().guest
        });
        // Spin's request and execution spans end with the response's head; the body,
        // the handler's return and the instance's drop come after.
        let response = rx.await.unwrap().unwrap();
        let head = Instant::now();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let guest = handler.await.unwrap();
        let sample = Sample {
            whole: head - started,
            execution: head - spawned,
            after: head.elapsed(),
            outbound: spans.get(Span::Outbound),
            get_all: spans.get(Span::GetAll),
            kv: spans.get(Span::Kv),
            vars: spans.get(Span::Vars),
            guest,
        };
        (status, body, sample)
    }
}

/// `GET {path}` as Spin's HTTP trigger hands it to a component: scheme `http`, the
/// client's headers and Spin's seven `spin-*` ones.
fn spin_request(path: &str) -> hyper::Request<Empty<Bytes>> {
    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(format!("http://127.0.0.1:3000{path}"))
        .header("host", "127.0.0.1:3000")
        .header("accept", "application/json");
    for (name, value) in [
        ("spin-full-url", format!("http://127.0.0.1:3000{path}")),
        (
            "spin-path-info",
            path.trim_start_matches("/api").to_string(),
        ),
        ("spin-matched-route", "/api/...".to_string()),
        ("spin-raw-component-route", "/api/...".to_string()),
        ("spin-component-route", "/api".to_string()),
        ("spin-base-path", "/".to_string()),
        ("spin-client-addr", "127.0.0.1:50000".to_string()),
    ] {
        req = req.header(name, value);
    }
    req.body(Empty::<Bytes>::new()).unwrap()
}

// --- the run ----------------------------------------------------------------------------

/// The static-token app's manifest: the same route and variables mechanism, two
/// variables given on the command line.
const STATIC_MANIFEST: &str = r#"
[variables]
api_origin = { required = true }
api_token = { required = true, secret = true }

[component.gateway]
allowed_outbound_hosts = ["{{ api_origin }}"]

[component.gateway.variables]
api_url = "{{ api_origin }}"
api_token = "{{ api_token }}"
"#;

/// A token from the mock server, for the static-token app.
async fn static_token(server: &MockServer) -> String {
    use base64::Engine as _;
    let client: Client<HttpConnector, http_body_util::Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ID}:{SECRET}"));
    let request = http::Request::post(server.url("/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["access_token"].as_str().unwrap().to_string()
}

/// The variables a user sets for the provider app (`spin up --variable`), and
/// `allow_insecure_http` mapped into the component if the manifest does not map it (the
/// API and the token endpoint are plain HTTP on loopback here).
fn provider_resolver(manifest: &str, server: &MockServer) -> Resolver {
    let cli = [
        ("token_url", server.url("/token")),
        ("token_origin", server.origin()),
        ("api_origin", server.origin()),
        ("client_id", ID.to_string()),
        ("client_secret", SECRET.to_string()),
        ("allow_insecure_http", "true".to_string()),
    ];
    let mut r = Resolver::from_manifest(
        manifest,
        "gateway",
        cli.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    );
    if !r.component.iter().any(|(k, _)| k == "allow_insecure_http") {
        r.component
            .push(("allow_insecure_http".into(), parse_template("true")));
    }
    r
}

/// The rows: one per span, one column per app (medians, µs).
fn print_table(apps: &[(String, Vec<Sample>)]) {
    let median = |samples: &[Sample], f: &dyn Fn(&Sample) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    type Row<'a> = (&'a str, &'a dyn Fn(&Sample) -> Duration);
    let rows: [Row; 9] = [
        ("whole request", &|s| s.whole),
        ("component execution", &|s| s.execution),
        ("outbound GET to the API (to its head)", &|s| s.outbound),
        ("wasi:config get-all", &|s| s.get_all),
        ("key-value open + get", &|s| s.kv),
        ("the app's own variable reads", &|s| s.vars),
        ("everything else in the execution", &|s| s.rest()),
        ("guest time, whole handler (call hook)", &|s| s.guest),
        ("after the head: body, return, drop", &|s| s.after),
    ];
    print!("{:<40}", "span (median, us)");
    for (name, _) in apps {
        print!(" {name:>22}");
    }
    println!();
    for (row, f) in rows {
        print!("{row:<40}");
        for (_, samples) in apps {
            print!(" {:>22.1}", median(samples, f));
        }
        println!();
    }
    let base = median(&apps[0].1, &|s| s.whole);
    for (name, samples) in &apps[1..] {
        println!(
            "  ratio  whole request, {name} / {}: {:.2}x",
            apps[0].0,
            median(samples, &|s| s.whole) / base
        );
    }
}

/// `rounds` rounds, each one request per app in an order that turns every round (so
/// that no app always follows the same one).
async fn rounds(apps: &[(String, Arc<App>)], rounds: usize) -> Vec<(String, Vec<Sample>)> {
    let mut out: Vec<(String, Vec<Sample>)> =
        apps.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
    for round in 0..rounds {
        for i in 0..apps.len() {
            let k = (i + round) % apps.len();
            let (status, body, sample) = apps[k].1.request("/api/orders").await;
            assert_eq!(
                status,
                200,
                "{}: {}",
                apps[k].0,
                String::from_utf8_lossy(&body)
            );
            out[k].1.push(sample);
        }
    }
    out
}

/// Instantiation alone (a store as for a request, the instance, nothing called), per
/// app, in interleaved rounds: what composition costs before the handler runs.
async fn instantiation_rows(apps: &[(String, Arc<App>)], rounds: usize) {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); apps.len()];
    for round in 0..rounds {
        for i in 0..apps.len() {
            let k = (i + round) % apps.len();
            samples[k].push(apps[k].1.instantiate_only().await);
        }
    }
    print!("{:<40}", "instantiation only");
    for s in &mut samples {
        s.sort_unstable();
        print!(" {:>22.1}", s[s.len() / 2].as_secs_f64() * 1e6);
    }
    println!();
}

/// The apps side by side: the static-token app, the gateway with today's provider (SQLite
/// store), a "before" build or manifest if the environment names one, and with Redis.
async fn apps(
    engine: &Engine,
    server: &MockServer,
    dir: &Path,
    redis: Option<&LocalRedis>,
) -> Vec<(String, Arc<App>)> {
    let deny = common::example_component("deny-environment", "deny_environment.wasm");
    let gateway = common::example_component("spin-gateway", "spin_gateway.wasm");
    let static_app = common::example_component("spin-static", "spin_static.wasm");
    let manifest = std::fs::read_to_string(common::repo_root().join("spin.toml")).unwrap();
    // What Spin runs: the gateway with the provider, itself with the deny adapter on
    // what it does not inherit, plugged into its import.
    let composed = |provider: &[u8]| plug(&gateway, &plug(provider, &deny));
    let sqlite: Arc<dyn KvBackend> = Arc::new(SqliteKv::open(&dir.join("kv.db")));
    let load = |wasm: &[u8], vars: Resolver, kv: &Arc<dyn KvBackend>| {
        Arc::new(App::load(engine, wasm, vars, kv.clone(), dir))
    };

    let cli = [
        ("api_origin".to_string(), server.origin()),
        ("api_token".to_string(), static_token(server).await),
    ];
    let static_vars = Resolver::from_manifest(STATIC_MANIFEST, "gateway", cli.into());
    let provider = Flavor::Spin.embedded_bytes();
    let mut apps = vec![
        (
            "static token".to_string(),
            load(&static_app, static_vars, &sqlite),
        ),
        (
            "provider, SQLite".into(),
            load(
                &composed(provider),
                provider_resolver(&manifest, server),
                &sqlite,
            ),
        ),
    ];
    // Another build of the provider, or another manifest, side by side (before/after
    // rows of a change: docs/performance.md).
    let before_provider = std::env::var_os("TOKEN_PROVIDER_BENCH_PROVIDER_BEFORE")
        .map(|p| std::fs::read(p).expect("a readable provider build"));
    let before_manifest = std::env::var_os("TOKEN_PROVIDER_BENCH_MANIFEST_BEFORE")
        .map(|p| std::fs::read_to_string(p).expect("a readable spin.toml"));
    if before_provider.is_some() || before_manifest.is_some() {
        let wasm = composed(before_provider.as_deref().unwrap_or(provider));
        let vars = provider_resolver(before_manifest.as_deref().unwrap_or(&manifest), server);
        apps.push(("before, SQLite".into(), load(&wasm, vars, &sqlite)));
    }
    if let Some(redis) = redis {
        let kv: Arc<dyn KvBackend> = Arc::new(PingingRedis::connect(&redis.url()).await);
        let vars = provider_resolver(&manifest, server);
        apps.push((
            "provider, Redis".into(),
            load(&composed(provider), vars, &kv),
        ));
    }
    apps
}

/// What every measured request must have shown: an outbound span and guest time, and for
/// the provider's apps a `get-all` and a store read.
fn check_spans(samples: &[(String, Vec<Sample>)]) {
    for (name, s) in samples {
        assert!(
            s.iter().all(|s| s.outbound > Duration::ZERO),
            "{name}: no outbound span"
        );
        assert!(
            s.iter().all(|s| s.guest > Duration::ZERO),
            "{name}: no guest time"
        );
        if name.starts_with("provider") || name.starts_with("before") {
            assert!(
                s.iter()
                    .all(|s| s.get_all > Duration::ZERO && s.kv > Duration::ZERO),
                "{name}: no get-all or no store read"
            );
        }
    }
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let server = MockServer::start(ID, SECRET).await.unwrap();
    server.set_record_api(false);
    let dir = tempfile::tempdir().unwrap();
    let engine = spin_engine();
    let redis = if bench {
        LocalRedis::start().ok()
    } else {
        None
    };
    let apps = apps(&engine, &server, dir.path(), redis.as_ref()).await;

    let (warmup, measured) = if bench {
        (WARMUP_ROUNDS, ROUNDS)
    } else {
        (2, 3)
    };
    rounds(&apps, warmup).await;
    let tokens_before = server.token_request_count();
    let samples = rounds(&apps, measured).await;
    // Every measured request is a store hit: the token was fetched in the warm-up.
    assert_eq!(
        server.token_request_count(),
        tokens_before,
        "a token fetched while measuring"
    );
    println!(
        "\nSpin 4.1's request path emulated (benches/spin.rs): {measured} interleaved rounds, a fresh\ninstance per request, the provider's token in the store"
    );
    print_table(&samples);
    instantiation_rows(&apps, measured).await;
    check_spans(&samples);
}
