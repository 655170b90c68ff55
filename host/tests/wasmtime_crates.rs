//! The components in a `Linker` of someone else's state:
//! - the wasmtime flavor runs with the WASI implementations that the `wasmtime` CLI
//!   itself links (wasmtime-wasi, -wasi-http, -wasi-keyvalue, -wasi-config), not this
//!   project's host traits: proof that `wasmtime run -S http -S keyvalue -S config` can
//!   load it;
//! - an embedder keeps its own store state: both flavors run with this crate's
//!   `wasi:keyvalue` and `wasi:config` linked wasmtime-style (a context in that state, a
//!   borrowed view, an `add_to_linker` taking a function), and a token stored by one
//!   instance is found by the next through the embedder's store.

use std::sync::Arc;
use token_provider_host::bindings;
use token_provider_host::components::{
    EMBEDDED_COMPONENT, EMBEDDED_WASMTIME_COMPONENT, new_engine,
};
use token_provider_host::config as ours_config;
use token_provider_host::keyvalue as ours;
use token_provider_host::kv::{KvBackend, MemoryKv};
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{AccessToken, TokenRequest, TokenSource};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_keyvalue::{WasiKeyValue, WasiKeyValueCtx, WasiKeyValueCtxBuilder};

/// A store state with the key-value and config contexts `K` and `C` (wasmtime's crates'
/// or this crate's) beside wasmtime's WASI and HTTP contexts.
struct Ctx<K = WasiKeyValueCtx, C = WasiConfigVariables> {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: K,
    config: C,
}

