//! Loading and running the component: engine, linker, per-instance state, and the
//! host side of `wasi:keyvalue` and `wasi:config`.

use crate::kv::{KvBackend, MemoryKv};
use crate::outbound::{Hooks, tls_config};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "oauth2:token-provider/token-provider",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:keyvalue/store.bucket": crate::runtime::Bucket,
            "wasi:keyvalue/atomics.cas": crate::runtime::Cas,
        },
    });
}

pub use bindings::exports::oauth2::token_provider::authorized_client::{
    Request as ApiRequest, Response as ApiResponse,
};
pub use bindings::oauth2::token_provider::types::{
    AccessToken, Error as ProviderError, OauthError, ServerError, TokenRequest, TokenSource,
};
use bindings::wasi::config::store as config_store;
use bindings::wasi::keyvalue::{atomics, store as kv_store};

/// The component this host was built with (see `build.rs`).
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("TOKEN_PROVIDER_WASM"));

/// A `wasi:keyvalue` bucket: the label it was opened with.
pub struct Bucket {
    label: String,
}

/// A `wasi:keyvalue` compare-and-swap handle.
pub struct Cas {
    label: String,
    key: String,
    current: Option<Vec<u8>>,
}

/// Where the component's stderr (its audit log) goes.
#[derive(Clone)]
pub enum LogSink {
    /// The host process's stderr.
    Inherit,
    /// A buffer shared by every instance (tests read it).
    Capture(MemoryOutputPipe),
    /// Nowhere.
    Discard,
}

/// Per-instance state.
pub struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    kv: Arc<dyn KvBackend>,
    config: Arc<HashMap<String, String>>,
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

/// Builder for a [`TokenHost`].
pub struct HostBuilder {
    component: Option<Vec<u8>>,
    config: HashMap<String, String>,
    kv: Arc<dyn KvBackend>,
    extra_roots: Vec<CertificateDer<'static>>,
    log: LogSink,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            component: None,
            config: HashMap::new(),
            kv: Arc::new(MemoryKv::new()),
            extra_roots: Vec::new(),
            log: LogSink::Inherit,
        }
    }
}

impl HostBuilder {
    /// Use this component (`.wasm` bytes) instead of the embedded one.
    pub fn component(mut self, bytes: Vec<u8>) -> Self {
        self.component = Some(bytes);
        self
    }

    /// Set one `wasi:config` key.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    pub fn configs<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in pairs {
            self.config.insert(k.into(), v.into());
        }
        self
    }

    pub fn kv(mut self, kv: Arc<dyn KvBackend>) -> Self {
        self.kv = kv;
        self
    }

    /// Trust these CA certificates for outbound TLS, besides the webpki roots.
    pub fn trust(mut self, certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        self.extra_roots.extend(certs);
        self
    }

    pub fn log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Compile (or reuse `engine`/`component`) and link.
    pub fn build(mut self) -> anyhow::Result<TokenHost> {
        let (engine, component) = match self.component.take() {
            Some(bytes) => {
                let engine = new_engine()?;
                let component = Component::new(&engine, bytes)
                    .map_err(|e| anyhow::Error::from(e).context("compiling the component"))?;
                (engine, component)
            }
            None => embedded(),
        };
        self.build_with(engine, component)
    }

    /// Link an already compiled component (compiling is the slow part: share it).
    pub fn build_with(self, engine: Engine, component: Component) -> anyhow::Result<TokenHost> {
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        kv_store::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        atomics::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        config_store::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        let pre = bindings::TokenProviderPre::new(linker.instantiate_pre(&component)?)?;
        Ok(TokenHost {
            engine,
            pre,
            kv: self.kv,
            config: Arc::new(self.config),
            tls: tls_config(&self.extra_roots)?,
            log: self.log,
        })
    }
}

pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    Ok(Engine::new(&config)?)
}

/// The embedded component, compiled once per process.
pub fn embedded() -> (Engine, Component) {
    static CACHE: std::sync::OnceLock<(Engine, Component)> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            let engine = new_engine().expect("engine");
            let component =
                Component::new(&engine, EMBEDDED_COMPONENT).expect("embedded component compiles");
            (engine, component)
        })
        .clone()
}

/// A linked component, ready to be instantiated any number of times.
#[derive(Clone)]
pub struct TokenHost {
    engine: Engine,
    pre: bindings::TokenProviderPre<State>,
    kv: Arc<dyn KvBackend>,
    config: Arc<HashMap<String, String>>,
    tls: Arc<rustls::ClientConfig>,
    log: LogSink,
}

impl TokenHost {
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A fresh instance, as Spin gives each request.
    pub async fn instance(&self) -> anyhow::Result<ProviderInstance> {
        let mut wasi = WasiCtx::builder();
        match &self.log {
            LogSink::Inherit => {
                wasi.inherit_stderr();
            }
            LogSink::Capture(pipe) => {
                wasi.stderr(pipe.clone());
            }
            LogSink::Discard => {}
        }
        let state = State {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks {
                tls: self.tls.clone(),
            },
            kv: self.kv.clone(),
            config: self.config.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(ProviderInstance { store, bindings })
    }
}

/// One instance of the component.
pub struct ProviderInstance {
    store: Store<State>,
    bindings: bindings::TokenProvider,
}

impl ProviderInstance {
    /// `provider.get-token`. The outer error is a trap (a bug), the inner one the
    /// component's typed error.
    pub async fn get_token(
        &mut self,
        request: &TokenRequest,
    ) -> anyhow::Result<Result<AccessToken, ProviderError>> {
        Ok(self
            .bindings
            .oauth2_token_provider_provider()
            .call_get_token(&mut self.store, request)
            .await?)
    }

