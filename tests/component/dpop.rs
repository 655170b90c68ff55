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
    let mut b = peer
        .host_builder(pki, "basic-client", "basic-secret")
        .config("dpop", "on")
        .config("audit", "all")
        .kv(kv.clone() as Arc<dyn KvBackend>)
        .log(LogSink::Capture(log.clone()));
    for (k, v) in extra {
        b = b.config(*k, *v);
    }
    (b.build().unwrap(), log)
}

/// `dpop.proof` for the default request on a fresh instance of `host`.
async fn proof(host: &TokenHost, method: &str, url: &str) -> token_provider_host::Proven {
    let mut inst = host.instance().await.unwrap();
    inst.dpop_proof(&TokenRequest::default_request(), method, url)
        .await
        .unwrap()
        .unwrap()
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
        let proven = proof(&host, "GET", &format!("{}/api/self", peer.base())).await;
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
        let proven = proof(&host, "POST", &format!("{}/x", peer.base())).await;
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

mod test_kit {
    //! The same against the test kit's server (`testkit::testserver` with
    //! `testkit::dpop`'s checker), which can also be hostile.
    use super::*;
    use crate::common::{CLIENT_ID, CLIENT_SECRET};
    use token_provider_host::testkit::testserver::MockServer;

    fn kit_host(
        server: &MockServer,
        kv: &Arc<MemoryKv>,
        extra: &[(&str, &str)],
    ) -> (TokenHost, MemoryOutputPipe) {
        let log = MemoryOutputPipe::new(1 << 20);
        let mut b = TokenHost::builder()
            .config("token_url", server.url("/token"))
            .config("client_id", CLIENT_ID)
            .config("client_secret", CLIENT_SECRET)
            .config("allow_insecure_http", "true")
            .config("allowed_origins", server.origin())
            .config("dpop", "on")
            .config("audit", "all")
            .kv(kv.clone() as Arc<dyn KvBackend>)
            .log(LogSink::Capture(log.clone()));
        for (k, v) in extra {
            b = b.config(*k, *v);
        }
        (b.build().unwrap(), log)
    }

    /// That the API answered request `i` with 200 (else its answer).
    fn ok(i: usize, resp: &token_provider_host::ApiResponse) {
        let body = String::from_utf8_lossy(&resp.body);
        assert_eq!(resp.status, 200, "{i}: {body}");
    }

    #[tokio::test]
    async fn every_proof_verifies_and_the_token_is_bound_to_the_stored_key() {
        let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
        server.set_dpop_nonces(Some("as-nonce-1"), Some("rs-nonce-1"));
        let kv = Arc::new(MemoryKv::new());
        let (host, log) = kit_host(&server, &kv, &[]);
        for i in 0..3 {
            let resp = send(&host, &api_get(server.url(&format!("/api/k/{i}?q=1"))))
                .await
                .unwrap();
            ok(i, &resp);
        }
        let (verified, refusals) = server.dpop_stats();
        assert_eq!(
            verified, 4,
            "a token request and three API calls: {refusals:?}"
        );
        assert_eq!(refusals, ["token: use_dpop_nonce", "api: use_dpop_nonce"]);
        let token = server.issued_tokens()[0].clone();
        let jkt = server.bound_to(&token).unwrap();
        // A key record that is not a key: a miss, a new key, a new token bound to it.
        for (name, _) in kv.entries("default") {
            if name.contains(":dpop-key:") {
                kv.set("default", &name, b"not a sealed key").await.unwrap();
            }
        }
        let again = token_of(&host).await;
        assert_eq!(again.source, TokenSource::Fresh);
        let new_jkt = server.bound_to(&again.token).unwrap();
        assert_ne!(new_jkt, jkt);
        let resp = send(&host, &api_get(server.url("/api/after")))
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        let lines = String::from_utf8_lossy(&log.contents()).into_owned();
        assert!(lines.contains("dpop-key record does not open"), "{lines}");
        assert!(
            !lines.contains(&token)
                && !lines.contains("as-nonce-1")
                && !lines.contains("rs-nonce-1")
        );
    }

    /// One instance that signs many proofs, one after another, each with `k·G` from the
    /// comb's static table (`token_provider_es256`): every proof verifies.
    #[tokio::test]
    async fn every_proof_an_instance_signs_one_after_another_verifies() {
        let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
        let kv = Arc::new(MemoryKv::new());
        let (host, _log) = kit_host(&server, &kv, &[]);
        let mut instance = host.instance().await.unwrap();
        for i in 0..8 {
            let request = api_get(server.url(&format!("/api/often/{i}")));
            ok(i, &instance.send(&request).await.unwrap().unwrap());
        }
        let (verified, refusals) = server.dpop_stats();
        assert_eq!(
            verified, 9,
            "a token request and eight API calls: {refusals:?}"
        );
        assert!(refusals.is_empty(), "{refusals:?}");
    }

    async fn token_of(host: &TokenHost) -> token_provider_host::AccessToken {
        token(host, &TokenRequest::default_request()).await.unwrap()
    }

    #[tokio::test]
    async fn hostile_nonces_are_never_sent_back_and_a_nonce_loop_ends_after_two_requests() {
        for (nonce, rotates) in [
            ("n".repeat(600), false),
            ("caf\u{e9}-nonce".to_string(), false),
            ("two words".to_string(), false),
            ("first".to_string(), true),
        ] {
            let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
            server.set_dpop_nonces(Some(&nonce), None);
            server.set_dpop_nonce_rotates(rotates);
            let kv = Arc::new(MemoryKv::new());
            let (host, log) = kit_host(&server, &kv, &[]);
            let e = token(&host, &TokenRequest::default_request())
                .await
                .unwrap_err();
            let text = token_provider_host::describe(&e);
            let (requests, why) = if rotates {
                (2, "again right after")
            } else {
                (1, "sent none that may be used")
            };
            assert_eq!(server.token_requests().len(), requests, "{text}");
            assert!(text.contains(why), "{text}");
            assert!(!text.contains(nonce.as_str()), "{text}");
            let lines = String::from_utf8_lossy(&log.contents()).into_owned();
            assert!(!lines.contains(&nonce), "{lines}");
        }
    }

    #[tokio::test]
    async fn the_configured_key_never_shows_in_a_line_an_error_or_a_result() {
        let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
        let (pem, _) = crate::common::oidc::p256_client_key("leak");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let kv = Arc::new(MemoryKv::new());
        let (host, log) = kit_host(&server, &kv, &[("dpop_private_key", &pem)]);
        let t = token_of(&host).await;
        assert_eq!(t.token_type, "DPoP");
        let proven = proof(&host, "GET", &server.url("/api/x")).await;
        // A bad key: the error names the key, shows none of it.
        let mut bad = pem.clone();
        bad.replace_range(40..48, "AAAAAAAA");
        let (broken, _) = kit_host(&server, &kv, &[("dpop_private_key", &bad)]);
        let e = token(&broken, &TokenRequest::default_request())
            .await
            .unwrap_err();
        let text = token_provider_host::describe(&e);
        assert!(text.contains("dpop_private_key"), "{text}");
        let lines = String::from_utf8_lossy(&log.contents()).into_owned();
        for (what, haystack) in [("log", &lines), ("error", &text), ("proof", &proven.proof)] {
            for chunk in body.as_bytes().chunks(16) {
                let chunk = std::str::from_utf8(chunk).unwrap();
                assert!(
                    !haystack.contains(chunk),
                    "{what} holds key material {chunk}"
                );
            }
        }
        // The proof carries the public key only.
        use base64::Engine as _;
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(proven.proof.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(header["jwk"].get("d").is_none());
    }
}
