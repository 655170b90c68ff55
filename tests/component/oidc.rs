//! The component inside wasmtime against oidc-provider (a real authorization server),
//! over plain HTTP and over HTTPS with a CA generated for the run.

use crate::common::oidc::{OidcPeer, RESOURCE, TestPki, p256_client_key};
use crate::common::{LogSink, MemoryOutputPipe, api_get, audit_lines, send, token};
use token_provider_host::{ProviderError, TokenHost, TokenRequest, TokenSource};

/// A host for client `id` with `secret` against `peer` (`OidcPeer::host_builder`), then
/// `extra` (a later value of a key wins), and its audit log.
pub(crate) fn make_host(
    peer: &OidcPeer,
    pki: Option<&TestPki>,
    id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> (TokenHost, MemoryOutputPipe) {
    let log = MemoryOutputPipe::new(1 << 20);
    let mut b = peer
        .host_builder(pki, id, secret)
        .log(LogSink::Capture(log.clone()));
    for (k, v) in extra {
        b = b.config(*k, *v);
    }
    (b.build().unwrap(), log)
}

fn oauth_code(e: &ProviderError) -> (&str, u16) {
    match e {
        ProviderError::Oauth(o) => (o.error.as_str(), o.status),
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

#[tokio::test]
async fn basic_client_gets_a_token_and_the_cache_answers_the_second_instance() {
    let peer = OidcPeer::start(None);
    let (host, _) = make_host(
        &peer,
        None,
        "basic-client",
        "basic-secret",
        &[("scope", "read")],
    );
    let first = token(&host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(first.scopes, ["read"]);
    assert_eq!(first.source, TokenSource::Fresh);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 595..=now + 601).contains(&first.expires_at),
        "oidc-provider's default TTL is 600 s"
    );
    let second = token(&host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(second.source, TokenSource::Store);
    assert_eq!(second.token, first.token);
    assert_eq!(peer.stats(None).await.0, 1);
}

#[tokio::test]
async fn post_client_gets_a_token() {
    let peer = OidcPeer::start(None);
    let (host, _) = make_host(
        &peer,
        None,
        "post-client",
        "post-secret",
        &[("auth_method", "client_secret_post")],
    );
    let t = token(&host, &TokenRequest::with_scopes(["read", "write"]))
        .await
        .unwrap();
    assert_eq!(t.scopes, ["read", "write"]);
    // The secret in the body is really checked.
    let (wrong, _) = make_host(
        &peer,
        None,
        "post-client",
        "wrong",
        &[("auth_method", "client_secret_post")],
    );
    let e = token(&wrong, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), ("invalid_client", 401));
}

const JWT_SECRET: &str = "jwt-secret-0123456789abcdef-0123456789abcdef";

/// `client_secret_jwt` against a client oidc-provider registered for it: a token over
/// HTTP and over TLS (the assertion's `aud` is the token endpoint URL either way), with
/// either `typ`; a fresh assertion for a forced renewal (oidc-provider rejects a
/// replayed `jti`); a wrong secret is `invalid_client`, and the secret is in no log.
#[tokio::test]
async fn client_secret_jwt_over_http_and_tls() {
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start(pki.as_ref());
        for typ in ["JWT", "client-authentication+jwt"] {
            let (host, log) = make_host(
                &peer,
                pki.as_ref(),
                "jwt-client",
                JWT_SECRET,
                &[
                    ("auth_method", "client_secret_jwt"),
                    ("client_assertion_typ", typ),
                    ("scope", "read"),
                ],
            );
            let first = token(&host, &TokenRequest::default_request())
                .await
                .unwrap_or_else(|e| panic!("tls={tls} typ={typ}: {e:?}"));
            assert_eq!(first.scopes, ["read"]);
            let renewed = token(
                &host,
                &TokenRequest {
                    force_refresh: true,
                    ..TokenRequest::default_request()
                },
            )
            .await
            .unwrap();
            assert_ne!(renewed.token, first.token);
            assert!(!String::from_utf8_lossy(&log.contents()).contains(JWT_SECRET));
        }
        assert_eq!(peer.stats(pki.as_ref()).await.0, 4, "tls={tls}");
        let (wrong, log) = make_host(
            &peer,
            pki.as_ref(),
            "jwt-client",
            "not-the-jwt-secret-0123456789abcdef-0123456789",
            &[("auth_method", "client_secret_jwt")],
        );
        let e = token(&wrong, &TokenRequest::default_request())
            .await
            .unwrap_err();
        assert_eq!(oauth_code(&e), ("invalid_client", 401), "tls={tls}");
        assert!(!String::from_utf8_lossy(&log.contents()).contains("not-the-jwt-secret"));
        // The client is registered for client_secret_jwt only: the secret sent as
        // Basic is refused, so the assertion above is what authenticated it.
        let (basic, _) = make_host(&peer, pki.as_ref(), "jwt-client", JWT_SECRET, &[]);
        let e = token(&basic, &TokenRequest::default_request())
            .await
            .unwrap_err();
        assert_eq!(oauth_code(&e).0, "invalid_client", "tls={tls}");
    }
}

/// `private_key_jwt` (ES256) against oidc-provider holding the client's public key:
/// a token over HTTP and TLS with no client secret anywhere, a forced renewal with a
/// new assertion; another key with the same kid is `invalid_client`.
#[tokio::test]
async fn private_key_jwt_es256_over_http_and_tls() {
    let (pem, jwks) = p256_client_key("k1");
    let (other_pem, _) = p256_client_key("k1");
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start_with(pki.as_ref(), &[("PKJWT_JWKS", jwks.clone())]);
        let host_with = |key: &str| {
            make_host(
                &peer,
                pki.as_ref(),
                "pkjwt-client",
                "",
                &[
                    ("auth_method", "private_key_jwt"),
                    ("client_private_key", key),
                    ("client_key_id", "k1"),
                    ("scope", "read"),
                ],
            )
        };
        let (host, log) = host_with(&pem);
        let first = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_or_else(|e| panic!("tls={tls}: {e:?}"));
        assert_eq!(first.scopes, ["read"]);
        let renewed = token(
            &host,
            &TokenRequest {
                force_refresh: true,
                ..TokenRequest::default_request()
            },
        )
        .await
        .unwrap();
        assert_ne!(renewed.token, first.token);
        assert_eq!(peer.stats(pki.as_ref()).await.0, 2, "tls={tls}");
        let logged = String::from_utf8_lossy(&log.contents()).into_owned();
        assert!(!logged.contains("PRIVATE KEY"), "{logged}");
        let (wrong, _) = host_with(&other_pem);
        let e = token(&wrong, &TokenRequest::default_request())
            .await
            .unwrap_err();
        assert_eq!(oauth_code(&e), ("invalid_client", 401), "tls={tls}");
    }
}

