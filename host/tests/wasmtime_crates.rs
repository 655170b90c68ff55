//! The wasmtime flavor runs with the WASI implementations that the `wasmtime` CLI itself
//! links (wasmtime-wasi, -wasi-http, -wasi-keyvalue, -wasi-config), not this project's
//! host traits: proof that `wasmtime run -S http -S keyvalue -S config` can load it.

use token_provider_host::bindings;
use token_provider_host::components::{EMBEDDED_WASMTIME_COMPONENT, new_engine};
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{TokenRequest, TokenSource};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_keyvalue::{WasiKeyValue, WasiKeyValueCtx, WasiKeyValueCtxBuilder};

struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: WasiKeyValueCtx,
    config: WasiConfigVariables,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
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
    let provider = bindings::TokenProvider::instantiate_async(&mut store, &component, &linker)
        .await
        .unwrap();
    let token = provider
        .oauth2_token_provider_provider()
        .call_get_token(&mut store, &TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
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
    let component =
        Component::new(&engine, token_provider_host::components::EMBEDDED_COMPONENT).unwrap();
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
