//! Loading and running the component: [`HostBuilder`] collects the settings,
//! [`TokenHost`] links the component once, [`ProviderInstance`] is one fresh instance
//! (as Spin gives each request) whose exports it calls.

use crate::bindings;
use crate::components::{Flavor, embedded, new_engine};
use crate::config::{WasiConfig, WasiConfigVariables};
use crate::keyvalue::{WasiKeyValue, WasiKeyValueCtx};
use crate::kv::{KvBackend, MemoryKv};
use crate::memory_peak::{MemoryPeak, Recorder};
use crate::outbound::{Hooks, tls_config};
use crate::phases::{LogFile, Phases};
use crate::types::{AccessToken, ApiRequest, ApiResponse, Proven, ProviderError, TokenRequest};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Where the component's stderr (its audit log) goes.
#[derive(Clone)]
pub enum LogSink {
    /// The host process's stderr.
    Inherit,
    /// A buffer shared by every instance (tests read it).
    Capture(MemoryOutputPipe),
    /// Nowhere.
    Discard,
    /// Appended to this file, as Spin writes a component's output to its log files.
    File(std::path::PathBuf),
}

/// What a component started with [`TokenHost::instantiate_other_with`] gets of this
/// host's provider setup, like the capability sets of Spin's `inherit_configuration`.
/// The default, [`Inherit::NOTHING`], is what [`TokenHost::instantiate_other`] gives: an
/// empty `wasi:config`, no key-value store (`open` is `access-denied`) and no outbound
/// HTTP (`http-request-denied`). The provider's own instances
/// ([`TokenHost::instance`]) always get all three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inherit {
    config: bool,
    key_value: bool,
    outbound_http: bool,
}

impl Inherit {
    /// Nothing of the provider's setup (the default).
    pub const NOTHING: Inherit = Inherit {
        config: false,
        key_value: false,
        outbound_http: false,
    };
    /// Everything: what a component composed with the provider (`wac plug`) needs, since
    /// the provider inside it uses the composition's imports.
    pub const ALL: Inherit = Inherit {
        config: true,
        key_value: true,
        outbound_http: true,
    };

    /// `wasi:config`: every key set on the builder, `client_secret` included (Spin:
    /// `variables`).
    pub const fn config(mut self) -> Inherit {
        self.config = true;
        self
    }

    /// `wasi:keyvalue`: the host's key-value store, with the provider's cached tokens
    /// (Spin: `key_value_stores`).
    pub const fn key_value(mut self) -> Inherit {
        self.key_value = true;
        self
    }

    /// `wasi:http/outgoing-handler`: requests to any host; this host has no per-host
    /// list like Spin's `allowed_outbound_hosts`.
    pub const fn outbound_http(mut self) -> Inherit {
        self.outbound_http = true;
        self
    }
}

