//! An embedder keeps its own store state: the provider (both flavors) runs in a
//! `Linker` of the embedder's own type, with this crate's `wasi:keyvalue` and
//! `wasi:config` linked wasmtime-style (a context in that state, a borrowed view, an
//! `add_to_linker` taking a function), and a token stored by one instance is found by
//! the next through the embedder's store.

use std::sync::Arc;
use token_provider_host::components::{
    EMBEDDED_COMPONENT, EMBEDDED_WASMTIME_COMPONENT, new_engine,
};
use token_provider_host::config::{WasiConfig, WasiConfigVariables};
use token_provider_host::keyvalue::{WasiKeyValue, WasiKeyValueCtx};
use token_provider_host::kv::{KvBackend, MemoryKv};
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{TokenRequest, TokenSource, bindings};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The embedder's state: its own fields beside the contexts it lends.
struct EmbedderState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: WasiKeyValueCtx,
    config: WasiConfigVariables,
    requests_served: u32,
}

impl WasiView for EmbedderState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for EmbedderState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

fn linker(engine: &wasmtime::Engine) -> Linker<EmbedderState> {
    let mut linker = Linker::<EmbedderState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    token_provider_host::keyvalue::add_to_linker(&mut linker, |s: &mut EmbedderState| {
        WasiKeyValue::new(&s.kv, &mut s.table)
    })
    .unwrap();
    token_provider_host::config::add_to_linker(&mut linker, |s: &mut EmbedderState| {
        WasiConfig::from(&s.config)
    })
    .unwrap();
    linker
}

#[tokio::test]
async fn an_embedders_own_state_links_the_key_value_store_and_config_of_both_flavors() {
    let server = MockServer::start("emb-client", "emb-secret").await.unwrap();
    let engine = new_engine().unwrap();
    let linker = linker(&engine);
    let config = WasiConfigVariables::new(
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
                kv: WasiKeyValueCtx::new(store_backend.clone()),
                config: config.clone(),
                requests_served: 0,
            };
            let mut store = Store::new(&engine, state);
            let provider = pre.instantiate_async(&mut store).await.unwrap();
            let token = provider
                .oauth2_token_provider_provider()
                .call_get_token(&mut store, &TokenRequest::default_request())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{flavor}: {e:?}"));
            store.data_mut().requests_served += 1;
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
    let linker = linker(&engine);
    let component = Component::new(&engine, EMBEDDED_COMPONENT).unwrap();
    let state = EmbedderState {
        table: ResourceTable::new(),
        wasi: WasiCtx::builder().build(),
        http: WasiHttpCtx::new(),
        kv: WasiKeyValueCtx::denied(),
        config: WasiConfigVariables::new(
            [
                ("token_url", server.url("/token")),
                ("client_id", "emb-client".to_string()),
                ("client_secret", "emb-secret".to_string()),
                ("allow_insecure_http", "true".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        ),
        requests_served: 0,
    };
    let mut store = Store::new(&engine, state);
    let provider = bindings::TokenProvider::instantiate_async(&mut store, &component, &linker)
        .await
        .unwrap();
    let token = provider
        .oauth2_token_provider_provider()
        .call_get_token(&mut store, &TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
    // The store's `open` is access-denied: the provider degrades to memory only.
    assert_eq!(token.source, TokenSource::Fresh);
    assert_eq!(server.token_requests().len(), 1);
}