const RSA_2048: &str = include_str!("../fixtures/rsa-2048.pem");
const RSA_2048_PUBLIC: &str = include_str!("../fixtures/rsa-2048.pub.pem");

/// The JWK Set of the RSA fixture's public key (kid `kid`).
fn rsa_jwks(kid: &str) -> String {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let body: String = RSA_2048_PUBLIC
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let key = rsa::PublicKey::from_public_key_der(&der).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let trim = |b: Box<[u8]>| {
        b.iter()
            .copied()
            .skip_while(|x| *x == 0)
            .collect::<Vec<u8>>()
    };
    let jwks = serde_json::json!({"keys": [{
        "kty": "RSA", "n": b64(&trim(key.n().to_be_bytes())), "e": b64(&trim(key.e().to_be_bytes())),
        "kid": kid, "use": "sig",
    }]});
    jwks.to_string()
}

/// `private_key_jwt` with an RSA key against oidc-provider holding its public JWK:
/// RS256 (the default for an RSA key) and PS256, over HTTP and TLS.
#[tokio::test]
async fn private_key_jwt_rs256_and_ps256_over_http_and_tls() {
    let jwks = rsa_jwks("rsa-1");
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start_with(pki.as_ref(), &[("PKJWT_JWKS", jwks.clone())]);
        for alg in ["", "PS256"] {
            let (host, log) = make_host(
                &peer,
                pki.as_ref(),
                "pkjwt-client",
                "",
                &[
                    ("auth_method", "private_key_jwt"),
                    ("client_private_key", RSA_2048),
                    ("client_key_id", "rsa-1"),
                    ("client_assertion_alg", alg),
                    ("audit", "all"),
                ],
            );
            token(&host, &TokenRequest::default_request())
                .await
                .unwrap_or_else(|e| panic!("tls={tls} alg={alg:?}: {e:?}"));
            let lines = audit_lines(&log);
            let fetch = lines.iter().find(|l| l["event"] == "token.fetch").unwrap();
            assert_eq!(fetch["auth_method"], "private_key_jwt");
        }
        assert_eq!(peer.stats(pki.as_ref()).await.0, 2, "tls={tls}");
    }
}

