//! Shared helpers for the integration tests: hosts wired to an in-process server,
//! and the component's captured audit log.
#![allow(dead_code)]

use std::sync::Arc;
pub use token_provider_host::MemoryOutputPipe;

pub mod oidc;
pub mod p3;
use token_provider_host::kv::{KvBackend, MemoryKv};
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{AccessToken, ApiRequest, ApiResponse, ProviderError, TokenRequest};
pub use token_provider_host::{LogSink, TokenHost};

/// `get-token` on a fresh instance of `host` (a trap fails the test).
pub async fn token(host: &TokenHost, req: &TokenRequest) -> Result<AccessToken, ProviderError> {
    host.instance().await.unwrap().get_token(req).await.unwrap()
}

/// `send` through the authorized client of a fresh instance of `host` (a trap fails the
/// test).
pub async fn send(host: &TokenHost, req: &ApiRequest) -> Result<ApiResponse, ProviderError> {
    host.instance().await.unwrap().send(req).await.unwrap()
}

/// A plain GET of `url` for the authorized client: no headers, no body, the provider's
/// own token.
pub fn api_get(url: impl Into<String>) -> ApiRequest {
    ApiRequest::get(url)
}

pub const CLIENT_ID: &str = "svc-client";
pub const CLIENT_SECRET: &str = "SECRET-must-never-leak-7f3a";

/// A host whose component talks to `server` (plain HTTP on loopback, opted in).
pub struct Rig {
    pub host: TokenHost,
    pub log: MemoryOutputPipe,
    pub kv: MemoryKv,
}

impl Rig {
    /// The audit log holds none of the tokens `server` ever issued.
    pub fn assert_log_holds_no_token(&self, server: &MockServer) {
        let log = String::from_utf8_lossy(&self.log.contents()).into_owned();
        for token in server.issued_tokens() {
            assert!(!log.contains(&token), "{log}");
        }
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        audit_lines(&self.log)
    }
}

pub fn audit_lines(log: &MemoryOutputPipe) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&log.contents())
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
        })
        .collect()
}

pub fn base_config(server: &MockServer) -> Vec<(String, String)> {
    [
        ("token_url", server.url("/token")),
        ("client_id", CLIENT_ID.to_string()),
        ("client_secret", CLIENT_SECRET.to_string()),
        ("allow_insecure_http", "true".to_string()),
        ("allowed_origins", server.origin()),
        // Every line, routine hits included: the suites check what each says.
        ("audit", "all".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn rig(server: &MockServer, extra: &[(&str, &str)]) -> Rig {
    rig_with_kv(server, extra, None)
}

pub fn rig_with_kv(
    server: &MockServer,
    extra: &[(&str, &str)],
    kv: Option<Arc<dyn KvBackend>>,
) -> Rig {
    rig_full(server, extra, kv, token_provider_host::Flavor::Spin)
}

pub fn rig_full(
    server: &MockServer,
    extra: &[(&str, &str)],
    kv: Option<Arc<dyn KvBackend>>,
    flavor: token_provider_host::Flavor,
) -> Rig {
    let memory = MemoryKv::new();
    let log = MemoryOutputPipe::new(4 << 20);
    let mut config = base_config(server);
    for (k, v) in extra {
        config.retain(|(key, _)| key != k);
        config.push((k.to_string(), v.to_string()));
    }
    let host = TokenHost::builder()
        .flavor(flavor)
        .configs(config)
        .kv(kv.unwrap_or_else(|| Arc::new(memory.clone())))
        .log(LogSink::Capture(log.clone()))
        .build()
        .expect("host builds");
    Rig {
        host,
        log,
        kv: memory,
    }
}

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// Run a shell command from the repository root with a clean environment (only what
/// cargo and rustup need), as a user's shell would; panics with the command on failure.
pub fn run_from_root(command: &str) {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", command]).current_dir(repo_root());
    token_provider_host::testkit::process::user_environment(&mut cmd);
    let status = cmd.status().unwrap();
    assert!(status.success(), "command failed: {command}");
}
