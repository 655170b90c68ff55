//! The component inside wasmtime against the in-process token server: exact wire
//! format, caching across instances, expiry, invalidation, errors.

use crate::common::*;
use token_provider_host::testkit::testserver::{Canned, MockServer};
use token_provider_host::{ProviderError, TokenRequest, TokenSource};

#[tokio::test]
async fn basic_auth_request_has_the_exact_form_and_headers() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("scope", "write read")]);
    let t = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.source, TokenSource::Fresh);
    assert_eq!(t.scopes, ["read", "write"]);

    let reqs = server.token_requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        "grant_type=client_credentials&scope=read+write"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(
        r.header("authorization").unwrap(),
        "Basic c3ZjLWNsaWVudDpTRUNSRVQtbXVzdC1uZXZlci1sZWFrLTdmM2E="
    );
}

#[tokio::test]
async fn post_auth_sends_credentials_in_the_body() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("auth_method", "client_secret_post")]);
    let result = token(&rig.host, &TokenRequest::default_request()).await;
    assert!(result.is_ok(), "{result:?}");
    let r = &server.token_requests()[0];
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.form(),
        [
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".to_string(), CLIENT_ID.to_string()),
            ("client_secret".to_string(), CLIENT_SECRET.to_string()),
        ]
    );
}

#[tokio::test]
async fn cache_hits_make_no_request_in_the_same_or_a_fresh_instance() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let req = TokenRequest::default_request();
    let mut first = rig.host.instance().await.unwrap();
    let a = first.get_token(&req).await.unwrap().unwrap();
    let b = first.get_token(&req).await.unwrap().unwrap();
    assert_eq!(b.source, TokenSource::Memory);
    let c = token(&rig.host, &req).await.unwrap();
    assert_eq!(c.source, TokenSource::Store);
    assert_eq!(
        (a.token.as_str(), a.expires_at),
        (b.token.as_str(), b.expires_at)
    );
    assert_eq!(a.token, c.token);
    assert_eq!(server.token_requests().len(), 1);
    // The store holds one entry, encrypted: the token is not in it.
    let entries = rig.kv.entries("default");
    assert_eq!(entries.len(), 1);
    assert!(entries[0].0.starts_with("oauth2-token-provider:v2:"));
    assert!(
        !entries[0]
            .1
            .windows(a.token.len())
            .any(|w| w == a.token.as_bytes())
    );
}

#[tokio::test]
async fn different_scope_sets_are_cached_apart_and_order_does_not_matter() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    let ab = inst
        .get_token(&TokenRequest::with_scopes(["a", "b"]))
        .await
        .unwrap()
        .unwrap();
    let ba = inst
        .get_token(&TokenRequest::with_scopes(["b", "a", "a"]))
        .await
        .unwrap()
        .unwrap();
    let a = inst
        .get_token(&TokenRequest::with_scopes(["a"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ab.token, ba.token);
    assert_ne!(ab.token, a.token);
    assert_eq!(server.token_requests().len(), 2);
}

#[tokio::test]
async fn short_lived_token_is_refetched_after_it_is_due() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    server.set_expires_in(Some(2.into()));
    let rig = rig(&server, &[]);
    let req = TokenRequest::default_request();
    let mut inst = rig.host.instance().await.unwrap();
    let first = inst.get_token(&req).await.unwrap().unwrap();
    // A 2 s token is served for half its life (the skew is capped at lifetime/2).
    let again = inst.get_token(&req).await.unwrap().unwrap();
    assert_eq!(again.source, TokenSource::Memory);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let renewed = inst.get_token(&req).await.unwrap().unwrap();
    assert_eq!(renewed.source, TokenSource::Fresh);
    assert_ne!(first.token, renewed.token);
    assert_eq!(server.token_requests().len(), 2);
}

#[tokio::test]
async fn invalidate_drops_memory_and_store_entries() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    let req = TokenRequest::default_request();
    let first = inst.get_token(&req).await.unwrap().unwrap();
    inst.invalidate(&req).await.unwrap();
    assert!(rig.kv.is_empty("default"));
    let second = inst.get_token(&req).await.unwrap().unwrap();
    assert_eq!(second.source, TokenSource::Fresh);
    assert_ne!(first.token, second.token);
    assert_eq!(server.token_requests().len(), 2);
}

#[tokio::test]
async fn force_refresh_fetches_and_replaces_the_cached_token() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let req = TokenRequest::default_request();
    let mut inst = rig.host.instance().await.unwrap();
    let first = inst.get_token(&req).await.unwrap().unwrap();
    let forced = TokenRequest {
        force_refresh: true,
        ..TokenRequest::default_request()
    };
    let second = inst.get_token(&forced).await.unwrap().unwrap();
    assert_ne!(first.token, second.token);
    let third = token(&rig.host, &req).await.unwrap();
    assert_eq!(third.token, second.token);
    assert_eq!(server.token_requests().len(), 2);
}

#[tokio::test]
async fn wrong_secret_is_a_typed_invalid_client_error_without_the_secret() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("client_secret", "WRONG-secret-value")]);
    let err = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    match &err {
        ProviderError::Oauth(e) => {
            assert_eq!(e.error, "invalid_client");
            assert_eq!(e.status, 401);
            assert_eq!(
                e.error_description.as_deref(),
                Some("client authentication failed")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?}").contains("WRONG-secret-value"));
    let log = String::from_utf8_lossy(&rig.log.contents()).into_owned();
    assert!(!log.contains("WRONG-secret-value"), "{log}");
    assert!(log.contains("\"error\":\"oauth\""), "{log}");
}

#[tokio::test]
async fn missing_config_names_the_key() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("client_id", "")]);
    let err = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config(m) if m == "client_id: is required but not set"),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