/// The default build carries no RSA: given an RSA key it fails with a configuration
/// error that names the build that has it, before any request; the host's own builder
/// runs that build for such a key (the test above).
#[tokio::test]
async fn the_default_build_refuses_an_rsa_key_and_names_the_rsa_build() {
    let host = TokenHost::builder()
        .component(token_provider_host::components::EMBEDDED_COMPONENT.to_vec())
        .config("token_url", "https://login.example/token")
        .config("client_id", "c")
        .config("auth_method", "private_key_jwt")
        .config("client_private_key", RSA_2048)
        .build()
        .unwrap();
    match token(&host, &TokenRequest::default_request()).await {
        Err(ProviderError::Config(m)) => {
            assert!(m.contains("token_provider_rsa.wasm"), "{m}");
            assert!(!m.contains("MII"), "no key material: {m}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// `issuer` instead of `token_url`, with `auth_method = auto`: oidc-provider's metadata
/// gives the token endpoint and the methods (over HTTP its RFC 8414 document; over TLS
/// the peer serves only the OpenID one, so the fallback is taken); auto picks `private_key_jwt` for a client with a key, `client_secret_jwt`
/// for one with only a secret. A second instance takes the sealed document from the
/// store. Over HTTP and TLS.
#[tokio::test]
async fn discovery_and_auto_over_http_and_tls() {
    let (pem, jwks) = p256_client_key("k1");
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let mut env = vec![("PKJWT_JWKS", jwks.clone())];
        if tls {
            env.push(("NO_RFC8414", "1".to_string()));
        }
        let peer = OidcPeer::start_with(pki.as_ref(), &env);
        let issuer = peer.base();
        let discovered = |id: &str, secret: &str, extra: &[(&str, &str)]| {
            let mut all = vec![
                ("token_url", ""),
                ("issuer", issuer.as_str()),
                ("auth_method", "auto"),
                ("audit", "all"),
            ];
            all.extend_from_slice(extra);
            make_host(&peer, pki.as_ref(), id, secret, &all)
        };
        // A key and a secret: auto must pick the key (pkjwt-client has no secret, so
        // the secret would be refused).
        let (host, log) = discovered(
            "pkjwt-client",
            "not-this-clients-secret",
            &[("client_private_key", &pem)],
        );
        let first = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_or_else(|e| panic!("tls={tls}: {e:?}"));
        assert_eq!(first.source, TokenSource::Fresh);
        let second = token(
            &host,
            &TokenRequest {
                force_refresh: true,
                ..TokenRequest::default_request()
            },
        )
        .await
        .unwrap();
        assert_ne!(second.token, first.token);
        // One document (over TLS after RFC 8414's 404); the second instance used the
        // stored one.
        let (requests, source) = match tls {
            false => (1, "/.well-known/oauth-authorization-server: token endpoint"),
            true => (2, "/.well-known/openid-configuration: token endpoint"),
        };
        assert_eq!(
            peer.discovery_requests(pki.as_ref()).await,
            requests,
            "tls={tls}"
        );
        assert_eq!(peer.stats(pki.as_ref()).await.0, 2);
        let lines = audit_lines(&log);
        let found: Vec<_> = lines
            .iter()
            .filter(|l| l["event"] == "issuer.discovery")
            .collect();
        assert_eq!(found.len(), 1, "{lines:?}");
        let detail = found[0]["detail"].as_str().unwrap();
        assert!(
            detail.contains(source) && detail.contains("private_key_jwt"),
            "{detail}"
        );
        let fetch = lines.iter().find(|l| l["event"] == "token.fetch").unwrap();
        assert_eq!(fetch["auth_method"], "private_key_jwt");

        // Only a secret: auto picks client_secret_jwt, which is what jwt-client is
        // registered for (oidc-provider refuses any other method for it).
        let (host, _) = discovered(
            "jwt-client",
            "jwt-secret-0123456789abcdef-0123456789abcdef",
            &[("scope", "read")],
        );
        let t = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_or_else(|e| panic!("tls={tls}: {e:?}"));
        assert_eq!(t.scopes, ["read"]);
    }
}

/// The metadata's `issuer` must equal the configured one exactly (RFC 8414 §3.3):
/// `localhost` names the same server as `127.0.0.1` but is not its issuer.
#[tokio::test]
async fn discovery_with_a_mismatched_issuer_is_refused() {
    let peer = OidcPeer::start(None);
    let wrong = format!("http://localhost:{}", peer.port);
    let (host, _) = make_host(
        &peer,
        None,
        "basic-client",
        "basic-secret",
        &[("token_url", ""), ("issuer", &wrong)],
    );
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    match &e {
        ProviderError::InvalidResponse(m) => assert!(
            m.contains(&format!(
                "issuer `http://127.0.0.1:{}` is not the configured `{wrong}`",
                peer.port
            )),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(peer.stats(None).await.0, 0, "no token request");
}

/// A signed JWT for `pkjwt-client` made by the test, as a platform would issue it.
fn federated_jwt(pem: &str, aud: &str, exp: u64, jti: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "pkjwt-client", "sub": "pkjwt-client", "aud": aud,
        "iat": now, "exp": exp, "jti": jti,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A federated `client_assertion` (issued outside the component) is sent as it is:
/// oidc-provider accepts it once, refuses the replayed `jti` (`invalid_client`), and an
/// expired one never leaves the component. Over HTTP and TLS.
#[tokio::test]
async fn a_federated_assertion_is_used_once_and_an_expired_one_is_refused() {
    let (pem, jwks) = p256_client_key("k1");
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start_with(pki.as_ref(), &[("PKJWT_JWKS", jwks.clone())]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let jwt = federated_jwt(&pem, &peer.token_url(), now + 300, "federated-1");
        let host_with = |assertion: &str| {
            make_host(
                &peer,
                pki.as_ref(),
                "pkjwt-client",
                "",
                &[
                    ("auth_method", "client_assertion"),
                    ("client_assertion", assertion),
                    (
                        "cache_secret",
                        "a secret the fleet shares, 32 bytes or more",
                    ),
                ],
            )
        };
        let (host, log) = host_with(&jwt);
        token(&host, &TokenRequest::default_request())
            .await
            .unwrap_or_else(|e| panic!("tls={tls}: {e:?}"));
        // The same assertion again (a renewal within its lifetime): a replayed jti.
        let e = token(
            &host,
            &TokenRequest {
                force_refresh: true,
                ..TokenRequest::default_request()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(oauth_code(&e), ("invalid_client", 401), "tls={tls}");
        assert_eq!(peer.stats(pki.as_ref()).await.0, 2);
        let logged = String::from_utf8_lossy(&log.contents()).into_owned();
        assert!(!logged.contains(&jwt), "the assertion is not logged");

        let expired = federated_jwt(&pem, &peer.token_url(), now - 10, "federated-2");
        let (host, _) = host_with(&expired);
        let e = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_err();
        match &e {
            ProviderError::Config(m) => assert!(
                m.starts_with(&format!("client_assertion: expired at {}", now - 10)),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{e:?}").contains(&expired));
        assert_eq!(peer.stats(pki.as_ref()).await.0, 2, "nothing sent");
    }
}

#[tokio::test]
async fn special_character_credentials_over_tls() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start(Some(&pki));
    let (host, _) = make_host(
        &peer,
        Some(&pki),
        "1PpG/Q 1",
        "z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw=",
        &[],
    );
    let t = token(&host, &TokenRequest::with_scopes(["read"]))
        .await
        .unwrap();
    assert_eq!(t.scopes, ["read"]);
    assert_eq!(peer.stats(Some(&pki)).await.0, 1);
}

#[tokio::test]
async fn colon_plus_percent_and_space_in_id_and_secret() {
    let peer = OidcPeer::start(None);
    let (host, _) = make_host(&peer, None, "a:b+c%d e", "p:q+r%s t&u=v", &[]);
    assert!(
        token(&host, &TokenRequest::with_scopes(["read"]))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn untrusted_certificate_is_a_transport_error() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start(Some(&pki));
    let (host, _) = make_host(&peer, None, "basic-client", "basic-secret", &[]);
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Transport(m) if m == "TLS certificate not trusted"),
        "{e:?}"
    );
}

#[tokio::test]
async fn resource_indicator_yields_a_jwt_for_that_audience_with_narrowed_scope() {
    use base64::Engine as _;
    let peer = OidcPeer::start(None);
    let (host, _) = make_host(&peer, None, "basic-client", "basic-secret", &[]);
    let req = TokenRequest {
        scopes: Some(vec!["read".into(), "write".into()]),
        resources: Some(vec![RESOURCE.into()]),
        ..TokenRequest::default_request()
    };
    let t = token(&host, &req).await.unwrap();
    // The resource server only knows `read`: the server narrowed the grant.
    assert_eq!(t.scopes, ["read"]);
    let parts: Vec<&str> = t.token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT access token");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["client_id"], "basic-client");
    assert_eq!(claims["scope"], "read");
}

#[tokio::test]
async fn invalid_client_scope_and_target_are_typed_oauth_errors() {
    let peer = OidcPeer::start(None);
    let (wrong, log) = make_host(&peer, None, "basic-client", "not-the-secret", &[]);
    let e = token(&wrong, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), ("invalid_client", 401));
    assert!(!String::from_utf8_lossy(&log.contents()).contains("not-the-secret"));

    let (host, _) = make_host(&peer, None, "basic-client", "basic-secret", &[]);
    let e = token(&host, &TokenRequest::with_scopes(["admin"]))
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), ("invalid_scope", 400));
    let req = TokenRequest {
        resources: Some(vec!["https://unknown.example.test/".into()]),
        ..TokenRequest::default_request()
    };
    let e = token(&host, &req).await.unwrap_err();
    assert_eq!(oauth_code(&e), ("invalid_target", 400));
}

#[tokio::test]
async fn short_lived_token_is_refetched() {
    let peer = OidcPeer::start(None);
    let (host, _) = make_host(&peer, None, "short-client", "short-secret", &[]);
    let first = token(&host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(
        token(&host, &TokenRequest::default_request())
            .await
            .unwrap()
            .token,
        first.token
    );
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let renewed = token(&host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(renewed.source, TokenSource::Fresh);
    assert_ne!(renewed.token, first.token);
    assert_eq!(peer.stats(None).await.0, 2);
}

#[tokio::test]
async fn revoked_token_401_leads_to_one_refresh_and_one_retry() {
    let peer = OidcPeer::start(None);
    let (host, log) = make_host(&peer, None, "basic-client", "basic-secret", &[]);
    let api = api_get(format!("{}/api/orders", peer.base()));
    let resp = send(&host, &api).await.unwrap();
    assert_eq!(resp.status, 200);
    let cached = token(&host, &TokenRequest::default_request())
        .await
        .unwrap();
    peer.revoke(&cached.token).await;
    let resp = send(&host, &api).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["client_id"], "basic-client");
    assert_eq!(
        peer.stats(None).await,
        (2, 3),
        "(token requests, API requests)"
    );
    let retried = audit_lines(&log)
        .into_iter()
        .filter(|l| {
            l["event"] == "client.send"
                && l["detail"].as_str().is_some_and(|d| d.contains("retried"))
        })
        .count();
    assert_eq!(retried, 1);
}

#[tokio::test]
async fn allow_list_and_https_refusals_send_nothing() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start(Some(&pki));
    let (host, _) = make_host(&peer, Some(&pki), "basic-client", "basic-secret", &[]);
    let mut inst = host.instance().await.unwrap();
    let e = inst
        .send(&api_get(format!("https://localhost:{}/api/x", peer.port)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Refused(m) if m.contains("not in allowed_origins")),
        "{e:?}"
    );
    let e = inst
        .send(&api_get(format!("http://127.0.0.1:{}/api/x", peer.port)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Refused(m) if m.starts_with("plain http://")),
        "{e:?}"
    );
    // A plain-HTTP token URL without the opt-in is a config error.
    let (plain, _) = host_with_http_token_url(&peer);
    let e = token(&plain, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Config(m) if m.starts_with("token_url: plain http://")),
        "{e:?}"
    );
    assert_eq!(peer.stats(Some(&pki)).await, (0, 0));
    // And the allowed https origin works.
    let ok = inst
        .send(&api_get(format!("{}/api/x", peer.base())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.status, 200);
}

fn host_with_http_token_url(peer: &OidcPeer) -> (TokenHost, MemoryOutputPipe) {
    let log = MemoryOutputPipe::new(1 << 16);
    let h = TokenHost::builder()
        .config("token_url", format!("http://127.0.0.1:{}/token", peer.port))
        .config("client_id", "basic-client")
        .config("client_secret", "basic-secret")
        .log(LogSink::Capture(log.clone()))
        .build()
        .unwrap();
    (h, log)
}

/// A Google-style service account for the test peer's `/sa/token` (its `SA_*`
/// variables) and the key file Google would hand out for it.
const SA_EMAIL: &str = "reporter@token-provider-tests.iam.gserviceaccount.com";
const SA_KID: &str = "sa-key-1";

fn sa_env() -> Vec<(&'static str, String)> {
    vec![
        ("SA_EMAIL", SA_EMAIL.to_string()),
        ("SA_PUBLIC_KEY", RSA_2048_PUBLIC.to_string()),
        ("SA_KID", SA_KID.to_string()),
    ]
}

fn sa_key_file(peer: &OidcPeer, private_key: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "token-provider-tests",
        "private_key_id": SA_KID,
        "private_key": private_key,
        "client_email": SA_EMAIL,
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/sa/token", peer.base()),
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

/// A host with `grant = jwt_bearer`, `auth_method = none` and the key file: no
/// `token_url`, `client_id` or secret of its own (the file gives them).
fn sa_host(
    peer: &OidcPeer,
    pki: Option<&TestPki>,
    file: &str,
    extra: &[(&str, &str)],
) -> (TokenHost, MemoryOutputPipe) {
    let mut all = vec![
        ("token_url", ""),
        ("grant", "jwt_bearer"),
        ("auth_method", "none"),
        ("service_account_key", file),
        ("audit", "all"),
    ];
    all.extend_from_slice(extra);
    make_host(peer, pki, "", "", &all)
}

/// `grant = jwt_bearer` with a Google service account's key file as it is, against a
/// token endpoint that checks the assertion as Google's does (the peer's `/sa/token`:
/// RS256 with the file's key and `kid`, `iss` the email, `aud` its URL, a `scope`
/// claim, no client authentication), over HTTP and TLS: the RSA build runs (the
/// file's key is RSA), the token works at the API, the audit line names the grant, a
/// subject reaches the server and is another cache key.
#[tokio::test]
async fn jwt_bearer_with_a_service_account_key_file_over_http_and_tls() {
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start_with(pki.as_ref(), &sa_env());
        let file = sa_key_file(&peer, RSA_2048);
        let (host, log) = sa_host(&peer, pki.as_ref(), &file, &[("scope", "read")]);
        let first = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_or_else(|e| panic!("tls={tls}: {e:?}"));
        assert_eq!(first.source, TokenSource::Fresh);
        let again = token(&host, &TokenRequest::default_request())
            .await
            .unwrap();
        assert_eq!(again.token, first.token, "cached");
        let lines = audit_lines(&log);
        let fetch = lines.iter().find(|l| l["event"] == "token.fetch").unwrap();
        assert_eq!(
            (&fetch["grant"], &fetch["auth_method"]),
            (&serde_json::json!("jwt_bearer"), &serde_json::json!("none"))
        );
        let answer = send(&host, &api_get(format!("{}/api/report", peer.base())))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "tls={tls}");
        // Acting for a user (domain-wide delegation): its `sub`, another token.
        let (delegated, _) = sa_host(
            &peer,
            pki.as_ref(),
            &file,
            &[
                ("scope", "read"),
                ("jwt_bearer_subject", "admin@example.com"),
            ],
        );
        let theirs = token(&delegated, &TokenRequest::default_request())
            .await
            .unwrap();
        assert_ne!(theirs.token, first.token);
        let stats = peer.stats_json(pki.as_ref()).await;
        assert_eq!(
            stats["sa_tokens"],
            serde_json::json!([
                {"sub": null, "scope": "read"},
                {"sub": "admin@example.com", "scope": "read"}
            ]),
            "tls={tls}: {stats}"
        );
        assert_eq!(stats["sa_refusals"], serde_json::json!([]));
    }
}

/// What such an endpoint refuses, and the errors the component gives: no scope
/// (Google's `invalid_scope`), a key the account does not have (`invalid_grant`), and
/// a key file that is not one, which never gets as far as a request.
#[tokio::test]
async fn jwt_bearer_refusals_and_a_bad_key_file_are_clear() {
    let peer = OidcPeer::start_with(None, &sa_env());
    let file = sa_key_file(&peer, RSA_2048);
    let (host, _) = sa_host(&peer, None, &file, &[]);
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), ("invalid_scope", 400));
    assert_eq!(
        token_provider_host::describe(&e),
        "invalid_scope (HTTP 400): Invalid OAuth scope or ID token audience provided. (the request asked for no scope)"
    );
    let (other_key, _) = p256_client_key("other");
    let wrong = sa_key_file(&peer, &other_key);
    let (host, _) = sa_host(&peer, None, &wrong, &[("scope", "read")]);
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), ("invalid_grant", 400));
    assert_eq!(
        token_provider_host::describe(&e),
        "invalid_grant (HTTP 400): Invalid JWT Signature."
    );
    let refusals = peer.stats_json(None).await["sa_refusals"].clone();
    assert_eq!(refusals.as_array().map(Vec::len), Some(2), "{refusals}");
    // A PKCS#1 key in the file (`BEGIN RSA PRIVATE KEY`): a config error naming the
    // file's field, no request.
    let pkcs1 =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n";
    let (host, _) = sa_host(
        &peer,
        None,
        &sa_key_file(&peer, pkcs1),
        &[("scope", "read")],
    );
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    let text = token_provider_host::describe(&e);
    assert!(
        text.contains("service_account_key: `private_key`: "),
        "{text}"
    );
    assert!(!text.contains("MIIEowIBAAKCAQEA"), "{text}");
    let (host, _) = sa_host(&peer, None, "not json", &[("scope", "read")]);
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    let text = token_provider_host::describe(&e);
    assert!(text.contains("service_account_key: not JSON"), "{text}");
    assert_eq!(peer.stats(None).await.0, 2, "only the two refused requests");
}