    pub async fn invalidate(&mut self, request: &TokenRequest) -> anyhow::Result<()> {
        Ok(self
            .bindings
            .oauth2_token_provider_provider()
            .call_invalidate(&mut self.store, request)
            .await?)
    }

    /// `authorized-client.send`.
    pub async fn send(
        &mut self,
        request: &ApiRequest,
    ) -> anyhow::Result<Result<ApiResponse, ProviderError>> {
        Ok(self
            .bindings
            .oauth2_token_provider_authorized_client()
            .call_send(&mut self.store, request)
            .await?)
    }
}

impl TokenRequest {
    /// The configured defaults.
    pub fn default_request() -> Self {
        TokenRequest {
            scopes: None,
            audience: None,
            resources: None,
            force_refresh: false,
        }
    }

    pub fn with_scopes<S: Into<String>>(scopes: impl IntoIterator<Item = S>) -> Self {
        TokenRequest {
            scopes: Some(scopes.into_iter().map(Into::into).collect()),
            ..Self::default_request()
        }
    }
}

/// `fresh`, `memory` or `store`.
pub fn source_name(source: TokenSource) -> &'static str {
    match source {
        TokenSource::Fresh => "fresh",
        TokenSource::Memory => "memory",
        TokenSource::Store => "store",
    }
}

/// One line for people: the OAuth error code first when there is one
/// (`invalid_client: HTTP 401: …`), else the kind of failure.
pub fn describe(error: &ProviderError) -> String {
    struct D<'a>(&'a ProviderError);
    impl std::fmt::Display for D<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                ProviderError::Config(m) => write!(f, "config: {m}"),
                ProviderError::Oauth(e) => {
                    write!(f, "{}: HTTP {}", e.error, e.status)?;
                    if let Some(d) = &e.error_description {
                        write!(f, ": {d}")?;
                    }
                    Ok(())
                }
                ProviderError::Server(e) => {
                    write!(f, "server error: HTTP {}: {}", e.status, e.message)
                }
                ProviderError::Transport(m) => write!(f, "transport: {m}"),
                ProviderError::InvalidResponse(m) => write!(f, "invalid_response: {m}"),
                ProviderError::Timeout => write!(f, "timeout"),
                ProviderError::Refused(m) => write!(f, "refused: {m}"),
            }
        }
    }
    D(error).to_string()
}

// ---- wasi:config ----

impl config_store::Host for State {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_store::Error>> {
        Ok(Ok(self.config.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config_store::Error>> {
        Ok(Ok(self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

// ---- wasi:keyvalue (store + atomics) ----

fn other(e: String) -> kv_store::Error {
    kv_store::Error::Other(e)
}

impl State {
    fn label(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.label.clone())
    }
}

impl kv_store::Host for State {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, kv_store::Error>> {
        if let Err(e) = self.kv.open(&identifier) {
            return Ok(Err(other(e)));
        }
        Ok(Ok(self.table.push(Bucket { label: identifier })?))
    }
}

impl kv_store::HostBucket for State {
    fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv_store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self.kv.get(&label, &key).map_err(other))
    }

    fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv_store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self.kv.set(&label, &key, &value).map_err(other))
    }

    fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv_store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self.kv.delete(&label, &key).map_err(other))
    }

    fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv_store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self.kv.exists(&label, &key).map_err(other))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<kv_store::KeyResponse, kv_store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self
            .kv
            .list_keys(&label, cursor.as_deref(), 1000)
            .map(|(keys, cursor)| kv_store::KeyResponse { keys, cursor })
            .map_err(other))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for State {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, kv_store::Error>> {
        let label = self.label(&bucket)?;
        Ok(self.kv.increment(&label, &key, delta).map_err(other))
    }

    fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        // Not atomic across processes: the component coordinates with `increment` only.
        let cas = self.table.delete(cas)?;
        let current = self.kv.get(&cas.label, &cas.key);
        Ok(match current {
            Err(e) => Err(atomics::CasError::StoreError(other(e))),
            Ok(now) if now != cas.current => {
                let fresh = self.table.push(Cas {
                    current: now,
                    ..cas
                })?;
                Err(atomics::CasError::CasFailed(fresh))
            }
            Ok(_) => self
                .kv
                .set(&cas.label, &cas.key, &value)
                .map_err(|e| atomics::CasError::StoreError(other(e))),
        })
    }
}

impl atomics::HostCas for State {
    fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, kv_store::Error>> {
        let label = self.label(&bucket)?;
        match self.kv.get(&label, &key) {
            Ok(current) => Ok(Ok(self.table.push(Cas {
                label,
                key,
                current,
            })?)),
            Err(e) => Ok(Err(other(e))),
        }
    }

    fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv_store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
