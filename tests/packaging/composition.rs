//! Composition: a consumer component that imports `oauth2:token-provider/provider` is
//! plugged with the provider (wac-graph, what `wac plug` does), and the composed
//! component fetches and caches a token inside the host.

use crate::common::*;
use token_provider_host::components::EMBEDDED_COMPONENT;
use token_provider_host::testkit::testserver::MockServer;
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};
use wasmtime::component::Component;

const CONSUMER_BUILD: &str = "cargo build --manifest-path examples/consumer/Cargo.toml --target wasm32-wasip2 --release --target-dir target/examples";

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

async fn describe(rig: &Rig, component: &Component, scopes: &[&str]) -> Result<String, String> {
    let (mut store, instance) = rig.host.instantiate_other(component).await.unwrap();
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

    let first = describe(&rig, &component, &["read"]).await.unwrap();
    assert!(first.starts_with("Bearer token, "), "{first}");
    assert!(
        first.contains("scopes [read]") && first.ends_with("source fresh"),
        "{first}"
    );
    let second = describe(&rig, &component, &["read"]).await.unwrap();
    assert!(second.ends_with("source store"), "{second}");
    assert_eq!(server.token_requests().len(), 1);
    assert_eq!(
        std::str::from_utf8(&server.token_requests()[0].body).unwrap(),
        "grant_type=client_credentials&scope=read"
    );
}