/// A security token service as GCP's is, for the test peer's `/sts/token` (its
/// `STS_*` variables): subject tokens signed with the RSA fixture by a platform
/// issuer, exchanged for the workload pool's audience.
const STS_ISSUER: &str = "https://kubernetes.token-provider.test";
const STS_AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/tests/providers/k8s";
const WORKLOAD: &str = "system:serviceaccount:reports:exporter";
/// 32 bytes the fleet shares: a subject token rotates, so this seals the cache.
const FLEET_SECRET: &str = "hQ3vZ9kWc1rYb7Tn2LxP8sJd5GmEa0Fu";

fn sts_env(answer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("STS_SUBJECT_ISSUER", STS_ISSUER.to_string()),
        ("STS_SUBJECT_KEY", RSA_2048_PUBLIC.to_string()),
        ("STS_AUDIENCE", STS_AUDIENCE.to_string()),
        ("STS_ANSWER", answer.to_string()),
    ]
}

/// A projected service-account token as the platform would mount it, valid for
/// `valid_secs` from now (negative: expired).
fn subject_token(valid_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "iss": STS_ISSUER, "sub": WORKLOAD, "aud": "sts.googleapis.com",
        "iat": now, "exp": now + valid_secs,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_2048.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A host with `grant = token_exchange` and no client authentication against the
/// peer's security token service.
fn sts_host(peer: &OidcPeer, pki: Option<&TestPki>, token: &str) -> (TokenHost, MemoryOutputPipe) {
    let url = format!("{}/sts/token", peer.base());
    // The exchange's audience is the pool's: the API's origin is bound to it.
    let bound = format!("{}={STS_AUDIENCE}", peer.base());
    make_host(
        peer,
        pki,
        "k8s-exporter",
        "",
        &[
            ("token_url", url.as_str()),
            ("origin_audiences", bound.as_str()),
            ("grant", "token_exchange"),
            ("auth_method", "none"),
            ("subject_token", token),
            ("audience", STS_AUDIENCE),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            ("cache_secret", FLEET_SECRET),
            ("audit", "all"),
        ],
    )
}

/// `grant = token_exchange` (RFC 8693) with a platform's token and no client
/// authentication, against a security token service that checks it as GCP's does
/// (the peer's `/sts/token`), over HTTP and TLS: the token works at the API, the
/// second call is the cache's, the audit line names the grant.
#[tokio::test]
async fn token_exchange_with_a_platform_token_over_http_and_tls() {
    for tls in [false, true] {
        let pki = tls.then(TestPki::generate);
        let peer = OidcPeer::start_with(pki.as_ref(), &sts_env("access_token"));
        let (host, log) = sts_host(&peer, pki.as_ref(), &subject_token(600));
        let first = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_or_else(|e| panic!("tls={tls}: {e:?}"));
        let again = token(&host, &TokenRequest::default_request())
            .await
            .unwrap();
        assert_eq!(
            (first.source, again.token),
            (TokenSource::Fresh, first.token.clone())
        );
        let lines = audit_lines(&log);
        let fetch = lines.iter().find(|l| l["event"] == "token.fetch").unwrap();
        assert_eq!(
            (&fetch["grant"], &fetch["auth_method"]),
            (
                &serde_json::json!("token_exchange"),
                &serde_json::json!("none")
            )
        );
        let answer = send(&host, &api_get(format!("{}/api/export", peer.base())))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "tls={tls}");
        let stats = peer.stats_json(pki.as_ref()).await;
        assert_eq!(
            stats["sts_tokens"],
            serde_json::json!([{"sub": WORKLOAD, "scope": "https://www.googleapis.com/auth/cloud-platform"}]),
            "tls={tls}: {stats}"
        );
    }
}

/// What must not be taken or sent: an answer that issues an ID token, one that does
/// not say what it issued, and an expired subject token, which is never sent.
#[tokio::test]
async fn token_exchange_refuses_an_id_token_a_silent_answer_and_an_expired_subject() {
    for (answer, expected) in [
        (
            "id_token",
            "issued_token_type is an ID token, not an access token",
        ),
        ("missing", "issued_token_type is missing"),
    ] {
        let peer = OidcPeer::start_with(None, &sts_env(answer));
        let (host, _) = sts_host(&peer, None, &subject_token(600));
        let e = token(&host, &TokenRequest::default_request())
            .await
            .unwrap_err();
        let text = token_provider_host::describe(&e);
        assert!(text.contains(expected), "{answer}: {text}");
    }
    let peer = OidcPeer::start_with(None, &sts_env("access_token"));
    let expired = subject_token(-60);
    let (host, _) = sts_host(&peer, None, &expired);
    let e = token(&host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    let text = token_provider_host::describe(&e);
    assert!(text.contains("subject_token: expired at"), "{text}");
    assert!(!text.contains(&expired));
    assert_eq!(
        peer.stats(None).await.0,
        0,
        "an expired subject token is never sent"
    );
}