/// Per-instance state.
pub struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: Hooks,
    /// The key-value store, if this instance may open it.
    kv: WasiKeyValueCtx,
    /// What `wasi:config` shows (empty when not inherited).
    config: WasiConfigVariables,
    /// Records memory growth (a test kit's [`MemoryPeak`](crate::MemoryPeak)).
    memory: Option<Recorder>,
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
    flavor: Flavor,
    component: Option<Vec<u8>>,
    config: HashMap<String, String>,
    kv: Arc<dyn KvBackend>,
    extra_roots: Vec<CertificateDer<'static>>,
    log: LogSink,
    clock_offset_ms: i64,
    phases: Option<Phases>,
    config_get_all: bool,
    memory_peak: Option<MemoryPeak>,
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
            phases: None,
            config_get_all: true,
            memory_peak: None,
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

    /// Time every import call of every instance by phase into `phases` (benchmarks:
    /// see [`Phases`]). Test kit only.
    #[cfg(feature = "testkit")]
    pub fn phases(mut self, phases: Phases) -> Self {
        self.phases = Some(phases);
        self
    }

    /// Record into `peak` how large the linear memories of every instance grow (tests:
    /// see [`MemoryPeak`]). Test kit only.
    #[cfg(feature = "testkit")]
    pub fn memory_peak(mut self, peak: MemoryPeak) -> Self {
        self.memory_peak = Some(peak);
        self
    }

    /// `false`: `wasi:config` `get-all` fails, as on a host that implements only `get`
    /// (the component then asks key by key). Default `true`. Test kit only.
    #[cfg(feature = "testkit")]
    pub fn config_get_all(mut self, answers: bool) -> Self {
        self.config_get_all = answers;
        self
    }

    /// Shift the wall clock the component sees (`wasi:clocks/wall-clock`) by this many
    /// milliseconds: for testing hosts whose clocks disagree. Test kit only.
    #[cfg(feature = "testkit")]
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
            None if self.flavor == Flavor::Spin && crate::components::needs_rsa(&self.config) => {
                crate::components::embedded_rsa()
            }
            None => embedded(self.flavor),
        };
        self.build_with(engine, component)
    }

    /// Link an already compiled component (compiling is the slow part: share it).
    pub fn build_with(self, engine: Engine, component: Component) -> anyhow::Result<TokenHost> {
        let linker = provider_linker(&engine)?;
        let pre = bindings::TokenProviderPre::new(linker.instantiate_pre(&component)?)?;
        let log_file = match &self.log {
            LogSink::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::Error::from(e).context(format!("opening {}", path.display()))
                    })?;
                Some(LogFile::new(file, self.phases.clone()))
            }
            _ => None,
        };
        Ok(TokenHost {
            engine,
            other_linker: Arc::new(OnceLock::new()),
            pre,
            kv: self.kv,
            config: Arc::new(self.config),
            tls: tls_config(&self.extra_roots)?,
            log: self.log,
            log_file,
            clock_offset_ms: self.clock_offset_ms,
            phases: self.phases,
            config_get_all: self.config_get_all,
            memory_peak: self.memory_peak,
        })
    }
}

/// What the provider imports: WASIp2 with outbound HTTP, key-value and config.
fn provider_linker(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::keyvalue::add_to_linker(&mut linker, |s: &mut State| {
        WasiKeyValue::new(&s.kv, &mut s.table)
    })?;
    crate::config::add_to_linker(&mut linker, |s: &mut State| WasiConfig::from(&s.config))?;
    Ok(linker)
}

