//! Composition: a consumer component that imports `oauth2:token-provider/provider` is
//! plugged with the provider (wac-graph, what `wac plug` does), and the composed
//! component fetches and caches a token inside the host. And what another component
//! instantiated in the host (`instantiate_other`) gets of the provider's setup:
//! nothing unless the embedder grants it (`Inherit`).

use crate::common::*;
use token_provider_host::components::EMBEDDED_COMPONENT;
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{Inherit, TokenRequest};
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};
use wasmtime::Store;
use wasmtime::component::{Component, ComponentNamedList, Instance, Lift, Lower};

const CONSUMER_BUILD: &str = "cargo build --manifest-path examples/consumer/Cargo.toml --target wasm32-wasip2 --release --target-dir target/examples";
const PROBE_BUILD: &str = "cargo build --manifest-path examples/probe/Cargo.toml --target wasm32-wasip2 --release --target-dir target/examples";
const PLAIN_HTTP_BUILD: &str = "cargo build --manifest-path examples/plain-http/Cargo.toml --target wasm32-wasip2 --release --target-dir target/examples";

/// Build an example component (`build`) and compile `wasm` from target/examples.
fn example(rig: &Rig, build: &str, wasm: &str) -> Component {
    run_from_root(build);
    let path = repo_root()
        .join("target/examples/wasm32-wasip2/release")
        .join(wasm);
    Component::new(rig.host.engine(), std::fs::read(path).unwrap()).unwrap()
}

/// Call `interface#func` of `instance`.
async fn call<P, R>(
    store: &mut Store<token_provider_host::State>,
    instance: &Instance,
    interface: &str,
    func: &str,
    params: P,
) -> R
where
    P: ComponentNamedList + Lower + Send + Sync + 'static,
    R: ComponentNamedList + Lift + Send + Sync + 'static,
{
    let iface = instance
        .get_export_index(&mut *store, None, interface)
        .unwrap_or_else(|| panic!("{interface} export"));
    let index = instance
        .get_export_index(&mut *store, Some(&iface), func)
        .unwrap_or_else(|| panic!("{func} export"));
    let func = instance
        .get_typed_func::<P, R>(&mut *store, &index)
        .unwrap();
    func.call_async(&mut *store, params).await.unwrap()
}

/// What examples/probe reaches, instantiated with `inherit`: whether `get` of
/// `client_secret` is set and is the secret (values are never kept, so a failing
/// assertion cannot print one), whether `get-all` shows the secret, and the keys of
/// store `default`.
struct Reach {
    secret: Result<Option<bool>, String>,
    secret_in_get_all: Result<bool, String>,
    keys: Result<Vec<String>, String>,
}

async fn probe(rig: &Rig, component: &Component, inherit: Option<Inherit>) -> Reach {
    let (mut store, instance) = match inherit {
        None => rig.host.instantiate_other(component).await.unwrap(),
        Some(inherit) => rig
            .host
            .instantiate_other_with(component, inherit)
            .await
            .unwrap(),
    };
    const REACH: &str = "example:probe/reach@0.1.0";
    let (secret,) = call(
        &mut store,
        &instance,
        REACH,
        "config-get",
        ("client_secret".to_string(),),
    )
    .await;
    let (all,): (Result<Vec<(String, String)>, String>,) =
        call(&mut store, &instance, REACH, "config-get-all", ()).await;
    let (keys,) = call(
        &mut store,
        &instance,
        REACH,
        "store-keys",
        ("default".to_string(),),
    )
    .await;
    let secret: Result<Option<String>, String> = secret;
    Reach {
        secret: secret.map(|value| value.map(|v| v == CLIENT_SECRET)),
        secret_in_get_all: all.map(|pairs| pairs.iter().any(|(_, v)| v == CLIENT_SECRET)),
        keys,
    }
}

fn compose(consumer: Vec<u8>, provider: Vec<u8>) -> Vec<u8> {
    let mut graph = CompositionGraph::new();
    let consumer =
        Package::from_bytes("example:consumer", None, consumer, graph.types_mut()).unwrap();
    let consumer = graph.register_package(consumer).unwrap();
    let provider =
        Package::from_bytes("oauth2:token-provider", None, provider, graph.types_mut()).unwrap();
    let provider = graph.register_package(provider).unwrap();
    wac_graph::plug(&mut graph, vec![provider], consumer).unwrap();
    graph.encode(EncodeOptions::default()).unwrap()
}

async fn describe(
    rig: &Rig,
    component: &Component,
    inherit: Inherit,
    scopes: &[&str],
) -> Result<String, String> {
    let (mut store, instance) = rig
        .host
        .instantiate_other_with(component, inherit)
        .await
        .unwrap();
    let report = instance
        .get_export_index(&mut store, None, "example:consumer/report@0.1.0")
        .expect("report export");
    let func = instance
        .get_export_index(&mut store, Some(&report), "describe-token")
        .expect("describe-token");
    let func = instance
        .get_typed_func::<(Vec<String>,), (Result<String, String>,)>(&mut store, &func)
        .unwrap();
    let scopes = scopes.iter().map(|s| s.to_string()).collect();
    let (result,) = func.call_async(&mut store, (scopes,)).await.unwrap();
    result
}

