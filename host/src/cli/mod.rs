//! The command line: one module per subcommand, and the flags they share.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use token_provider_host::kv::{KvBackend, MemoryKv, RedisKeys, RedisKv, redact_url};
use token_provider_host::outbound::read_pem_certs;
use token_provider_host::{Flavor, HostBuilder, LogSink, ProviderError, TokenHost, describe};

mod call;
mod demo;
mod handle;
mod load;
mod token;
mod wrap;

#[derive(Parser)]
#[command(
    name = "token-provider",
    version,
    about = "OAuth2 client-credentials tokens through a WebAssembly component"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Get a token and print it as JSON (the token itself only with --show-token).
    Token(token::TokenArgs),
    /// Send an authorized request to a protected API and print status and body.
    Call(call::CallArgs),
    /// Run an offline demo against an embedded token server and API on loopback.
    Demo,
    /// Load run: P processes × M concurrent fresh instances sharing one Redis, against a
    /// counting token server; prints requests, failures, token requests, latency.
    Load(load::LoadArgs),
    /// Plug the token interceptor into an app component (WASIp3): its requests through
    /// wasi:http/client@0.3.0 then carry tokens, without changing its code.
    Wrap(wrap::WrapArgs),
    /// Handle one HTTP request with a WASIp3 HTTP component (such as a wrapped app) in
    /// this host, with the provider's settings; print status and body.
    Handle(handle::HandleArgs),
    /// One worker process of `load` (internal).
    #[command(hide = true)]
    LoadWorker(load::WorkerArgs),
}

/// Exit 0 on success, 1 when the provider answered with an error, 2 on usage or host
/// errors.
pub async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Token(args) => token::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::Demo => demo::run().await.map(|()| ExitCode::SUCCESS),
        Command::Load(args) => load::run(args).await,
        Command::LoadWorker(args) => load::worker(args).await,
        Command::Wrap(args) => wrap::run(args),
        Command::Handle(args) => handle::run(args).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

/// `--header` values, `Name: value` each, as (name, value) with both trimmed.
fn parse_headers(headers: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--header {h}: expected `Name: value`"))
        })
        .collect()
}

/// The provider's error on stderr, in one line; exit 1.
fn provider_failed(e: &ProviderError) -> ExitCode {
    eprintln!("{}", describe(e));
    ExitCode::FAILURE
}

