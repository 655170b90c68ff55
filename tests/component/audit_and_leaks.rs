//! Two properties over every scenario of the suite, run with recognisable secrets:
//! 1. no secret and no issued token appears in any audit line, any error (Display and
//!    Debug), or the Debug/Display of the core's configuration and token types;
//! 2. every audit line the component emits matches the schema in docs/audit-log.md (and
//!    so do that page's example lines).

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use token_provider_core::{
    AccessToken, Outcome, Settings, TokenRequest as CoreRequest,
    internal::{CacheKey, Entry, Secret, TokenParams},
};
use token_provider_host::kv::KvBackend;
use token_provider_host::testkit::FailingKv;
use token_provider_host::testkit::testserver::{Canned, MockServer};
use token_provider_host::{ApiRequest, ProviderError, TokenRequest, describe};

const WRONG_SECRET: &str = "WRONG-secret-canary-51d0";

/// Everything a scenario produced that a person or a log collector could see.
#[derive(Default)]
struct Seen {
    texts: Vec<String>,
    audit: Vec<String>,
}

impl Seen {
    fn error(&mut self, e: &ProviderError) {
        self.texts.push(describe(e));
        self.texts.push(format!("{e:?}"));
    }
    fn rig(&mut self, rig: &Rig) {
        self.audit.extend(
            String::from_utf8_lossy(&rig.log.contents())
                .lines()
                .map(str::to_string),
        );
    }
}

fn settings_of(server: &MockServer, extra: &[(&str, &str)]) -> Settings {
    let base = base_config(server);
    let mut pairs: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(extra);
    Settings::from_pairs(&pairs).unwrap()
}

fn cache_key(server: &MockServer, extra: &[(&str, &str)]) -> CacheKey {
    let s = settings_of(server, extra);
    let params = TokenParams::resolve(&CoreRequest::default(), &s.provider.client).unwrap();
    s.provider.cache_key(&params)
}

