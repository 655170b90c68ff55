//! Both flavors, built from one source, behave the same in the project's host (which
//! implements both sets of draft imports over one store).

use crate::common::*;
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{Flavor, TokenRequest, TokenSource};

#[tokio::test]
async fn both_flavors_fetch_cache_share_and_call() {
    for flavor in [Flavor::Spin, Flavor::Wasmtime] {
        let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
        let rig = rig_full(&server, &[("scope", "read")], None, flavor);
        let req = TokenRequest::default_request();
        let mut a = rig.host.instance().await.unwrap();
        let first = a.get_token(&req).await.unwrap().unwrap();
        assert_eq!(first.source, TokenSource::Fresh, "{flavor:?}");
        let again = a.get_token(&req).await.unwrap().unwrap();
        assert_eq!(again.source, TokenSource::Memory, "{flavor:?}");
        let mut b = rig.host.instance().await.unwrap();
        let shared = b.get_token(&req).await.unwrap().unwrap();
        assert_eq!(
            (shared.source, shared.token.as_str()),
            (TokenSource::Store, first.token.as_str()),
            "{flavor:?}"
        );
        let api = api_get(server.url("/api/x"));
        assert_eq!(
            b.send(&api).await.unwrap().unwrap().status,
            200,
            "{flavor:?}"
        );
        assert_eq!(server.token_requests().len(), 1, "{flavor:?}");
        assert_eq!(rig.kv.len("default"), 1, "{flavor:?}");
    }
}

#[tokio::test]
async fn flavors_read_each_others_cache_entries() {
    // Same key format and encryption: a Spin-flavor instance and a wasmtime-flavor
    // instance sharing one store share tokens.
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let spin = rig_full(&server, &[], None, Flavor::Spin);
    let kv: std::sync::Arc<dyn token_provider_host::kv::KvBackend> =
        std::sync::Arc::new(spin.kv.clone());
    let wasmtime = rig_full(&server, &[], Some(kv), Flavor::Wasmtime);
    let req = TokenRequest::default_request();
    let t = token(&spin.host, &req).await.unwrap();
    let u = token(&wasmtime.host, &req).await.unwrap();
    assert_eq!(u.source, TokenSource::Store);
    assert_eq!(t.token, u.token);
    assert_eq!(server.token_requests().len(), 1);
}