/// Flags that map one-to-one to the component's configuration keys.
#[derive(clap::Args)]
struct ProviderArgs {
    /// Token endpoint URL (`token_url`); or give --issuer (or --service-account-file).
    #[arg(long, required_unless_present_any = ["issuer", "service_account_file"])]
    token_url: Option<String>,
    /// Issuer URL (`issuer`): the token endpoint and methods are discovered from its
    /// metadata (RFC 8414, then OpenID Connect); --token-url, if also given, wins.
    #[arg(long)]
    issuer: Option<String>,
    /// Client identifier (`client_id`); with --service-account-file, the file's.
    #[arg(long, required_unless_present = "service_account_file")]
    client_id: Option<String>,
    /// Name of the environment variable that holds the client secret.
    #[arg(long, value_name = "VAR", conflicts_with = "client_secret_file")]
    client_secret_env: Option<String>,
    /// File that holds the client secret (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,
    /// File that holds the client's private key, PKCS#8 PEM: P-256 (ES256) or RSA of
    /// 2048 bits or more (RS256, or PS256 with --config client_assertion_alg=PS256)
    /// (`client_private_key`): private_key_jwt, and no client secret is needed.
    #[arg(long, value_name = "PATH")]
    private_key_file: Option<PathBuf>,
    /// The private key's id, sent as `kid` (`client_key_id`).
    #[arg(long, value_name = "KID")]
    key_id: Option<String>,
    /// File that holds the private key's X.509 certificate, PEM (`client_certificate`):
    /// its SHA-256 thumbprint is sent as the assertion's `x5t#S256` header, as
    /// Microsoft Entra ID takes certificate credentials.
    #[arg(long, value_name = "PATH", requires = "private_key_file")]
    certificate_file: Option<PathBuf>,
    /// File that holds a federated client assertion, a JWT the platform issues (a
    /// projected service-account token) (`client_assertion`): sent as it is, and no
    /// client secret is needed.
    #[arg(long, value_name = "PATH")]
    client_assertion_file: Option<PathBuf>,
    /// A Google service account's JSON key file (`service_account_key`): the JWT-bearer
    /// grant (`grant=jwt_bearer`, `auth_method=none`) signed with the file's key, and
    /// the client id, key id and token endpoint from it; no client secret is needed.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["client_id", "private_key_file", "client_assertion_file"])]
    service_account_file: Option<PathBuf>,
    /// File that holds a token the platform gives this workload (a projected
    /// service-account token, a CI OIDC token) (`subject_token`): exchanged at the
    /// token endpoint, a security token service (`grant=token_exchange`, RFC 8693);
    /// with no other credential, no client authentication (`auth_method=none`).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["service_account_file", "client_assertion_file"])]
    subject_token_file: Option<PathBuf>,
    /// The subject token's type (`subject_token_type`; default
    /// `urn:ietf:params:oauth:token-type:jwt`).
    #[arg(long, value_name = "URI", requires = "subject_token_file")]
    subject_token_type: Option<String>,
    /// Name of the environment variable that holds `cache_secret`: what seals a shared
    /// (redis://) store when the credential is a federated assertion.
    #[arg(long, value_name = "VAR")]
    cache_secret_env: Option<String>,
    /// `client_secret_basic` (default with a secret), `client_secret_post`,
    /// `client_secret_jwt`, `private_key_jwt` (default with --private-key-file),
    /// `client_assertion` (default with --client-assertion-file), or `auto` (the
    /// strongest one given that the --issuer's metadata lists) (`auth_method`).
    #[arg(long)]
    auth_method: Option<String>,
    /// A scope to request (repeatable; `scope`).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Audience parameter (`audience`).
    #[arg(long)]
    audience: Option<String>,
    /// RFC 8707 resource indicator (repeatable; `resource`).
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// Extra CA certificate (PEM) to trust for outbound TLS.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Allow plain http:// URLs (`allow_insecure_http=true`); for loopback testing.
    #[arg(long)]
    allow_http: bool,
    /// Bind tokens to a key with DPoP (RFC 9449; `dpop=on`): every token request and
    /// API call carries a proof; the key is generated and kept in the store unless
    /// --dpop-key-file gives one.
    #[arg(long)]
    dpop: bool,
    /// File that holds the DPoP key, PKCS#8 PEM: P-256 (ES256) or RSA (RS256)
    /// (`dpop_private_key`; implies --dpop).
    #[arg(long, value_name = "PATH")]
    dpop_key_file: Option<PathBuf>,
    /// Any other configuration key, `key=value` (repeatable), e.g. `http_timeout_ms=3000`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    extra: Vec<String>,
    /// Which embedded build to run: `spin` (default) or `wasmtime` (other WASI drafts).
    #[arg(long, value_name = "FLAVOR", value_enum, default_value_t = Flavor::Spin)]
    flavor: Flavor,
    /// Use this component (either flavor) instead of the embedded one.
    #[arg(long, value_name = "WASM")]
    component: Option<PathBuf>,
    /// Print the component's audit log (JSON lines) on stderr, every line (`audit=all`).
    #[arg(long)]
    audit: bool,
    /// Key-value store behind the cache: `memory` (this process only, default) or
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` (shared by every process that uses it).
    /// In Redis, key `k` of store label `L` is `L:k`.
    #[arg(long, value_name = "URL", default_value = "memory")]
    store: String,
    /// Redis keys without the store label prefix, as Spin's Redis key-value store
    /// writes them: to share the token cache with a Spin app (needs a redis:// --store).
    #[arg(long)]
    redis_raw_keys: bool,
}

impl ProviderArgs {
    async fn host(&self, allowed_origins: &[String]) -> anyhow::Result<TokenHost> {
        let log = if self.audit {
            LogSink::Inherit
        } else {
            LogSink::Discard
        };
        self.host_logging(allowed_origins, log).await
    }

    /// [`ProviderArgs::host`] with the audit log going to `log`.
    async fn host_logging(
        &self,
        allowed_origins: &[String],
        log: LogSink,
    ) -> anyhow::Result<TokenHost> {
        let mut b: HostBuilder = TokenHost::builder()
            .config("token_url", self.token_url.as_deref().unwrap_or(""))
            .config("issuer", self.issuer.as_deref().unwrap_or(""))
            .config("client_id", self.client_id.as_deref().unwrap_or(""))
            .config("scope", self.scopes.join(" "))
            .config("resource", self.resources.join(" "))
            .config("allowed_origins", allowed_origins.join(","))
            .config("allow_insecure_http", self.allow_http.to_string())
            .log(log)
            .flavor(self.flavor);
        b = b.configs(self.credential()?);
        if self.dpop || self.dpop_key_file.is_some() {
            b = b.config("dpop", "on");
        }
        if let Some(path) = &self.dpop_key_file {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--dpop-key-file {}: {e}", path.display()))?;
            b = b.config("dpop_private_key", pem);
        }
        if let Some(m) = &self.auth_method {
            b = b.config("auth_method", m);
        }
        if let Some(a) = &self.audience {
            b = b.config("audience", a);
        }
        if self.audit {
            // Asked to see the log: every line (`--config audit=…` still overrides).
            b = b.config("audit", "all");
        }
        b = b.configs(parse_pairs(&self.extra)?);
        b = b.kv(store_backend(&self.store, self.redis_raw_keys).await?);
        if let Some(path) = &self.ca_cert {
            b = b.trust(read_pem_certs(path)?);
        }
        if let Some(path) = &self.component {
            b = b.component(
                std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
        b.build()
    }

    /// The configuration that authenticates the client: every credential given (the
    /// secret, the private key, the federated assertion), and the `auth_method` the
    /// strongest of them implies (`--auth-method` may override it).
    fn credential(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
        };
        let mut pairs = Vec::new();
        if self.client_secret_env.is_some() || self.client_secret_file.is_some() {
            pairs.push(("client_secret", self.secret()?));
        }
        if let Some(path) = &self.client_assertion_file {
            let jwt = read("--client-assertion-file", path)?;
            pairs.push(("client_assertion", jwt.trim().to_string()));
            pairs.push(("auth_method", "client_assertion".to_string()));
            pairs.extend(self.rotating_credential_store("--client-assertion-file")?);
        }
        if let Some(path) = &self.service_account_file {
            pairs.push(("service_account_key", read("--service-account-file", path)?));
            pairs.push(("grant", "jwt_bearer".to_string()));
            pairs.push(("auth_method", "none".to_string()));
        }
        if let Some(path) = &self.subject_token_file {
            pairs.extend(self.token_exchange(read("--subject-token-file", path)?, &pairs)?);
        }
        if let Some(path) = &self.private_key_file {
            pairs.push(("client_private_key", read("--private-key-file", path)?));
            pairs.push(("auth_method", "private_key_jwt".to_string()));
            if let Some(kid) = &self.key_id {
                pairs.push(("client_key_id", kid.clone()));
            }
            if let Some(path) = &self.certificate_file {
                pairs.push(("client_certificate", read("--certificate-file", path)?));
            }
        }
        if pairs.is_empty() {
            self.secret()?;
        }
        Ok(pairs)
    }

    /// `--subject-token-file`'s configuration: the grant, the token (and its type),
    /// and with no credential in `pairs` nor a private key no client authentication,
    /// whose cache is then sealed as a federated assertion's is.
    fn token_exchange(
        &self,
        token: String,
        pairs: &[(&'static str, String)],
    ) -> anyhow::Result<Vec<(&'static str, String)>> {
        let mut out = vec![
            ("grant", "token_exchange".to_string()),
            ("subject_token", token.trim().to_string()),
        ];
        if let Some(kind) = &self.subject_token_type {
            out.push(("subject_token_type", kind.clone()));
        }
        if pairs.is_empty() && self.private_key_file.is_none() {
            out.push(("auth_method", "none".to_string()));
            out.extend(self.rotating_credential_store("--subject-token-file")?);
        }
        Ok(out)
    }

    /// The store of a credential that rotates (a federated assertion, a subject token
    /// with no client authentication): `cache_secret` from `--cache-secret-env`, or,
    /// for this process's memory store, no shared store at all.
    fn rotating_credential_store(&self, flag: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(match &self.cache_secret_env {
            Some(var) => vec![(
                "cache_secret",
                std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("environment variable {var} (--cache-secret-env) is not set")
                })?,
            )],
            // This process's own memory store: nothing to seal it against.
            None if self.store == "memory" => vec![("kv_store", String::new())],
            None => anyhow::bail!(
                "{flag} with a shared --store needs --cache-secret-env VAR: the secret the fleet seals the cache with"
            ),
        })
    }

    /// Whether DPoP is asked for (`--dpop`, `--dpop-key-file` or `--config dpop=on`).
    fn dpop_asked(&self) -> bool {
        self.dpop || self.dpop_key_file.is_some() || self.config_given("dpop") == Some("on")
    }

    /// The last `--config key=…` value of `key`.
    fn config_given(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// The `grant` this run configures.
    fn grant_configured(&self) -> String {
        let implied = match (&self.service_account_file, &self.subject_token_file) {
            (Some(_), _) => "jwt_bearer",
            (_, Some(_)) => "token_exchange",
            _ => "client_credentials",
        };
        self.config_given("grant").unwrap_or(implied).to_string()
    }

    /// The `auth_method` this run configures.
    fn auth_method_configured(&self) -> String {
        let from_config = self.config_given("auth_method");
        let implied = if self.service_account_file.is_some() {
            "none"
        } else if self.private_key_file.is_some() {
            "private_key_jwt"
        } else if self.client_assertion_file.is_some() {
            "client_assertion"
        } else if self.subject_token_file.is_some()
            && self.client_secret_env.is_none()
            && self.client_secret_file.is_none()
        {
            "none"
        } else {
            "client_secret_basic"
        };
        from_config
            .or(self.auth_method.as_deref())
            .unwrap_or(implied)
            .to_string()
    }

    /// From the named variable or file: never from the command line itself.
    fn secret(&self) -> anyhow::Result<String> {
        match (&self.client_secret_env, &self.client_secret_file) {
            (Some(var), _) => std::env::var(var).map_err(|_| {
                anyhow::anyhow!("environment variable {var} (--client-secret-env) is not set")
            }),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--client-secret-file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string()),
            (None, None) => anyhow::bail!(
                "no client credential: pass --client-secret-env VAR or --client-secret-file PATH (never the secret itself), --private-key-file PATH (private_key_jwt), --client-assertion-file PATH (a federated assertion) or --service-account-file PATH (a Google service account's key file)"
            ),
        }
    }
}

/// `memory` or a Redis URL as a key-value backend; `raw_keys` (Redis only): keys
/// without the label prefix.
async fn store_backend(store: &str, raw_keys: bool) -> anyhow::Result<Arc<dyn KvBackend>> {
    Ok(match store {
        "memory" if raw_keys => {
            anyhow::bail!("--redis-raw-keys needs a redis:// --store (this one is `memory`)")
        }
        "memory" => Arc::new(MemoryKv::new()),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            let keys = if raw_keys {
                RedisKeys::Raw
            } else {
                RedisKeys::LabelPrefix
            };
            Arc::new(RedisKv::connect_with(url, keys).await?)
        }
        other => anyhow::bail!(
            "--store {}: expected `memory` or a redis:// URL",
            redact_url(other)
        ),
    })
}

/// `--config KEY=VALUE` flags as pairs.
fn parse_pairs(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--config {kv}: expected KEY=VALUE"))
        })
        .collect()
}