/// `n` fresh instances call get-token at the same moment; each must get a token.
async fn at_once(host: &TokenHost, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                token(&host, &TokenRequest::default_request())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn run_scenarios(seen: &mut Seen) -> Vec<String> {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let get = TokenRequest::default_request();

    // Fetch, memory hit, store hit, invalidate, authorized calls, 401 → one retry.
    let basic = rig(&server, &[]);
    let mut one = basic.host.instance().await.unwrap();
    one.get_token(&get).await.unwrap().unwrap();
    one.get_token(&get).await.unwrap().unwrap();
    let mut two = basic.host.instance().await.unwrap();
    two.get_token(&get).await.unwrap().unwrap();
    two.send(&api_get(server.url("/api/orders")))
        .await
        .unwrap()
        .unwrap();
    server.revoke_all();
    two.send(&api_get(server.url("/api/orders")))
        .await
        .unwrap()
        .unwrap();
    let refused = ApiRequest {
        url: "https://api.example.com.evil.test/x".into(),
        ..api_get(server.url("/"))
    };
    seen.error(&two.send(&refused).await.unwrap().unwrap_err());
    let with_auth = ApiRequest {
        headers: vec![("Authorization".into(), b"Bearer mine".to_vec())],
        ..api_get(server.url("/api/orders"))
    };
    seen.error(&two.send(&with_auth).await.unwrap().unwrap_err());
    two.invalidate(&get).await.unwrap();
    // A corrupt stored entry.
    basic
        .kv
        .set(
            "default",
            &cache_key(&server, &[]).store_key(),
            b"TPC1 garbage garbage garbage garbage",
        )
        .await
        .unwrap();
    token(&basic.host, &get).await.unwrap();
    seen.rig(&basic);

    // Wrong secret: invalid_client, then the cooldown fails fast.
    let wrong = rig(&server, &[("client_secret", WRONG_SECRET)]);
    for _ in 0..2 {
        let e = token(&wrong.host, &get).await.unwrap_err();
        seen.error(&e);
    }
    seen.rig(&wrong);

    // 503 pages: retried, then an error.
    let flaky = rig(
        &server,
        &[("retry_base_ms", "5"), ("scope", "flaky"), ("kv_store", "")],
    );
    server.set_canned(Some(Canned {
        status: 503,
        content_type: "text/html".into(),
        body: b"<html>down</html>".to_vec(),
    }));
    seen.error(&token(&flaky.host, &get).await.unwrap_err());
    server.set_canned(None);
    seen.rig(&flaky);

    // A failing store: degraded, the token still comes back.
    let failing = rig_with_kv(
        &server,
        &[],
        Some(Arc::new(FailingKv) as Arc<dyn KvBackend>),
    );
    token(&failing.host, &get).await.unwrap();
    seen.rig(&failing);

    // Single flight: concurrent instances wait for one fetch.
    let herd = rig(&server, &[("scope", "herd")]);
    server.set_token_delay(Duration::from_millis(200));
    at_once(&herd.host, 5).await;
    server.set_token_delay(Duration::ZERO);
    seen.rig(&herd);

    // Expiry and the refresh window: 2 s tokens, no skew, renew in the last 50 %.
    let extra = [
        ("scope", "short"),
        ("expiry_skew_secs", "0"),
        ("refresh_ahead_percent", "50"),
        ("max_retries", "0"),
        // The failed renewal below is shared for the shortest window: 1 s.
        ("retry_max_delay_ms", "0"),
    ];
    let short = rig(&server, &extra);
    server.set_expires_in(Some(2.into()));
    token(&short.host, &get).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Another instance holds the lease: served at once, "busy".
    let lease_ms = 15_000u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let lease_key = cache_key(&server, &extra).lease(now_ms / lease_ms, 0);
    short.kv.set("default", &lease_key, b"1").await.unwrap();
    token(&short.host, &get).await.unwrap();
    short.kv.delete("default", &lease_key).await.unwrap();
    // Renewing fails: the valid token is still served.
    server.set_canned(Some(Canned {
        status: 500,
        content_type: "text/plain".into(),
        body: b"oops".to_vec(),
    }));
    token(&short.host, &get).await.unwrap();
    server.set_canned(None);
    // Expired, and the shared failure lapsed: fetched again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    token(&short.host, &get).await.unwrap();
    server.set_expires_in(Some(3600.into()));
    seen.rig(&short);

    // The token interceptor in front of an app with no OAuth code: a token attached,
    // a request sent on untouched, and what the app gets back.
    let intercepted = rig(&server, &[]);
    let composed = wasmtime::component::Component::new(
        intercepted.host.engine(),
        crate::common::p3::with_interceptor(crate::common::p3::p3_app()),
    )
    .unwrap();
    for (to, headers) in [
        (server.origin(), &[][..]),
        (
            server.origin(),
            &[("authorization", "Bearer the-apps-own")][..],
        ),
        ("http://127.0.0.1:9".to_string(), &[][..]),
    ] {
        let answer = intercepted
            .host
            .handle_http(
                &composed,
                token_provider_host::Inherit::ALL,
                crate::common::p3::forward("GET", "/api/orders", &to, headers, b""),
            )
            .await
            .unwrap();
        seen.texts.push(format!("{answer:?}"));
    }
    seen.rig(&intercepted);

    // Discovery: the server's metadata (after the RFC 8414 URL's 404), and an issuer
    // with none.
    let discovered = rig(
        &server,
        &[
            ("token_url", ""),
            ("issuer", &server.origin()),
            ("auth_method", "auto"),
            ("scope", "discovered"),
        ],
    );
    token(&discovered.host, &get).await.unwrap();
    seen.rig(&discovered);
    let nowhere = rig(
        &server,
        &[
            ("token_url", ""),
            ("issuer", &format!("{}/nowhere", server.origin())),
        ],
    );
    seen.error(&token(&nowhere.host, &get).await.unwrap_err());
    seen.rig(&nowhere);

    // DPoP: the token endpoint and the API each ask for a nonce (a `dpop.nonce` line
    // each, naming the server, never the value).
    server.set_dpop_nonces(Some("as-nonce-canary"), Some("rs-nonce-canary"));
    let dpop = rig(&server, &[("dpop", "on"), ("scope", "dpop")]);
    let answer = send(&dpop.host, &api_get(server.url("/api/dpop")))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    seen.rig(&dpop);
    server.set_dpop_nonces(None, None);

    // Configuration errors.
    let broken = rig(
        &server,
        &[
            ("token_url", "http://x.example/token?secret=1"),
            ("allow_insecure_http", "false"),
        ],
    );
    seen.error(&token(&broken.host, &get).await.unwrap_err());

    server.issued_tokens()
}

/// docs/audit-log.md: field → type, event → outcomes, example lines.
type Schema = (
    BTreeMap<String, String>,
    BTreeMap<String, BTreeSet<String>>,
    Vec<String>,
);

fn audit_log_schema() -> Schema {
    let page = std::fs::read_to_string(repo_root().join("docs/audit-log.md"))
        .expect("docs/audit-log.md holds the audit log schema");
    let unquote = |c: &str| c.trim().trim_matches('`').to_string();
    let mut fields = BTreeMap::new();
    let mut events = BTreeMap::new();
    for line in page.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').collect();
        let name = unquote(cells[1]);
        if name.contains('.') {
            let outcomes = cells[2].split(',').map(unquote).collect();
            events.insert(name, outcomes);
        } else {
            fields.insert(name, cells[2].trim().to_string());
        }
    }
    let examples = page
        .split("```json")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (fields, events, examples)
}

