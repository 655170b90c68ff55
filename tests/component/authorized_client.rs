//! The authorized client inside wasmtime: allow-list, HTTPS rule, header rules,
//! 401 → one refresh and one retry, response cap.

use crate::common::*;
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{ProviderError, TokenRequest};

#[tokio::test]
async fn attaches_the_bearer_token_and_returns_the_response() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    let mut req = api_get(server.url("/api/items?x=1"));
    req.method = "POST".into();
    req.headers = vec![("x-request-id".into(), b"abc".to_vec())];
    req.body = Some(b"{\"a\":1}".to_vec());
    let resp = inst.send(&req).await.unwrap().unwrap();
    assert_eq!(resp.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["path"], "/api/items");
    assert_eq!(body["method"], "POST");
    let api = server.api_requests();
    assert_eq!(api.len(), 1);
    let t = inst
        .get_token(&TokenRequest::default_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        api[0].header("authorization"),
        Some(format!("Bearer {}", t.token).as_str())
    );
    assert_eq!(api[0].header("x-request-id"), Some("abc"));
    assert_eq!(api[0].body, b"{\"a\":1}");
    // The token is nowhere in what the caller gets back.
    assert!(
        !resp
            .headers
            .iter()
            .any(|(_, v)| { v.windows(t.token.len()).any(|w| w == t.token.as_bytes()) })
    );
}

/// A GET or HEAD without a body goes out as a plain client sends it, with no
/// `content-length` (hyper frames it the same); a POST or DELETE with an empty body
/// says `content-length: 0`, as it must, and a body says its length.
#[tokio::test]
async fn content_length_is_sent_only_where_a_request_has_a_body_to_frame() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    // (method, body, the content-length the API must see)
    type Case = (&'static str, Option<&'static [u8]>, Option<&'static str>);
    let cases: [Case; 5] = [
        ("GET", None, None),
        ("HEAD", None, None),
        ("POST", None, Some("0")),
        ("DELETE", None, Some("0")),
        ("PUT", Some(b"abc"), Some("3")),
    ];
    for (method, body, _) in cases {
        let mut req = api_get(server.url("/api/items"));
        req.method = method.into();
        req.body = body.map(<[u8]>::to_vec);
        assert_eq!(
            inst.send(&req).await.unwrap().unwrap().status,
            200,
            "{method}"
        );
    }
    let api = server.api_requests();
    assert_eq!(api.len(), cases.len());
    for (recorded, (method, _, length)) in api.iter().zip(cases) {
        assert_eq!(recorded.method, method);
        assert_eq!(recorded.header("content-length"), length, "{method}");
        assert_eq!(recorded.header("transfer-encoding"), None, "{method}");
    }
}

#[tokio::test]
async fn on_401_the_token_is_invalidated_and_the_request_retried_once() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    assert_eq!(
        inst.send(&api_get(server.url("/api/a")))
            .await
            .unwrap()
            .unwrap()
            .status,
        200
    );
    server.revoke_all();
    let resp = inst
        .send(&api_get(server.url("/api/b")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(server.token_requests().len(), 2);
    assert_eq!(server.api_requests().len(), 3);
    let retried = rig
        .audit_lines()
        .into_iter()
        .filter(|l| {
            l["event"] == "client.send"
                && l["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("retried once"))
        })
        .count();
    assert_eq!(retried, 1);
}

#[tokio::test]
async fn a_second_401_is_returned_not_retried_again() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // Tokens that are dead on arrival: the API answers 401 to every one.
    server.set_expires_in(Some(0.into()));
    let rig = rig(&server, &[]);
    let resp = send(&rig.host, &api_get(server.url("/api/x")))
        .await
        .unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(server.api_requests().len(), 2);
    assert_eq!(server.token_requests().len(), 2);
}

#[tokio::test]
async fn origins_not_on_the_allow_list_are_refused_before_anything_is_sent() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    let other_port = format!(
        "http://127.0.0.1:{}/api",
        server.addr().port().wrapping_add(1).max(1)
    );
    for url in [
        other_port.as_str(),
        "http://localhost.evil.test/api",
        "http://127.0.0.1.nip.io/api",
    ] {
        let err = inst.send(&api_get(url)).await.unwrap().unwrap_err();
        assert!(
            matches!(&err, ProviderError::Refused(m) if m.contains("is not in allowed_origins")),
            "{url}: {err:?}"
        );
    }
    assert!(
        server.requests().is_empty(),
        "nothing may be sent, not even a token request"
    );
}

