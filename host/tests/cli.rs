//! The `token-provider` binary: token (against oidc-provider over TLS), call, demo,
//! exit codes and what it prints.

#[path = "../../tests/common/oidc.rs"]
mod oidc;

use oidc::{OidcPeer, TestPki, p256_client_key};
use std::process::{Command, Output};

const SPECIAL_ID: &str = "1PpG/Q 1";
const SPECIAL_SECRET: &str = "z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw=";

fn cli(args: &[&str], secret: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_token-provider"))
        .args(args)
        .env("TP_TEST_SECRET", secret)
        .output()
        .expect("run token-provider")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn token_over_tls_with_a_special_character_secret() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start(Some(&pki));
    let ca = pki.ca_path();
    let url = peer.token_url();
    let base = [
        "token",
        "--token-url",
        &url,
        "--client-id",
        SPECIAL_ID,
        "--client-secret-env",
        "TP_TEST_SECRET",
        "--ca-cert",
        ca.to_str().unwrap(),
        "--scope",
        "read",
    ];
    let out = cli(&base, SPECIAL_SECRET);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scopes"], serde_json::json!(["read"]));
    assert_eq!(v["source"], "fresh");
    assert_eq!(v["fingerprint"].as_str().unwrap().len(), 12);
    assert!(
        v.get("access_token").is_none(),
        "no token without --show-token"
    );
    assert!(v["expires_at"].as_u64().unwrap() > 1_700_000_000);

    let mut shown = base.to_vec();
    shown.push("--show-token");
    let out = cli(&shown, SPECIAL_SECRET);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["access_token"].as_str().expect("token with --show-token");
    assert!(!token.is_empty());
    assert!(!text(&out.stdout).contains(SPECIAL_SECRET));
}

#[test]
fn wrong_secret_exits_1_with_the_oauth_code_first() {
    let peer = OidcPeer::start(None);
    let url = peer.token_url();
    let out = cli(
        &[
            "token",
            "--token-url",
            &url,
            "--client-id",
            "basic-client",
            "--client-secret-env",
            "TP_TEST_SECRET",
            "--allow-http",
        ],
        "WRONG-SECRET-123",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("invalid_client (HTTP 401)"), "{err}");
    assert!(!err.contains("WRONG-SECRET-123") && !text(&out.stdout).contains("WRONG-SECRET-123"));
}