/// The audit-log page documents exactly the core's vocabulary (`audit::Outcome`): no
/// event or outcome is missing from the page, and none is documented that the code
/// cannot emit.
#[test]
fn the_audit_log_page_lists_exactly_the_outcomes_the_code_knows() {
    let (_, documented, _) = audit_log_schema();
    let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in Outcome::ALL {
        known
            .entry(o.event().to_string())
            .or_default()
            .insert(o.name().to_string());
    }
    assert_eq!(documented, known);
}

fn check_line(
    line: &str,
    fields: &BTreeMap<String, String>,
    events: &BTreeMap<String, BTreeSet<String>>,
) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"));
    for required in [
        "source",
        "event",
        "outcome",
        "client_id",
        "token_host",
        "scopes",
    ] {
        assert!(obj.contains_key(required), "`{required}` missing: {line}");
    }
    assert_eq!(obj["source"], "token-provider", "{line}");
    for (k, value) in obj {
        let ty = fields
            .get(k)
            .unwrap_or_else(|| panic!("field `{k}` is not in docs/audit-log.md: {line}"));
        let ok = match ty.as_str() {
            "string" => value.is_string(),
            "integer" => value.is_u64(),
            "string array" => value
                .as_array()
                .is_some_and(|a| a.iter().all(|s| s.is_string())),
            other => panic!("unknown type `{other}` in docs/audit-log.md"),
        };
        assert!(ok, "`{k}` is not a {ty}: {line}");
    }
    let event = obj["event"].as_str().unwrap().to_string();
    let outcome = obj["outcome"].as_str().unwrap().to_string();
    let outcomes = events
        .get(&event)
        .unwrap_or_else(|| panic!("event `{event}` is not in docs/audit-log.md: {line}"));
    assert!(
        outcomes.contains(&outcome),
        "outcome `{outcome}` of `{event}` is not in docs/audit-log.md: {line}"
    );
    if let Some(f) = obj.get("fingerprint") {
        let f = f.as_str().unwrap();
        assert!(
            f.len() == 12 && f.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
    }
    (event, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_leaks_and_every_audit_line_matches_the_audit_log_schema() {
    let mut seen = Seen::default();
    let tokens = run_scenarios(&mut seen).await;
    assert!(
        tokens.len() >= 7,
        "the scenarios issued {} tokens",
        tokens.len()
    );

    // The core's own types, printed every way.
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let settings = settings_of(&server, &[]);
    let token = AccessToken::new(tokens[0].clone());
    let entry = Entry {
        access_token: token.clone(),
        scopes: vec!["read".into()],
        issued_at_ms: 1,
        expires_at_ms: 2,
        dpop: None,
    };
    seen.texts.push(format!("{settings:?}"));
    seen.texts.push(format!("{:?}", Secret::new(CLIENT_SECRET)));
    seen.texts.push(format!("{token:?}"));
    seen.texts.push(format!("{entry:?}"));
    seen.texts
        .push(format!("{:?}", settings.provider.cache.secret));

    let secrets = [CLIENT_SECRET, WRONG_SECRET, "nonce-canary"];
    let all: Vec<&String> = seen.texts.iter().chain(&seen.audit).collect();
    assert!(
        all.len() > 60,
        "only {} texts and lines to check",
        all.len()
    );
    for text in &all {
        for s in secrets {
            assert!(!text.contains(s), "a secret leaked: {text}");
        }
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "a token leaked: {text}");
        }
    }

    let (fields, events, examples) = audit_log_schema();
    assert!(
        fields.len() >= 16 && events.len() >= 7,
        "{fields:?} {events:?}"
    );
    let mut covered = BTreeSet::new();
    for line in &seen.audit {
        covered.insert(check_line(line, &fields, &events));
    }
    assert_eq!(examples.len(), 9, "one docs/audit-log.md example per line");
    for line in &examples {
        check_line(line, &fields, &events);
    }
    // The scenarios reach every event, and most outcomes.
    let reached: BTreeSet<&str> = covered.iter().map(|(e, _)| e.as_str()).collect();
    let documented: BTreeSet<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(reached, documented, "covered: {covered:?}");
    for must in [
        ("token.cache", "hit"),
        ("token.cache", "miss"),
        ("token.cache", "expired"),
        ("token.cache", "rejected"),
        ("token.fetch", "ok"),
        ("token.fetch", "retry"),
        ("token.fetch", "error"),
        ("token.fetch", "cooldown"),
        ("token.lease", "waited"),
        ("token.refresh", "busy"),
        ("token.refresh", "error"),
        ("client.send", "ok"),
        ("client.send", "refused"),
        ("store.error", "degraded"),
    ] {
        assert!(
            covered.contains(&(must.0.to_string(), must.1.to_string())),
            "no {must:?} line in: {covered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_never_interleave_audit_lines() {
    // Forty instances log at once into one shared stderr; every line must stay whole.
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    server.set_token_delay(Duration::from_millis(50));
    let shared = rig(&server, &[("kv_store", "")]);
    at_once(&shared.host, 40).await;
    let lines = audit_lines(&shared.log);
    assert_eq!(
        lines.iter().filter(|l| l["event"] == "token.fetch").count(),
        40
    );
}

/// Client assertions are credentials too: with `client_secret_jwt`, `private_key_jwt`
/// (ES256 and PS256) and a federated `client_assertion`, the assertion sent (its
/// signature above all), the secret, the private keys and `cache_secret` appear in no
/// error and no audit line, also when the server refuses it (the in-process server
/// checks no assertion: `invalid_client`).
#[tokio::test]
async fn client_assertions_and_private_keys_never_leak() {
    let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let rsa_pem = include_str!("../fixtures/rsa-2048.pem");
    let body = |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect() };
    let (key_body, rsa_body) = (body(&pem), body(rsa_pem));
    // A federated assertion the platform gave (the server here refuses it).
    let federated = {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256"}"#),
            b64(br#"{"sub":"system:serviceaccount:ns:app","exp":4102444800}"#),
            b64(b"platform-signature-bytes-0123456789abcdef")
        )
    };
    const CACHE_SECRET: &str = "CACHE-SECRET-the-fleet-shares-32-bytes";
    // The RSA key's certificate, as Entra ID registers it (`client_certificate`).
    let certificate = rcgen::CertificateParams::new(vec!["client.example".into()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::from_pem(rsa_pem).unwrap())
        .unwrap()
        .pem();
    for extra in [
        vec![("auth_method", "client_secret_jwt")],
        vec![
            ("auth_method", "private_key_jwt"),
            ("client_private_key", pem.as_str()),
            ("client_key_id", "k1"),
        ],
        vec![
            ("auth_method", "private_key_jwt"),
            ("client_private_key", rsa_pem),
            ("client_assertion_alg", "PS256"),
        ],
        vec![
            ("auth_method", "private_key_jwt"),
            ("client_private_key", rsa_pem),
            ("client_assertion_alg", "PS256"),
            ("client_certificate", certificate.as_str()),
        ],
        vec![
            ("auth_method", "client_assertion"),
            ("client_assertion", federated.as_str()),
            ("cache_secret", CACHE_SECRET),
        ],
    ] {
        let rig = rig(&server, &extra);
        let (e, sent) = refused(&server, &rig, "invalid_client").await;
        let assertion = sent
            .form()
            .into_iter()
            .find(|(k, _)| k == "client_assertion")
            .expect("an assertion was sent")
            .1;
        let signature = assertion.rsplit('.').next().unwrap().to_string();
        assert!(signature.len() > 40, "{assertion}");
        let needles = [
            assertion.as_str(),
            &signature,
            CLIENT_SECRET,
            &key_body[..40],
            &rsa_body[..40],
            CACHE_SECRET,
        ];
        assert_none_in_error_or_log(&e, &rig, &needles, &format!("{extra:?}"));
    }
    // The key and its certificate in one PEM file, given as both (some tools write
    // them so): the certificate is found in it, and neither shows anywhere.
    let combined = format!("{rsa_pem}{certificate}");
    let combined_rig = rig(
        &server,
        &[
            ("auth_method", "private_key_jwt"),
            ("client_private_key", &combined),
            ("client_assertion_alg", "PS256"),
            ("client_certificate", &combined),
        ],
    );
    let (e, _) = refused(&server, &combined_rig, "invalid_client").await;
    let cert_body = body(&certificate);
    let needles = [&rsa_body[..40], &cert_body[..40]];
    assert_none_in_error_or_log(&e, &combined_rig, &needles, "combined");
    // `grant = jwt_bearer` from a service account's key file (the server here does not
    // take the grant: `unsupported_grant_type`): the grant's assertion, its signature,
    // the file's key and the file itself appear nowhere.
    let file = serde_json::json!({
        "type": "service_account",
        "private_key_id": "leak-kid",
        "private_key": rsa_pem,
        "client_email": "leak@token-provider-tests.iam.gserviceaccount.com",
        "token_uri": server.url("/token"),
    })
    .to_string();
    let rig = rig(
        &server,
        &[
            ("token_url", ""),
            ("client_id", ""),
            ("client_secret", ""),
            ("grant", "jwt_bearer"),
            ("auth_method", "none"),
            ("service_account_key", &file),
        ],
    );
    let (e, sent) = refused(&server, &rig, "unsupported_grant_type").await;
    let assertion = sent
        .form()
        .into_iter()
        .find(|(k, _)| k == "assertion")
        .expect("the grant's assertion was sent")
        .1;
    let signature = assertion.rsplit('.').next().unwrap().to_string();
    let needles = [
        assertion.as_str(),
        &signature,
        &rsa_body[..40],
        "leak-kid\",\"private_key",
    ];
    assert_none_in_error_or_log(&e, &rig, &needles, "jwt_bearer");
    // `grant = token_exchange` (the server here does not take it either): the subject
    // token appears nowhere, nor its signature.
    let subject = {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256"}"#),
            b64(br#"{"iss":"https://k8s","sub":"system:serviceaccount:ns:app","exp":4102444800}"#),
            b64(b"subject-signature-bytes-0123456789abcdef")
        )
    };
    let exchange = crate::common::rig(
        &server,
        &[("grant", "token_exchange"), ("subject_token", &subject)],
    );
    let (e, sent) = refused(&server, &exchange, "unsupported_grant_type").await;
    assert!(
        sent.form()
            .contains(&("subject_token".to_string(), subject.clone()))
    );
    let signature = subject.rsplit('.').next().unwrap().to_string();
    assert_none_in_error_or_log(&e, &exchange, &[&subject, &signature], "token_exchange");
}

/// A token request of `rig` that `server` refuses with the OAuth error `code`: the
/// error, and the request as it was sent.
async fn refused(
    server: &MockServer,
    rig: &Rig,
    code: &str,
) -> (
    ProviderError,
    token_provider_host::testkit::testserver::Recorded,
) {
    let e = token(&rig.host, &TokenRequest::default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Oauth(o) if o.error == code),
        "{e:?}"
    );
    (e, server.token_requests().pop().unwrap())
}

/// None of `needles` in the error `e` (as the host describes it and as `Debug` shows
/// it) or in any line of `rig`'s audit log, which has at least one line.
fn assert_none_in_error_or_log(e: &ProviderError, rig: &Rig, needles: &[&str], case: &str) {
    let mut seen = vec![describe(e), format!("{e:?}")];
    seen.extend(
        String::from_utf8_lossy(&rig.log.contents())
            .lines()
            .map(str::to_string),
    );
    assert!(seen.len() >= 3, "{seen:?}");
    for text in &seen {
        for needle in needles {
            assert!(!text.contains(needle), "{case} leaked: {text}");
        }
    }
}