/// Settings come from one `get-all`; a host without it is asked key by key, with the
/// same settings and errors that name the key.
#[tokio::test]
async fn a_host_without_config_get_all_is_asked_key_by_key() {
    use token_provider_host::{Flavor, Phases};
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let host = |flavor, get_all, (key, value): (&str, &str), phases: &Phases| {
        TokenHost::builder()
            .flavor(flavor)
            .configs(base_config(&server))
            .config(key, value)
            .config_get_all(get_all)
            .phases(phases.clone())
            .log(LogSink::Discard)
            .build()
            .unwrap()
    };
    for flavor in [Flavor::Spin, Flavor::Wasmtime] {
        let mut config_calls = Vec::new();
        for get_all in [true, false] {
            let phases = Phases::new();
            let t = token(
                &host(flavor, get_all, ("scope", "read"), &phases),
                &TokenRequest::default_request(),
            )
            .await
            .unwrap();
            assert_eq!(t.scopes, ["read"], "{flavor:?} get_all={get_all}");
            config_calls.push(phases.take()["config"].calls);
            let missing = host(flavor, get_all, ("client_id", ""), &phases);
            let err = token(&missing, &TokenRequest::default_request())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ProviderError::Config(m) if m == "client_id: is required but not set"),
                "{flavor:?} get_all={get_all}: {err:?}"
            );
        }
        // One call with get-all; one per configuration key without it.
        assert_eq!(config_calls[0], 1, "{flavor:?}");
        assert!(config_calls[1] > 20, "{flavor:?}: {config_calls:?}");
    }
    assert_eq!(server.token_requests().len(), 4);
}

#[tokio::test]
async fn plain_http_token_url_without_opt_in_is_refused_before_sending() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("allow_insecure_http", "false")]);
    let err = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config(m) if m.starts_with("token_url: plain http://")),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn html_error_page_is_a_server_error() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    server.set_canned(Some(Canned {
        status: 502,
        content_type: "text/html".into(),
        body: b"<h1>Bad Gateway</h1>".to_vec(),
    }));
    let rig = rig(&server, &[]);
    let err = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    match err {
        ProviderError::Server(e) => {
            assert_eq!(e.status, 502);
            assert_eq!(
                e.message,
                "no OAuth error in the response (text/html, 20 bytes)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn token_with_crlf_is_refused() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let body = br#"{"access_token":"abc\r\nX-Injected: 1","token_type":"Bearer"}"#.to_vec();
    server.set_canned(Some(Canned {
        status: 200,
        content_type: "application/json".into(),
        body,
    }));
    let rig = rig(&server, &[]);
    let err = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidResponse(m) if m.starts_with("access_token has characters")),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_expires_in_uses_the_default_lifetime() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    server.set_expires_in(None);
    let rig = rig(&server, &[("default_expires_in_secs", "120")]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap();
    assert!(
        (before + 119..=before + 122).contains(&t.expires_at),
        "{} vs {before}",
        t.expires_at
    );
}

#[tokio::test]
async fn audit_log_never_contains_the_secret_or_a_token() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("scope", "read")]);
    let req = TokenRequest::default_request();
    let mut tokens = Vec::new();
    let mut inst = rig.host.instance().await.unwrap();
    tokens.push(inst.get_token(&req).await.unwrap().unwrap().token);
    tokens.push(inst.get_token(&req).await.unwrap().unwrap().token);
    let mut fresh = rig.host.instance().await.unwrap();
    tokens.push(fresh.get_token(&req).await.unwrap().unwrap().token);
    let api = api_get(server.url("/api/x"));
    assert_eq!(fresh.send(&api).await.unwrap().unwrap().status, 200);
    server.revoke_all();
    assert_eq!(fresh.send(&api).await.unwrap().unwrap().status, 200);
    tokens.push(fresh.get_token(&req).await.unwrap().unwrap().token);
    fresh.invalidate(&req).await.unwrap();
    server.set_canned(Some(Canned {
        status: 400,
        content_type: "application/json".into(),
        body: br#"{"error":"invalid_scope"}"#.to_vec(),
    }));
    assert!(fresh.get_token(&req).await.unwrap().is_err());

    let lines = rig.audit_lines();
    assert!(lines.len() >= 10, "{lines:?}");
    let raw = String::from_utf8_lossy(&rig.log.contents()).into_owned();
    assert!(!raw.contains(CLIENT_SECRET));
    for t in &tokens {
        assert!(!raw.contains(t.as_str()), "token {t} in the audit log");
    }
    for l in &lines {
        assert_eq!(l["source"], "token-provider");
        assert!(
            l["event"].is_string() && l["outcome"].is_string() && l["client_id"] == CLIENT_ID,
            "{l}"
        );
    }
}

#[tokio::test]
async fn by_default_a_cache_hit_writes_no_audit_line() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("audit", "changes")]);
    let req = TokenRequest::default_request();
    token(&rig.host, &req).await.unwrap();
    let after_fetch = rig.audit_lines().len();
    assert_eq!(after_fetch, 2, "miss and fetch: {:?}", rig.audit_lines());
    for _ in 0..3 {
        token(&rig.host, &req).await.unwrap(); // fresh instances, store hits
    }
    assert_eq!(
        rig.audit_lines().len(),
        after_fetch,
        "{:?}",
        rig.audit_lines()
    );
}
