//! DPoP (RFC 9449) against oidc-provider, whose token endpoint binds tokens to the
//! proof's key and whose test API (`tests/peers/oidc/server.mjs`) verifies every proof:
//! signature, `typ`, `jwk`, `htm`, `htu`, `iat`, `jti` replay, `ath`, `cnf.jkt`, and
//! with `API_DPOP_NONCE` its own nonce. Over HTTP and TLS, with and without nonces.

use crate::common::oidc::{OidcPeer, TestPki, p256_client_key};
use crate::common::{LogSink, MemoryOutputPipe, api_get, audit_lines, send, token};
use std::sync::Arc;
use token_provider_host::kv::{KvBackend, MemoryKv};
use token_provider_host::{ProviderError, TokenHost, TokenRequest, TokenSource};

fn dpop_host(
    peer: &OidcPeer,
    pki: Option<&TestPki>,
    kv: &Arc<MemoryKv>,
    extra: &[(&str, &str)],
) -> (TokenHost, MemoryOutputPipe) {
    let log = MemoryOutputPipe::new(1 << 20);
    let mut b = TokenHost::builder()
        .config("token_url", peer.token_url())
        .config("client_id", "basic-client")
        .config("client_secret", "basic-secret")
        .config("allow_insecure_http", (!peer.tls).to_string())
        .config("allowed_origins", peer.base())
        .config("dpop", "on")
        .config("audit", "all")
        .kv(kv.clone() as Arc<dyn KvBackend>)
        .log(LogSink::Capture(log.clone()));
    for (k, v) in extra {
        b = b.config(*k, *v);
    }
    if let Some(pki) = pki {
        use rustls_pki_types::pem::PemObject;
        b = b.trust([
            rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap(),
        ]);
    }
    (b.build().unwrap(), log)
}

/// The API's answer as JSON.
fn body(resp: &token_provider_host::ApiResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|_| panic!("{}: {}", resp.status, String::from_utf8_lossy(&resp.body)))
}

#[tokio::test]
async fn a_generated_key_binds_the_token_and_every_api_call_proves_it_over_http_and_tls() {
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start(pki.as_ref());
        let kv = Arc::new(MemoryKv::new());
        let (host, log) = dpop_host(&peer, pki.as_ref(), &kv, &[]);
        let t = token(&host, &TokenRequest::default_request())
            .await
            .unwrap();
        assert_eq!(t.token_type, "DPoP", "tls {tls}");
        // Three API calls from three instances: the token and key from the store.
        for i in 0..3 {
            let resp = send(&host, &api_get(format!("{}/api/orders?n={i}", peer.base())))
                .await
                .unwrap();
            assert_eq!(resp.status, 200, "tls {tls}: {:?}", body(&resp));
            assert_eq!(body(&resp)["token_type"], "DPoP");
        }
        assert_eq!(peer.dpop_stats(pki.as_ref()).await, (3, vec![]));
        assert_eq!(peer.stats(pki.as_ref()).await, (1, 3), "one token request");
        // A caller that sends the token itself: `dpop.proof`.
        let mut inst = host.instance().await.unwrap();
        let proven = inst
            .dpop_proof(
                &TokenRequest::default_request(),
                "GET",
                &format!("{}/api/self", peer.base()),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(proven.token.token, t.token);
        assert_eq!(proven.token.source, TokenSource::Store);
        assert_eq!(proven.proof.split('.').count(), 3);
        // No key material and no proof in the audit log.
        let lines = audit_lines(&log);
        let text = format!("{lines:?}");
        assert!(!text.contains(&proven.proof) && !text.contains(&t.token));
        assert!(!text.contains("\"d\""), "{text}");
    }
}

#[tokio::test]
async fn nonces_of_the_token_endpoint_and_the_api_cost_one_round_trip_each_for_the_fleet() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start_with(
        Some(&pki),
        &[("DPOP_NONCE", "1".into()), ("API_DPOP_NONCE", "1".into())],
    );
    let kv = Arc::new(MemoryKv::new());
    let (host, log) = dpop_host(&peer, Some(&pki), &kv, &[]);
    let t = token(&host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(
        peer.stats(Some(&pki)).await.0,
        2,
        "use_dpop_nonce, then the token"
    );
    // Seven calls, each from a fresh instance: the first learns the API's nonce (one
    // 401 answered at once); the rest read it from the store; the server's new nonce
    // after the fifth comes with a 200 and is used from the sixth on.
    for i in 0..7 {
        let resp = send(&host, &api_get(format!("{}/api/n{i}", peer.base())))
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "call {i}: {:?}", body(&resp));
    }
    let (ok, refusals) = peer.dpop_stats(Some(&pki)).await;
    assert_eq!((ok, refusals), (7, vec!["use_dpop_nonce".to_string()]));
    // A forced renewal by another instance uses the stored token-endpoint nonce: no
    // second use_dpop_nonce round trip.
    let mut inst = host.instance().await.unwrap();
    let renewed = inst
        .get_token(&TokenRequest {
            force_refresh: true,
            ..TokenRequest::default_request()
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.token_type, "DPoP");
    assert_eq!(peer.stats(Some(&pki)).await.0, 3);
    let nonce_lines: Vec<_> = audit_lines(&log)
        .into_iter()
        .filter(|l| l["event"] == "dpop.nonce")
        .collect();
    assert!(nonce_lines.len() >= 3, "{nonce_lines:?}");
    for l in &nonce_lines {
        assert_eq!(l["outcome"], "new");
        assert!(l["detail"].as_str().unwrap().contains("127.0.0.1"), "{l}");
    }
}