#[tokio::test]
async fn a_token_for_one_apis_audience_is_never_sent_to_another_allowed_origin() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let port = server.addr().port();
    let (internal, partner) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    );
    let allowed = format!("{internal},{partner}");
    let binding = format!("{internal}=internal-api");
    let rig = rig(
        &server,
        &[
            ("allowed_origins", &allowed),
            ("origin_audiences", &binding),
            ("audience", "internal-api"),
        ],
    );
    let mut inst = rig.host.instance().await.unwrap();
    let err = inst
        .send(&api_get(format!("{partner}/api/replay")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Refused(m) if m.contains("audience `internal-api` is not bound to http://localhost")),
        "{err:?}"
    );
    assert!(
        server.requests().is_empty(),
        "nothing sent, no token fetched"
    );
    let ok = inst
        .send(&api_get(format!("{internal}/api/orders")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn plain_http_api_urls_need_the_opt_in() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    // An https token endpoint that is never reached: the API URL is refused first.
    // An http:// origin in allowed_origins is a config error that names the key.
    let rig = rig(
        &server,
        &[
            ("allow_insecure_http", "false"),
            ("token_url", "https://127.0.0.1:1/token"),
        ],
    );
    let err = send(&rig.host, &api_get(server.url("/api/x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config(m) if m.starts_with("allowed_origins: http://") && m.contains("allow_insecure_http=true")),
        "{err:?}"
    );
    // Not in allowed_origins: the plain http:// URL is refused at once all the same.
    let rig = crate::common::rig(
        &server,
        &[
            ("allow_insecure_http", "false"),
            ("token_url", "https://127.0.0.1:1/token"),
            ("allowed_origins", "https://api.example.com"),
        ],
    );
    let err = send(&rig.host, &api_get(server.url("/api/x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Refused(m) if m.starts_with("plain http://")),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn caller_authorization_and_bad_headers_are_refused() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let mut inst = rig.host.instance().await.unwrap();
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "Authorization".into(),
            b"Bearer mine".to_vec(),
            "is set by the authorized client",
        ),
        ("x-ok".into(), b"a\r\nInjected: 1".to_vec(), "CR, LF or NUL"),
        ("bad name".into(), b"v".to_vec(), "not a valid header name"),
    ];
    for (name, value, expected) in cases {
        let mut req = api_get(server.url("/api/x"));
        req.headers = vec![(name.clone(), value)];
        let err = inst.send(&req).await.unwrap().unwrap_err();
        assert!(
            matches!(&err, ProviderError::Refused(m) if m.contains(expected)),
            "{name}: {err:?}"
        );
    }
    let mut req = api_get(server.url("/api/x"));
    req.method = "GE T".into();
    assert!(matches!(
        inst.send(&req).await.unwrap().unwrap_err(),
        ProviderError::Refused(_)
    ));
    let err = inst
        .send(&api_get("https://user:pw@127.0.0.1/api"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Refused(m) if m.contains("userinfo")),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn response_body_over_the_cap_is_an_error_not_a_truncation() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[("max_response_bytes", "10")]);
    let err = send(&rig.host, &api_get(server.url("/api/x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidResponse(m) if m == "API response body larger than max_response_bytes (10)"),
        "{err:?}"
    );
}

#[tokio::test]
async fn corrupt_or_foreign_store_entries_are_misses() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let rig = rig(&server, &[]);
    let req = TokenRequest::default_request();
    token(&rig.host, &req).await.unwrap();
    let (key, mut value) = rig.kv.entries("default").remove(0);
    use token_provider_host::kv::KvBackend;
    let last = value.len() - 1;
    value[last] ^= 0xff;
    rig.kv.set("default", &key, &value).await.unwrap();
    let t = token(&rig.host, &req).await.unwrap();
    assert_eq!(t.source, token_provider_host::TokenSource::Fresh);
    rig.kv.set("default", &key, b"garbage").await.unwrap();
    let t = token(&rig.host, &req).await.unwrap();
    assert_eq!(t.source, token_provider_host::TokenSource::Fresh);
    assert_eq!(server.token_requests().len(), 3);
    let rejected: Vec<_> = rig
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "token.cache" && l["outcome"] == "rejected")
        .map(|l| l["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        rejected,
        [
            "stored entry rejected (undecryptable)",
            "stored entry rejected (unknown-format)"
        ]
    );
}