/// A linked component, ready to be instantiated any number of times.
#[derive(Clone)]
pub struct TokenHost {
    engine: Engine,
    /// The provider's imports and WASIp3 (`wasi:http@0.3.0` and the WASI 0.3
    /// interfaces), for other components instantiated in this host, such as apps
    /// composed with the interceptor. Made on first use: adding WASIp3 to a linker
    /// costs about 80 µs, a third of linking, which a host that only runs the provider
    /// (the CLI, a cold start) does not pay (docs/performance.md).
    other_linker: Arc<OnceLock<Linker<State>>>,
    pre: bindings::TokenProviderPre<State>,
    kv: Arc<dyn KvBackend>,
    config: Arc<HashMap<String, String>>,
    tls: Arc<rustls::ClientConfig>,
    log: LogSink,
    log_file: Option<LogFile>,
    clock_offset_ms: i64,
    phases: Option<Phases>,
    config_get_all: bool,
    memory_peak: Option<MemoryPeak>,
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
        let mut store = self.new_store(Inherit::ALL);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(ProviderInstance { store, bindings })
    }

    /// Instantiate any other component against this host's imports, with none of the
    /// provider's configuration, store or outbound HTTP ([`Inherit::NOTHING`]); see
    /// [`instantiate_other_with`](TokenHost::instantiate_other_with) to give some.
    /// Call its exports through the returned instance.
    pub async fn instantiate_other(
        &self,
        component: &Component,
    ) -> anyhow::Result<(Store<State>, wasmtime::component::Instance)> {
        self.instantiate_other_with(component, Inherit::NOTHING)
            .await
    }

    /// Instantiate any other component with what `inherit` grants of the provider's
    /// setup. A component composed with the provider (`wac plug`) needs
    /// [`Inherit::ALL`]: the provider inside it reads its configuration and store
    /// through the composition's imports, which are the consumer's too, so whatever it
    /// is given, `client_secret` included, the consumer part can read as well.
    pub async fn instantiate_other_with(
        &self,
        component: &Component,
        inherit: Inherit,
    ) -> anyhow::Result<(Store<State>, wasmtime::component::Instance)> {
        let mut store = self.new_store(inherit);
        let instance = self
            .linker()?
            .instantiate_async(&mut store, component)
            .await?;
        Ok((store, instance))
    }

    /// The linker for other components ([`TokenHost::other_linker`]), made on first use.
    pub(crate) fn linker(&self) -> anyhow::Result<&Linker<State>> {
        if let Some(linker) = self.other_linker.get() {
            return Ok(linker);
        }
        let mut linker = provider_linker(&self.engine)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        // Two callers may both make one; the first kept is the one every caller gets.
        let _ = self.other_linker.set(linker);
        Ok(self.other_linker.get().expect("set just above"))
    }

    pub(crate) fn new_store(&self, inherit: Inherit) -> Store<State> {
        let mut wasi = WasiCtx::builder();
        match &self.log {
            LogSink::Inherit => {
                wasi.inherit_stderr();
            }
            LogSink::Capture(pipe) => {
                wasi.stderr(pipe.clone());
            }
            LogSink::Discard => {}
            LogSink::File(_) => {
                if let Some(file) = &self.log_file {
                    wasi.stderr(file.clone());
                }
            }
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
                allowed: inherit.outbound_http,
                phases: self.phases.clone(),
            },
            kv: match inherit.key_value {
                true => WasiKeyValueCtx::new(self.kv.clone()),
                false => WasiKeyValueCtx::denied(),
            }
            .with_phases(self.phases.clone()),
            config: WasiConfigVariables::shared(if inherit.config {
                self.config.clone()
            } else {
                Arc::default()
            })
            .with_get_all(self.config_get_all)
            .with_phases(self.phases.clone()),
            memory: self.memory_peak.clone().map(Recorder::new),
        };
        let mut store = Store::new(&self.engine, state);
        if store.data().memory.is_some() {
            store.limiter(|state| state.memory.as_mut().expect("checked at creation"));
        }
        store
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

    /// `dpop.proof`: the token for `request` and a DPoP proof for one `method` request
    /// to `url` with it.
    pub async fn dpop_proof(
        &mut self,
        request: &TokenRequest,
        method: &str,
        url: &str,
    ) -> anyhow::Result<Result<Proven, ProviderError>> {
        Ok(self
            .bindings
            .oauth2_token_provider_dpop()
            .call_proof(&mut self.store, request, method, url)
            .await?)
    }

    /// `dpop.keep-nonce`: the `DPoP-Nonce` a server at `url` answered with.
    pub async fn dpop_keep_nonce(
        &mut self,
        url: &str,
        nonce: &str,
    ) -> anyhow::Result<Result<(), ProviderError>> {
        Ok(self
            .bindings
            .oauth2_token_provider_dpop()
            .call_keep_nonce(&mut self.store, url, nonce)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::TokenHost;
    use wasmtime::component::Component;

    /// The smallest component there is: the preamble and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[tokio::test]
    async fn the_wasip3_linker_is_made_only_when_another_component_needs_it() {
        let host = TokenHost::builder().build().unwrap();
        drop(host.instance().await.unwrap());
        assert!(host.other_linker.get().is_none(), "made for the provider");
        let clone = host.clone();
        let other = Component::new(&host.engine, EMPTY_COMPONENT).unwrap();
        host.instantiate_other(&other).await.unwrap();
        // Made once, and shared by the host's clones.
        assert!(clone.other_linker.get().is_some());
        let first: *const _ = host.linker().unwrap();
        assert!(std::ptr::eq(first, clone.linker().unwrap()));
    }
}
