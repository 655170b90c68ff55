//! Loading and running the component: engine, linker, per-instance state, and the
//! host side of `wasi:keyvalue` and `wasi:config`.

use crate::kv::{KvBackend, MemoryKv};
use crate::outbound::{Hooks, tls_config};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "oauth2:token-provider/token-provider",
        imports: { default: async | trappable },
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

/// The wasmtime flavor's imports (`wasi:keyvalue@0.2.0-draft`, `wasi:config@0.2.0-rc.1`).
/// Its exports are the same interfaces as the Spin flavor's, so one set of export
/// bindings (`bindings`) calls both flavors.
pub mod wasmtime_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "oauth2:token-provider/token-provider-wasmtime",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "oauth2:token-provider/types": crate::runtime::bindings::oauth2::token_provider::types,
            "wasi:keyvalue/store.bucket": crate::runtime::Bucket,
        },
    });
}

pub use bindings::exports::oauth2::token_provider::authorized_client::{
    Request as ApiRequest, Response as ApiResponse,
};
pub use bindings::oauth2::token_provider::types::{
    AccessToken, Error as ProviderError, OauthError, ServerError, TokenRequest, TokenSource,
};

/// The Spin-flavor component this host was built with (see `build.rs`); the default.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("TOKEN_PROVIDER_WASM"));

/// The wasmtime-flavor component (same source, the drafts wasmtime's CLI implements).
pub static EMBEDDED_WASMTIME_COMPONENT: &[u8] =
    include_bytes!(env!("TOKEN_PROVIDER_WASMTIME_WASM"));

/// A `wasi:keyvalue` bucket (either draft): the label it was opened with.
pub struct Bucket {
    pub(crate) label: String,
}

/// A `wasi:keyvalue@0.2.0-draft2` compare-and-swap handle.
pub struct Cas {
    pub(crate) label: String,
    pub(crate) key: String,
    pub(crate) current: Option<Vec<u8>>,
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
    pub(crate) table: ResourceTable,
    hooks: Hooks,
    pub(crate) kv: Arc<dyn KvBackend>,
    pub(crate) config: Arc<HashMap<String, String>>,
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

/// Which build of the component to run. Both have the same exports; they differ in
/// the WASI drafts they import (this host implements both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// `token_provider.wasm`: `wasi:keyvalue@0.2.0-draft2`, `wasi:config@0.2.0-draft-2024-09-27` (Spin 3.x/4.x).
    #[default]
    Spin,
    /// `token_provider_wasmtime.wasm`: `wasi:keyvalue@0.2.0-draft`, `wasi:config@0.2.0-rc.1` (wasmtime 48 CLI).
    Wasmtime,
}

impl Flavor {
    pub fn embedded_bytes(self) -> &'static [u8] {
        match self {
            Flavor::Spin => EMBEDDED_COMPONENT,
            Flavor::Wasmtime => EMBEDDED_WASMTIME_COMPONENT,
        }
    }
}

/// Builder for a [`TokenHost`].
pub struct HostBuilder {
    flavor: Flavor,
    component: Option<Vec<u8>>,
    config: HashMap<String, String>,
    kv: Arc<dyn KvBackend>,
    extra_roots: Vec<CertificateDer<'static>>,
    log: LogSink,
    clock_offset_ms: i64,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            flavor: Flavor::Spin,
            component: None,
            config: HashMap::new(),
            kv: Arc::new(MemoryKv::new()),
            extra_roots: Vec::new(),
            log: LogSink::Inherit,
            clock_offset_ms: 0,
        }
    }
}

impl HostBuilder {
    /// Run the embedded component of this flavor (default: [`Flavor::Spin`]).
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Use this component (`.wasm` bytes, either flavor) instead of the embedded one.
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

    /// Shift the wall clock the component sees (`wasi:clocks/wall-clock`) by this many
    /// milliseconds: for testing hosts whose clocks disagree.
    pub fn clock_offset_ms(mut self, offset: i64) -> Self {
        self.clock_offset_ms = offset;
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
            None => embedded(self.flavor),
        };
        self.build_with(engine, component)
    }

    /// Link an already compiled component (compiling is the slow part: share it).
    pub fn build_with(self, engine: Engine, component: Component) -> anyhow::Result<TokenHost> {
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::wasi_impls::add_to_linker(&mut linker)?;
        let pre = bindings::TokenProviderPre::new(linker.instantiate_pre(&component)?)?;
        Ok(TokenHost {
            engine,
            linker,
            pre,
            kv: self.kv,
            config: Arc::new(self.config),
            tls: tls_config(&self.extra_roots)?,
            log: self.log,
            clock_offset_ms: self.clock_offset_ms,
        })
    }
}

pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    Ok(Engine::new(&config)?)
}

/// An embedded component, compiled once per process and flavor (one shared engine).
pub fn embedded(flavor: Flavor) -> (Engine, Component) {
    use std::sync::OnceLock;
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    static SPIN: OnceLock<Component> = OnceLock::new();
    static WASMTIME: OnceLock<Component> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| new_engine().expect("engine")).clone();
    let cell = match flavor {
        Flavor::Spin => &SPIN,
        Flavor::Wasmtime => &WASMTIME,
    };
    let component = cell
        .get_or_init(|| {
            Component::new(&engine, flavor.embedded_bytes()).expect("embedded component compiles")
        })
        .clone();
    (engine, component)
}

/// A linked component, ready to be instantiated any number of times.
#[derive(Clone)]
pub struct TokenHost {
    engine: Engine,
    linker: Linker<State>,
    pre: bindings::TokenProviderPre<State>,
    kv: Arc<dyn KvBackend>,
    config: Arc<HashMap<String, String>>,
    tls: Arc<rustls::ClientConfig>,
    log: LogSink,
    clock_offset_ms: i64,
}

/// The system wall clock, shifted.
struct OffsetClock(i64);

impl wasmtime_wasi::HostWallClock for OffsetClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let shift = std::time::Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 {
            now + shift
        } else {
            now.saturating_sub(shift)
        }
    }
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
        let mut store = self.new_store();
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(ProviderInstance { store, bindings })
    }

    /// Instantiate any other component with the same imports available, e.g. one that
    /// was composed with the provider (`wac plug`). Call its exports through the
    /// returned instance.
    pub async fn instantiate_other(
        &self,
        component: &Component,
    ) -> anyhow::Result<(Store<State>, wasmtime::component::Instance)> {
        let mut store = self.new_store();
        let instance = self.linker.instantiate_async(&mut store, component).await?;
        Ok((store, instance))
    }

    fn new_store(&self) -> Store<State> {
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
        if self.clock_offset_ms != 0 {
            wasi.wall_clock(OffsetClock(self.clock_offset_ms));
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
        Store::new(&self.engine, state)
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