#[test]
fn secret_file_and_a_plain_http_refusal() {
    let peer = OidcPeer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "basic-secret\n").unwrap();
    let url = peer.token_url();
    let args = [
        "token",
        "--token-url",
        &url,
        "--client-id",
        "basic-client",
        "--client-secret-file",
        file.to_str().unwrap(),
    ];
    // Without --allow-http the plain-HTTP endpoint is refused.
    let out = cli(&args, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("config: token_url: plain http://"),
        "{}",
        text(&out.stderr)
    );
    let mut allowed = args.to_vec();
    allowed.push("--allow-http");
    let out = cli(&allowed, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn no_secret_source_is_a_usage_error() {
    let out = cli(
        &[
            "token",
            "--token-url",
            "https://auth.example.com/token",
            "--client-id",
            "x",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--client-secret-env"),
        "{}",
        text(&out.stderr)
    );
    // There is no flag that takes the secret itself.
    let out = cli(
        &[
            "token",
            "--token-url",
            "https://a/t",
            "--client-id",
            "x",
            "--client-secret",
            "s",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn call_prints_status_and_body() {
    let peer = OidcPeer::start(None);
    let url = peer.token_url();
    let api = format!("{}/api/orders", peer.base());
    let origin = peer.base();
    let out = cli(
        &[
            "call",
            &api,
            "--allowed-origin",
            &origin,
            "--header",
            "X-Trace: 1",
            "--token-url",
            &url,
            "--client-id",
            "basic-client",
            "--client-secret-env",
            "TP_TEST_SECRET",
            "--allow-http",
        ],
        "basic-secret",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("HTTP 200"));
    let body: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(body["client_id"], "basic-client");
}

#[test]
fn demo_runs_offline_and_says_what_happened() {
    let out = Command::new(env!("CARGO_BIN_EXE_token-provider"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "Done: 5 API calls (2 of them by an app that holds no token), 2 token requests"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("source: fresh"), "{stdout}");
    // The interceptor's step: the app's GET and POST carried step 3's token.
    assert_eq!(
        stdout
            .matches(
                "the API saw Authorization: Bearer <token>, the one get-token returned in step 3"
            )
            .count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("intercept.send    ok"), "{stdout}");
    assert!(!stdout.contains("demo-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_output_never_shows_the_secret_or_a_token_without_show_token() {
    const SECRET: &str = "CLI-leak-canary-secret-2b7e";
    let server = token_provider_host::testkit::testserver::MockServer::start("cli-leak", SECRET)
        .await
        .unwrap();
    let token_url = server.url("/token");
    let api = server.url("/api/orders");
    let origin = server.origin();
    let base = [
        "--token-url",
        token_url.as_str(),
        "--client-id",
        "cli-leak",
        "--client-secret-env",
        "TP_TEST_SECRET",
        "--allow-http",
        "--audit",
    ];
    let runs: Vec<(Vec<&str>, &str)> = vec![
        (vec!["token"], SECRET),
        (
            vec!["token", "--config", "failure_cooldown_secs=0"],
            "wrong-WRONG-canary-88",
        ),
        (
            vec!["call", api.as_str(), "--allowed-origin", origin.as_str()],
            SECRET,
        ),
        (
            vec![
                "call",
                "https://evil.test/x",
                "--allowed-origin",
                origin.as_str(),
            ],
            SECRET,
        ),
        (
            vec!["token", "--config", "http_timeout_ms=nonsense"],
            SECRET,
        ),
    ];
    let mut outputs = Vec::new();
    for (args, secret) in runs {
        let mut all = args.clone();
        all.extend(base);
        let out = tokio::task::spawn_blocking({
            let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
            let secret = secret.to_string();
            move || cli(&all.iter().map(String::as_str).collect::<Vec<_>>(), &secret)
        })
        .await
        .unwrap();
        outputs.push(format!("{}{}", text(&out.stdout), text(&out.stderr)));
    }
    let tokens = server.issued_tokens();
    assert!(tokens.len() >= 2, "{tokens:?}");
    assert!(outputs[0].contains("fingerprint"), "{}", outputs[0]);
    assert!(outputs[1].contains("invalid_client"), "{}", outputs[1]);
    assert!(outputs[2].contains("HTTP 200"), "{}", outputs[2]);
    for out in &outputs {
        for secret in [SECRET, "wrong-WRONG-canary-88"] {
            assert!(!out.contains(secret), "secret in CLI output: {out}");
        }
        for t in &tokens {
            assert!(!out.contains(t.as_str()), "token in CLI output: {out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_carry_the_store_label_unless_redis_raw_keys() {
    use token_provider_host::testkit::redis_server::LocalRedis;
    const SECRET: &str = "cli-redis-secret";
    let server = token_provider_host::testkit::testserver::MockServer::start("cli-redis", SECRET)
        .await
        .unwrap();
    let redis = LocalRedis::start().unwrap();
    let token_url = server.url("/token");
    let store = redis.url();
    let run = |extra: &'static [&'static str]| {
        let mut args: Vec<String> = [
            "token",
            "--token-url",
            &token_url,
            "--client-id",
            "cli-redis",
            "--client-secret-env",
            "TP_TEST_SECRET",
            "--allow-http",
            "--store",
            &store,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || {
            cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), SECRET)
        })
    };
    // The component's store label is `default` (config kv_store).
    for (extra, prefix) in [
        (&[][..], "default:oauth2-token-provider:v2:"),
        (&["--redis-raw-keys"][..], "oauth2-token-provider:v2:"),
    ] {
        redis::cmd("FLUSHDB")
            .query::<()>(&mut redis.connection().unwrap())
            .unwrap();
        let out = run(extra).await.unwrap();
        assert!(out.status.success(), "{extra:?}: {}", text(&out.stderr));
        let keys = redis.keys().unwrap();
        assert!(
            !keys.is_empty() && keys.iter().all(|k| k.starts_with(prefix)),
            "{extra:?}: {keys:?}"
        );
    }
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "token",
                "--token-url",
                "http://127.0.0.1:9/token",
                "--client-id",
                "x",
                "--client-secret-env",
                "TP_TEST_SECRET",
                "--redis-raw-keys",
            ],
            SECRET,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--redis-raw-keys needs a redis:// --store"),
        "{}",
        text(&out.stderr)
    );
}

/// examples/p3-app as the host embeds it, in a file.
fn p3_app() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("token-provider-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p3_app.wasm");
    std::fs::write(&path, token_provider_host::components::EMBEDDED_DEMO_APP).unwrap();
    path
}

/// `wrap` plugs the interceptor into a WASIp3 app (examples/p3-app): the result exports
/// the app's handler and imports the host's client and the interceptor's store and
/// configuration; a component with no `wasi:http/client@0.3.0` import is refused with
/// exit code 2 and a message saying why.
#[test]
fn wrap_plugs_the_interceptor_into_an_app_and_refuses_one_without_the_client_import() {
    let app = p3_app();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wrapped.wasm");
    let run = cli(
        &["wrap", app.to_str().unwrap(), "-o", out.to_str().unwrap()],
        "",
    );
    assert!(run.status.success(), "stderr: {}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("token interceptor"),
        "{}",
        text(&run.stderr)
    );

    let engine = token_provider_host::components::new_engine().unwrap();
    let composed = wasmtime::component::Component::from_file(&engine, &out).unwrap();
    let ty = composed.component_type();
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    assert_eq!(exports, ["wasi:http/handler@0.3.0"]);
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    for needed in [
        "wasi:http/client@0.3.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
    ] {
        assert!(imports.iter().any(|i| i == needed), "{needed}: {imports:?}");
    }

    // The provider has no wasi:http/client import: nothing to wrap.
    let provider = dir.path().join("provider.wasm");
    std::fs::write(
        &provider,
        token_provider_host::components::EMBEDDED_COMPONENT,
    )
    .unwrap();
    let refused = cli(
        &[
            "wrap",
            provider.to_str().unwrap(),
            "-o",
            dir.path().join("x.wasm").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("does not import wasi:http/client@0.3.0"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!dir.path().join("x.wasm").exists());

    // Not a component at all, and an empty file: refused, nothing written.
    for (name, bytes) in [
        ("junk.wasm", &b"not a component"[..]),
        ("empty.wasm", &b""[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let refused = cli(
            &[
                "wrap",
                path.to_str().unwrap(),
                "-o",
                dir.path().join("y.wasm").to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(refused.status.code(), Some(2), "{name}");
        assert!(
            text(&refused.stderr).contains("reading the app component"),
            "{name}: {}",
            text(&refused.stderr)
        );
        assert!(!dir.path().join("y.wasm").exists());
    }
}

/// `handle` runs a wrapped app against a URL: the app (no OAuth code) forwards the
/// request to oidc-provider's API, the interceptor attaches the token, and the API's
/// answer is printed; the unwrapped app gets a 401 from the same API (exit 1).
#[test]
fn handle_runs_a_wrapped_app_against_a_url() {
    let peer = OidcPeer::start(None);
    let app = p3_app();
    let dir = tempfile::tempdir().unwrap();
    let wrapped = dir.path().join("wrapped.wasm");
    let run = cli(
        &[
            "wrap",
            app.to_str().unwrap(),
            "-o",
            wrapped.to_str().unwrap(),
        ],
        "",
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let token_url = peer.token_url();
    let forward_to = format!("x-forward-to: {}", peer.base());
    let base = peer.base();
    let handle_with = |component: &std::path::Path, more: &[&str]| {
        let mut args = vec![
            "handle",
            component.to_str().unwrap(),
            "http://app.local/api/orders?page=1",
            "-H",
            &forward_to,
            "--allowed-origin",
            &base,
            "--token-url",
            &token_url,
            "--client-id",
            "basic-client",
            "--client-secret-env",
            "TP_TEST_SECRET",
            "--allow-http",
        ];
        args.extend_from_slice(more);
        cli(&args, "basic-secret")
    };
    // Spin's instance reuse: 40 requests, 8 at once, all with the token.
    let out = handle_with(&wrapped, &["--repeat", "40", "--concurrency", "8"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("HTTP 200"), "{stdout}");
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.starts_with("40 requests, 8 at once, on ")
            && summary.ends_with("instances (Spin 4.1's reuse): 200 ×40"),
        "{summary}"
    );
    let handle = |component: &std::path::Path| handle_with(component, &[]);
    let out = handle(&wrapped);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("HTTP 200"));
    let body: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(body["client_id"], "basic-client");
    assert!(!stdout.contains("basic-secret"));

    let out = handle(&app);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("HTTP 401"),
        "{}",
        text(&out.stdout)
    );
}

/// `--private-key-file` (and `--key-id`): private_key_jwt against oidc-provider holding
/// the key's public half, with no secret anywhere; `token` says which method it used.
#[test]
fn token_with_a_private_key_file_uses_private_key_jwt() {
    let (pem, jwks) = p256_client_key("cli-key");
    let peer = OidcPeer::start_with(None, &[("PKJWT_JWKS", jwks)]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.pem");
    std::fs::write(&key, &pem).unwrap();
    let url = peer.token_url();
    let out = cli(
        &[
            "token",
            "--token-url",
            &url,
            "--client-id",
            "pkjwt-client",
            "--private-key-file",
            key.to_str().unwrap(),
            "--key-id",
            "cli-key",
            "--scope",
            "read",
            "--allow-http",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auth_method"], "private_key_jwt");
    assert_eq!(v["scopes"], serde_json::json!(["read"]));
    assert!(!text(&out.stdout).contains("PRIVATE KEY"));
    // A file that is not a key: a config error naming the key, none of it echoed.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let bad = cli(
        &[
            "token",
            "--token-url",
            &url,
            "--client-id",
            "pkjwt-client",
            "--private-key-file",
            key.to_str().unwrap(),
            "--allow-http",
        ],
        "",
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("client_private_key"),
        "{}",
        text(&bad.stderr)
    );
}

/// `--certificate-file` (with `--private-key-file`): the certificate credential as
/// Microsoft Entra ID takes it, against the test peer's Entra-like endpoint, which
/// finds the certificate by the assertion's `x5t#S256`; without the flag that
/// endpoint's AADSTS700027 is what the CLI prints. `--help` lists the flag.
#[test]
fn token_with_a_certificate_file_sends_its_thumbprint() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rsa = std::fs::read_to_string(root.join("tests/fixtures/rsa-2048.pem")).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["orders-service".into()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::from_pem(&rsa).unwrap())
        .unwrap()
        .pem();
    let client_id = "00001111-aaaa-2222-bbbb-3333cccc4444";
    let peer = OidcPeer::start_with(
        None,
        &[
            ("ENTRA_CLIENT_ID", client_id.to_string()),
            ("ENTRA_SECRET", "unused".to_string()),
            ("ENTRA_CERT", cert.clone()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (key_path, cert_path) = (dir.path().join("client.pem"), dir.path().join("client.crt"));
    std::fs::write(&key_path, &rsa).unwrap();
    std::fs::write(&cert_path, &cert).unwrap();
    let url = format!("{}/entra/tenant-1/oauth2/v2.0/token", peer.base());
    let mut args = vec![
        "token",
        "--token-url",
        &url,
        "--client-id",
        client_id,
        "--private-key-file",
        key_path.to_str().unwrap(),
        "--config",
        "client_assertion_alg=PS256",
        "--scope",
        "api://orders/.default",
        "--allow-http",
    ];
    let without = cli(&args, "");
    assert_eq!(without.status.code(), Some(1), "{}", text(&without.stderr));
    assert!(
        text(&without.stderr).contains("invalid_client (HTTP 401): AADSTS700027"),
        "{}",
        text(&without.stderr)
    );
    args.extend(["--certificate-file", cert_path.to_str().unwrap()]);
    let out = cli(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auth_method"], "private_key_jwt");
    let help = Command::new(env!("CARGO_BIN_EXE_token-provider"))
        .args(["token", "--help"])
        .output()
        .unwrap();
    assert!(text(&help.stdout).contains("--certificate-file <PATH>"));
}

/// `token --help` names each private-key type the CLI accepts (P-256 and RSA: the host
/// runs the RSA build for an RSA key; EdDSA is an opt-in feature), and a key of each
/// type it names loads as `client_private_key` (the token request then fails on the
/// closed port, not on the key).
#[test]
fn the_private_key_help_names_the_key_types_that_load() {
    let help = Command::new(env!("CARGO_BIN_EXE_token-provider"))
        .args(["token", "--help"])
        .output()
        .unwrap();
    let help = text(&help.stdout);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rsa = std::fs::read_to_string(root.join("tests/fixtures/rsa-2048.pem")).unwrap();
    let (p256, _) = p256_client_key("help");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.pem");
    for (kind, pem) in [("P-256", p256.as_str()), ("RSA of 2048 bits or more", &rsa)] {
        assert!(help.contains(kind), "--help does not name {kind}: {help}");
        std::fs::write(&key, pem).unwrap();
        let out = cli(
            &[
                "token",
                "--token-url",
                "http://127.0.0.1:9/token",
                "--client-id",
                "svc",
                "--private-key-file",
                key.to_str().unwrap(),
                "--allow-http",
            ],
            "",
        );
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{kind}: nothing listens on port 9");
        assert!(!err.contains("client_private_key"), "{kind}: {err}");
    }
    assert!(!help.contains("Ed25519"), "EdDSA is not in this build");
}

/// `--issuer` with `--auth-method auto`: the token endpoint and the method come from
/// oidc-provider's metadata, and `token` prints the method the fetch used (with a key
/// and a secret given, the key's `private_key_jwt`). `--client-assertion-file`: a
/// federated assertion, sent as it is.
#[test]
fn token_with_an_issuer_auto_and_a_client_assertion_file() {
    let (pem, jwks) = p256_client_key("cli-key");
    let peer = OidcPeer::start_with(None, &[("PKJWT_JWKS", jwks)]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.pem");
    std::fs::write(&key, &pem).unwrap();
    let issuer = peer.base();
    let out = cli(
        &[
            "token",
            "--issuer",
            &issuer,
            "--auth-method",
            "auto",
            "--client-id",
            "pkjwt-client",
            "--private-key-file",
            key.to_str().unwrap(),
            "--key-id",
            "cli-key",
            "--client-secret-env",
            "TP_TEST_SECRET",
            "--allow-http",
        ],
        "an-unused-secret",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auth_method"], "private_key_jwt", "{v}");

    // A federated assertion in a file (as a platform projects one).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "pkjwt-client", "sub": "pkjwt-client", "aud": peer.token_url(),
        "iat": now, "exp": now + 300, "jti": "cli-federated-1",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("cli-key".into());
    let jwt = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let file = dir.path().join("assertion.jwt");
    std::fs::write(&file, format!("{jwt}\n")).unwrap();
    let url = peer.token_url();
    let out = cli(
        &[
            "token",
            "--token-url",
            &url,
            "--client-id",
            "pkjwt-client",
            "--client-assertion-file",
            file.to_str().unwrap(),
            "--allow-http",
            "--audit",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auth_method"], "client_assertion", "{v}");
    assert!(
        text(&out.stderr).contains("\"event\":\"token.fetch\""),
        "--audit still shows the log"
    );
    assert!(
        !text(&out.stderr).contains(&jwt),
        "the assertion is not logged"
    );
    // A shared store with a federated assertion needs the fleet's cache secret.
    let out = cli(
        &[
            "token",
            "--token-url",
            &url,
            "--client-id",
            "pkjwt-client",
            "--client-assertion-file",
            file.to_str().unwrap(),
            "--store",
            "redis://127.0.0.1:1",
            "--allow-http",
        ],
        "",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("--cache-secret-env"),
        "{}",
        text(&out.stderr)
    );
}

/// `token --dpop` and `call --dpop` against oidc-provider over TLS: the token comes
/// back bound (`token_type` DPoP), the API verifies the proof, and the key never
/// shows; `--dpop-key-file` uses a configured key; `--help` names both flags.
#[test]
fn token_and_call_with_dpop() {
    let pki = TestPki::generate();
    let peer = OidcPeer::start(Some(&pki));
    let ca = pki.ca_path();
    let (url, base_url) = (peer.token_url(), peer.base());
    let common = [
        "--token-url",
        &url,
        "--client-id",
        "basic-client",
        "--client-secret-env",
        "TP_TEST_SECRET",
        "--ca-cert",
        ca.to_str().unwrap(),
    ];
    let mut token_args = vec!["token", "--dpop"];
    token_args.extend_from_slice(&common);
    let out = cli(&token_args, "basic-secret");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_type"], "DPoP");
    let api = format!("{base_url}/api/orders");
    let mut call_args = vec!["call", &api, "--allowed-origin", &base_url, "--dpop"];
    call_args.extend_from_slice(&common);
    let out = cli(&call_args, "basic-secret");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("HTTP 200"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("token_type: DPoP"),
        "{}",
        text(&out.stderr)
    );
    // A configured key, from a file.
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = p256_client_key("cli");
    let key = dir.path().join("dpop.pem");
    std::fs::write(&key, &pem).unwrap();
    let mut keyed = call_args.clone();
    keyed.retain(|a| *a != "--dpop");
    keyed.extend_from_slice(&["--dpop-key-file", key.to_str().unwrap(), "--audit"]);
    let out = cli(&keyed, "basic-secret");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for chunk in body.as_bytes().chunks(16) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        assert!(!text(&out.stdout).contains(chunk) && !text(&out.stderr).contains(chunk));
    }
    let help = cli(&["call", "--help"], "");
    assert!(
        text(&help.stdout).contains("--dpop") && text(&help.stdout).contains("--dpop-key-file")
    );
}

/// `--service-account-file`: a Google service account's key file as it is, the
/// JWT-bearer grant with no client authentication, against the oidc peer's endpoint
/// that checks the assertion as Google's does; `token` names the grant and `none`.
/// With `--client-id` as well: refused by the flags; a file that is not a key file: a
/// config error naming the key, none of the file echoed.
#[test]
fn token_with_a_service_account_file_uses_the_jwt_bearer_grant() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let email = "cli@token-provider-tests.iam.gserviceaccount.com";
    let peer = OidcPeer::start_with(
        None,
        &[
            ("SA_EMAIL", email.to_string()),
            ("SA_PUBLIC_KEY", pair.public_key_pem()),
            ("SA_KID", "cli-sa".to_string()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.json");
    let json = serde_json::json!({
        "type": "service_account",
        "private_key_id": "cli-sa",
        "private_key": pair.serialize_pem(),
        "client_email": email,
        "token_uri": format!("{}/sa/token", peer.base()),
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let path = file.to_str().unwrap();
    let args = [
        "token",
        "--service-account-file",
        path,
        "--scope",
        "read",
        "--allow-http",
    ];
    let out = cli(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["grant"].as_str(), v["auth_method"].as_str()),
        (Some("jwt_bearer"), Some("none"))
    );
    assert_eq!(v["scopes"], serde_json::json!(["read"]));
    assert!(!text(&out.stdout).contains("PRIVATE KEY"));
    let out = cli(&[&args[..], &["--client-id", "x"]].concat(), "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--client-id"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&file, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC").unwrap();
    let out = cli(&args, "");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("service_account_key: not JSON"), "{err}");
    assert!(!err.contains("MIIEvQIBADANBgkq"), "{err}");
}

/// `--subject-token-file`: a platform's token exchanged at a security token service
/// (RFC 8693) with no client authentication, against the oidc peer's STS that checks
/// it as GCP's does; `token` names the grant and `none`.
#[test]
fn token_with_a_subject_token_file_uses_token_exchange() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let audience =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/cli/providers/ci";
    let peer = OidcPeer::start_with(
        None,
        &[
            (
                "STS_SUBJECT_ISSUER",
                "https://ci.token-provider.test".to_string(),
            ),
            ("STS_SUBJECT_KEY", pair.public_key_pem()),
            ("STS_AUDIENCE", audience.to_string()),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://ci.token-provider.test", "sub": "repo:acme/reports:ref:refs/heads/main",
        "exp": now + 600,
    });
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{jwt}\n")).unwrap();
    let url = format!("{}/sts/token", peer.base());
    let out = cli(
        &[
            "token",
            "--token-url",
            &url,
            "--client-id",
            "ci-reports",
            "--subject-token-file",
            file.to_str().unwrap(),
            "--audience",
            audience,
            "--scope",
            "https://www.googleapis.com/auth/cloud-platform",
            "--allow-http",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["grant"].as_str(), v["auth_method"].as_str()),
        (Some("token_exchange"), Some("none"))
    );
    assert!(!text(&out.stdout).contains(&jwt));
    assert!(!text(&out.stderr).contains(&jwt));
}