impl<K: Send, C: Send> WasiView for Ctx<K, C> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<K: Send, C: Send> WasiHttpView for Ctx<K, C> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// A new instance of `component` in `store`, and its answer to a default `get-token`
/// (a trap or an error fails the test).
async fn first_token<T: Send + 'static>(
    store: &mut Store<T>,
    component: &Component,
    linker: &Linker<T>,
) -> (bindings::TokenProvider, AccessToken) {
    let provider = bindings::TokenProvider::instantiate_async(&mut *store, component, linker)
        .await
        .unwrap();
    let token = provider
        .oauth2_token_provider_provider()
        .call_get_token(&mut *store, &TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
    (provider, token)
}

/// A linker with wasmtime's own WASI crates only (none of this project's host glue).
fn wasmtime_crates_linker(engine: &wasmtime::Engine) -> Linker<Ctx> {
    let mut linker = Linker::<Ctx>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_keyvalue::add_to_linker(&mut linker, |c: &mut Ctx| {
        WasiKeyValue::new(&c.kv, &mut c.table)
    })
    .unwrap();
    wasmtime_wasi_config::add_to_linker(&mut linker, |c: &mut Ctx| WasiConfig::from(&c.config))
        .unwrap();
    linker
}

#[tokio::test]
async fn wasmtime_flavor_gets_a_token_with_wasmtimes_own_wasi_crates() {
    let server = MockServer::start("cli-client", "cli-secret").await.unwrap();
    let engine = new_engine().unwrap();
    let component = Component::new(&engine, EMBEDDED_WASMTIME_COMPONENT).unwrap();
    let linker = wasmtime_crates_linker(&engine);

    let config = [
        ("token_url", server.url("/token")),
        ("client_id", "cli-client".to_string()),
        ("client_secret", "cli-secret".to_string()),
        ("allow_insecure_http", "true".to_string()),
        ("scope", "read".to_string()),
    ];
    let ctx = Ctx {
        table: ResourceTable::new(),
        wasi: WasiCtx::builder().inherit_stderr().build(),
        http: WasiHttpCtx::new(),
        kv: WasiKeyValueCtxBuilder::new().build(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    let mut store = Store::new(&engine, ctx);
    let (provider, token) = first_token(&mut store, &component, &linker).await;
    assert_eq!(token.source, TokenSource::Fresh);
    assert_eq!(token.scopes, ["read"]);
    assert_eq!(server.token_requests().len(), 1);
    // wasmtime's in-memory key-value store keeps nothing between `open` calls, so the
    // same instance answers from its memory, but nothing reaches the store.
    let again = provider
        .oauth2_token_provider_provider()
        .call_get_token(&mut store, &TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.source, TokenSource::Memory);
}

#[tokio::test]
async fn spin_flavor_does_not_link_with_wasmtimes_crates() {
    // The drafts really differ: this is why there are two flavors.
    let engine = new_engine().unwrap();
    let component = Component::new(&engine, EMBEDDED_COMPONENT).unwrap();
    let linker = wasmtime_crates_linker(&engine);
    let err = linker
        .instantiate_pre(&component)
        .err()
        .expect("the Spin flavor must not link here");
    let text = format!("{err:#}");
    assert!(
        text.contains("wasi:keyvalue/store@0.2.0-draft2")
            || text.contains("wasi:config/store@0.2.0-draft-2024-09-27"),
        "{text}"
    );
}

/// The embedder's state: this crate's contexts in someone else's type.
type EmbedderState = Ctx<ours::WasiKeyValueCtx, ours_config::WasiConfigVariables>;

/// A linker of the embedder's state with this crate's `wasi:keyvalue` and `wasi:config`.
fn embedder_linker(engine: &wasmtime::Engine) -> Linker<EmbedderState> {
    let mut linker = Linker::<EmbedderState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    token_provider_host::keyvalue::add_to_linker(&mut linker, |s: &mut EmbedderState| {
        ours::WasiKeyValue::new(&s.kv, &mut s.table)
    })
    .unwrap();
    token_provider_host::config::add_to_linker(&mut linker, |s: &mut EmbedderState| {
        ours_config::WasiConfig::from(&s.config)
    })
    .unwrap();
    linker
}

#[tokio::test]
async fn an_embedders_own_state_links_the_key_value_store_and_config_of_both_flavors() {
    let server = MockServer::start("emb-client", "emb-secret").await.unwrap();
    let engine = new_engine().unwrap();
    let linker = embedder_linker(&engine);
    let config = ours_config::WasiConfigVariables::new(
        [
            ("token_url", server.url("/token")),
            ("client_id", "emb-client".to_string()),
            ("client_secret", "emb-secret".to_string()),
            ("allow_insecure_http", "true".to_string()),
            ("scope", "read".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    for (flavor, bytes) in [
        ("spin", EMBEDDED_COMPONENT),
        ("wasmtime", EMBEDDED_WASMTIME_COMPONENT),
    ] {
        let store_backend: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
        let component = Component::new(&engine, bytes).unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        let pre = bindings::TokenProviderPre::new(pre).unwrap();
        let mut sources = Vec::new();
        for _ in 0..2 {
            // A fresh instance per request, as Spin does: only the store carries the
            // token from the first to the second.
            let state = EmbedderState {
                table: ResourceTable::new(),
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                kv: ours::WasiKeyValueCtx::new(store_backend.clone()),
                config: config.clone(),
            };
            let mut store = Store::new(&engine, state);
            let provider = pre.instantiate_async(&mut store).await.unwrap();
            let token = provider
                .oauth2_token_provider_provider()
                .call_get_token(&mut store, &TokenRequest::default_request())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{flavor}: {e:?}"));
            assert_eq!(token.scopes, ["read"], "{flavor}");
            sources.push(token.source);
        }
        assert_eq!(
            sources,
            [TokenSource::Fresh, TokenSource::Store],
            "{flavor}: the second instance found the first one's token in the embedder's store"
        );
        let stored = store_backend.list_keys("default", None, 100).await.unwrap();
        assert!(
            !stored.keys.is_empty(),
            "{flavor}: the token is in the embedder's backend"
        );
    }
    // One fetch per flavor: each had a store of its own.
    assert_eq!(server.token_requests().len(), 2);
}

#[tokio::test]
async fn without_a_store_the_embedders_instances_still_get_tokens() {
    let server = MockServer::start("emb-client", "emb-secret").await.unwrap();
    let engine = new_engine().unwrap();
    let linker = embedder_linker(&engine);
    let component = Component::new(&engine, EMBEDDED_COMPONENT).unwrap();
    let state = EmbedderState {
        table: ResourceTable::new(),
        wasi: WasiCtx::builder().build(),
        http: WasiHttpCtx::new(),
        kv: ours::WasiKeyValueCtx::denied(),
        config: ours_config::WasiConfigVariables::new(
            [
                ("token_url", server.url("/token")),
                ("client_id", "emb-client".to_string()),
                ("client_secret", "emb-secret".to_string()),
                ("allow_insecure_http", "true".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        ),
    };
    let mut store = Store::new(&engine, state);
    let (_, token) = first_token(&mut store, &component, &linker).await;
    // The store's `open` is access-denied: the provider degrades to memory only.
    assert_eq!(token.source, TokenSource::Fresh);
    assert_eq!(server.token_requests().len(), 1);
}