#[tokio::test]
async fn configured_es256_and_rs256_keys_over_tls() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start(Some(&pki));
    let (p256, _) = p256_client_key("unused");
    let rsa = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rsa-2048.pem"),
    )
    .unwrap();
    for (pem, alg) in [(p256.as_str(), "ES256"), (rsa.as_str(), "RS256")] {
        let kv = Arc::new(MemoryKv::new());
        let (host, _) = dpop_host(&peer, Some(&pki), &kv, &[("dpop_private_key", pem)]);
        let resp = send(&host, &api_get(format!("{}/api/{alg}", peer.base())))
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{alg}: {:?}", body(&resp));
        let mut inst = host.instance().await.unwrap();
        let proven = inst
            .dpop_proof(
                &TokenRequest::default_request(),
                "POST",
                &format!("{}/x", peer.base()),
            )
            .await
            .unwrap()
            .unwrap();
        let header = proven.proof.split('.').next().unwrap();
        use base64::Engine as _;
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
    }
    let (ok, refusals) = peer.dpop_stats(Some(&pki)).await;
    assert_eq!((ok, refusals), (2, vec![]));
}

#[tokio::test]
async fn a_server_that_ignores_the_proof_is_an_error_unless_bearer_is_allowed() {
    let peer = OidcPeer::start_with(None, &[("DPOP_OFF", "1".into())]);
    let kv = Arc::new(MemoryKv::new());
    let (host, _) = dpop_host(&peer, None, &kv, &[]);
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::InvalidResponse(m) if m.contains("ignored the proof")),
        "{e:?}"
    );
    let (lenient, _) = dpop_host(&peer, None, &kv, &[("dpop_require_binding", "false")]);
    let t = token(&lenient, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(t.token_type, "Bearer");
    let resp = send(&lenient, &api_get(format!("{}/api/plain", peer.base())))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(body(&resp)["token_type"], "Bearer");
    // A Bearer token gets no proof.
    let mut inst = lenient.instance().await.unwrap();
    let e = inst
        .dpop_proof(&TokenRequest::default_request(), "GET", &peer.base())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Refused(m) if m.contains("Bearer token")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_cold_fleet_makes_one_token_request_and_one_key_and_every_proof_matches_it() {
    const N: usize = 8;
    let peer = OidcPeer::start(None);
    let kv = Arc::new(MemoryKv::new());
    let (host, _) = dpop_host(&peer, None, &kv, &[]);
    let mut instances = Vec::new();
    for _ in 0..N {
        instances.push(host.instance().await.unwrap());
    }
    let tasks: Vec<_> = instances
        .into_iter()
        .enumerate()
        .map(|(i, mut inst)| {
            let url = format!("{}/api/fleet/{i}", peer.base());
            tokio::spawn(async move { inst.send(&api_get(url)).await.unwrap().map(|r| r.status) })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(200)));
    }
    assert_eq!(peer.stats(None).await, (1, N as u64), "one token request");
    // Every proof verified against the token's cnf.jkt: one key for the fleet.
    assert_eq!(peer.dpop_stats(None).await, (N as u64, vec![]));
    let key_records = kv
        .entries("default")
        .into_iter()
        .filter(|(k, _)| k.contains(":dpop-key:"))
        .count();
    assert_eq!(key_records, 1);
}

#[tokio::test]
async fn a_rotated_key_is_a_new_cache_and_the_old_token_never_goes_with_it() {
    let peer = OidcPeer::start(None);
    let kv = Arc::new(MemoryKv::new());
    let (old_pem, _) = p256_client_key("old");
    let (new_pem, _) = p256_client_key("new");
    let (old, _) = dpop_host(&peer, None, &kv, &[("dpop_private_key", &old_pem)]);
    let first = token(&old, &TokenRequest::default_request()).await.unwrap();
    let (rotated, _) = dpop_host(&peer, None, &kv, &[("dpop_private_key", &new_pem)]);
    let second = token(&rotated, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(second.source, TokenSource::Fresh, "not the old key's token");
    assert_ne!(second.token, first.token);
    let resp = send(&rotated, &api_get(format!("{}/api/rotated", peer.base())))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{:?}", body(&resp));
    assert_eq!(peer.dpop_stats(None).await, (1, vec![]));
}