#[tokio::test]
async fn composed_consumer_fetches_and_caches_a_token() {
    run_from_root(CONSUMER_BUILD);
    let consumer =
        std::fs::read(repo_root().join("target/examples/wasm32-wasip2/release/consumer.wasm"))
            .unwrap();
    let composed = compose(consumer, EMBEDDED_COMPONENT.to_vec());
    std::fs::write(repo_root().join("target/examples/composed.wasm"), &composed).unwrap();

    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let component = Component::new(rig.host.engine(), &composed).unwrap();
    // The composed component no longer imports the provider: it carries it inside.
    let imports: Vec<String> = component
        .component_type()
        .imports(rig.host.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(
        !imports
            .iter()
            .any(|i| i == "oauth2:token-provider/provider@0.1.0"),
        "{imports:?}"
    );

    // The provider inside reads its configuration through the composition's imports: the
    // host cannot give it config without giving it to the consumer part too.
    let without = describe(&rig, &component, Inherit::NOTHING, &["read"]).await;
    assert!(
        without.as_ref().is_err_and(|e| e.contains("token_url")),
        "{without:?}"
    );
    let first = describe(&rig, &component, Inherit::ALL, &["read"])
        .await
        .unwrap();
    assert!(first.starts_with("Bearer token, "), "{first}");
    assert!(
        first.contains("scopes [read]") && first.ends_with("source fresh"),
        "{first}"
    );
    let second = describe(&rig, &component, Inherit::ALL, &["read"])
        .await
        .unwrap();
    assert!(second.ends_with("source store"), "{second}");
    assert_eq!(server.token_requests().len(), 1);
    assert_eq!(
        std::str::from_utf8(&server.token_requests()[0].body).unwrap(),
        "grant_type=client_credentials&scope=read"
    );
}

#[tokio::test]
async fn a_component_beside_the_provider_gets_none_of_its_config_or_store_by_default() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(rig.kv.len("default"), 1, "the provider cached its token");
    let component = example(&rig, PROBE_BUILD, "probe.wasm");
    let reach = probe(&rig, &component, None).await;
    assert_eq!(reach.secret, Ok(None));
    assert_eq!(reach.secret_in_get_all, Ok(false));
    assert!(
        reach
            .keys
            .as_ref()
            .is_err_and(|e| e.contains("AccessDenied")),
        "{:?}",
        reach.keys
    );
}

#[tokio::test]
async fn a_component_given_config_or_the_store_reads_exactly_that() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap();
    let component = example(&rig, PROBE_BUILD, "probe.wasm");

    let config = probe(&rig, &component, Some(Inherit::NOTHING.config())).await;
    assert_eq!(config.secret, Ok(Some(true)));
    assert_eq!(config.secret_in_get_all, Ok(true));
    assert!(config.keys.is_err(), "{:?}", config.keys);

    let store = probe(&rig, &component, Some(Inherit::NOTHING.key_value())).await;
    assert_eq!(store.secret, Ok(None));
    assert_eq!(store.secret_in_get_all, Ok(false));
    let keys = store.keys.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("oauth2-token-provider:v2:"), "{keys:?}");

    let all = probe(&rig, &component, Some(Inherit::ALL)).await;
    assert_eq!(all.secret, Ok(Some(true)));
    assert_eq!(all.keys.map(|k| k.len()), Ok(1));
}

#[tokio::test]
async fn outbound_http_for_another_component_needs_the_opt_in() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let component = example(&rig, PLAIN_HTTP_BUILD, "plain_http.wasm");
    let get = |inherit: Inherit| {
        let (rig, component) = (&rig, &component);
        let authority = server.addr().to_string();
        async move {
            let (mut store, instance) = rig
                .host
                .instantiate_other_with(component, inherit)
                .await
                .unwrap();
            let (status,): (Result<u16, String>,) = call(
                &mut store,
                &instance,
                "example:plain-http/fetch@0.1.0",
                "get",
                (authority, "/api/orders".to_string(), "Bearer x".to_string()),
            )
            .await;
            status
        }
    };
    let denied = get(Inherit::NOTHING).await;
    assert!(
        denied
            .as_ref()
            .is_err_and(|e| e.contains("HttpRequestDenied")),
        "{denied:?}"
    );
    assert!(server.api_requests().is_empty());
    let allowed = get(Inherit::NOTHING.outbound_http()).await;
    assert!(allowed.is_ok(), "{allowed:?}");
    assert_eq!(server.api_requests().len(), 1);
}
