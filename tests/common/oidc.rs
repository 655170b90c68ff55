//! Runs oidc-provider (npm, pinned in tests/peers/oidc) as a child process, over plain
//! HTTP or over HTTPS with a CA generated for the run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub const RESOURCE: &str = "https://api.example.test/";

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/peers/oidc/package.json").exists())
        .expect("tests/peers/oidc in an ancestor of the manifest dir")
        .join("tests/peers/oidc")
}

/// `npm ci` once, when node_modules is missing (the README's test command does it
/// up front; this keeps a bare `cargo test` working too).
fn ensure_installed(dir: &Path) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm must be installed to run the oidc-provider tests");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// A CA and a server certificate for 127.0.0.1 and localhost, written to a temp dir.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "token-provider test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            dir,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// A running oidc-provider; killed on drop.
pub struct OidcPeer {
    child: Child,
    pub port: u16,
    pub tls: bool,
}

impl OidcPeer {
    pub fn start(pki: Option<&TestPki>) -> OidcPeer {
        Self::start_with(pki, &[])
    }

    /// With extra environment for the server (`PKJWT_JWKS`: the JWK Set of
    /// `pkjwt-client`, a private_key_jwt client).
    pub fn start_with(pki: Option<&TestPki>, env: &[(&str, String)]) -> OidcPeer {
        let dir = peer_dir();
        ensure_installed(&dir);
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let stderr_log = tempfile::NamedTempFile::new().unwrap();
        cmd.stderr(stderr_log.reopen().unwrap());
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(pki) = pki {
            cmd.env("TLS_CERT", pki.dir.path().join("server.pem"));
            cmd.env("TLS_KEY", pki.dir.path().join("server.key"));
        }
        let mut child = cmd
            .spawn()
            .expect("node must be installed to run the oidc-provider tests");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "oidc-provider did not start within 60 s; its stderr:\n{}",
                    std::fs::read_to_string(stderr_log.path()).unwrap_or_default()
                )
            });
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line from oidc-provider: {line:?}; its stderr:\n{}",
                    std::fs::read_to_string(stderr_log.path()).unwrap_or_default()
                )
            });
        OidcPeer {
            child,
            port,
            tls: pki.is_some(),
        }
    }

    pub fn base(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.tls { "https" } else { "http" },
            self.port
        )
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base())
    }

    /// RFC 7009 revocation (as `basic-client`, over plain HTTP), so the API sees a
    /// token a cache still holds.
    pub async fn revoke(&self, token: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert!(!self.tls, "revoke speaks plain HTTP");
        let body = format!("token={token}&token_type_hint=access_token");
        let request = format!(
            "POST /token/revocation HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmFzaWMtY2xpZW50OmJhc2ljLXNlY3JldA==\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    /// The server's `/test/stats`, all of it.
    pub async fn stats_json(&self, host_ca: Option<&TestPki>) -> serde_json::Value {
        let body = fetch_stats(self.port, host_ca.map(|p| p.ca_pem.clone())).await;
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// (token endpoint requests, API requests) the server has seen.
    pub async fn stats(&self, host_ca: Option<&TestPki>) -> (u64, u64) {
        let body = fetch_stats(self.port, host_ca.map(|p| p.ca_pem.clone())).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        (
            v["token_requests"].as_u64().unwrap(),
            v["api_requests"].as_u64().unwrap(),
        )
    }

    /// A host for client `id` with `secret` against this server, its API's origin
    /// allowed, plain HTTP allowed when the server speaks it, and `pki`'s CA trusted.
    pub fn host_builder(
        &self,
        pki: Option<&TestPki>,
        id: &str,
        secret: &str,
    ) -> token_provider_host::HostBuilder {
        let mut b = token_provider_host::TokenHost::builder()
            .config("token_url", self.token_url())
            .config("client_id", id)
            .config("client_secret", secret)
            .config("allow_insecure_http", (!self.tls).to_string())
            .config("allowed_origins", self.base());
        if let Some(pki) = pki {
            use rustls_pki_types::pem::PemObject;
            let ca = rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes());
            b = b.trust([ca.unwrap()]);
        }
        b
    }

    /// API requests whose DPoP proof verified, and why the API refused others.
    pub async fn dpop_stats(&self, host_ca: Option<&TestPki>) -> (u64, Vec<String>) {
        let body = fetch_stats(self.port, host_ca.map(|p| p.ca_pem.clone())).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        let refusals = v["api_refusals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        (v["api_dpop"].as_u64().unwrap(), refusals)
    }

    /// Requests for `/.well-known/…` (discovery) the server has seen.
    pub async fn discovery_requests(&self, host_ca: Option<&TestPki>) -> u64 {
        let body = fetch_stats(self.port, host_ca.map(|p| p.ca_pem.clone())).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        v["discovery_requests"].as_u64().unwrap()
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /test/stats with a tiny client (plain TCP, or TLS trusting only the test CA).
async fn fetch_stats(port: u16, ca_pem: Option<String>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request =
        format!("GET /test/stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut raw = Vec::new();
    match ca_pem {
        None => {
            let mut s = tcp;
            s.write_all(request.as_bytes()).await.unwrap();
            s.read_to_end(&mut raw).await.unwrap();
        }
        Some(pem) => {
            use rustls_pki_types::pem::PemObject;
            let cert = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            let config = token_provider_host::outbound::tls_config(&[cert]).unwrap();
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut s = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let _ = s.read_to_end(&mut raw).await;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    // Node may answer chunked; the JSON object is the part between the braces.
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_string(),
        _ => panic!("no JSON in stats response: {text:?}"),
    }
}

/// A P-256 key for `pkjwt-client`: (PKCS#8 PEM, the JWK Set of its public half, whose
/// key has id `kid`).
pub fn p256_client_key(kid: &str) -> (String, String) {
    use base64::Engine as _;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(
        (point.len(), point[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
        "kid": kid, "alg": "ES256", "use": "sig",
    }]});
    (pair.serialize_pem(), jwks.to_string())
}
