//! `token-provider`: get tokens and call protected APIs through the component, or run
//! the offline demo.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use token_provider_host::kv::{KvBackend, MemoryKv, RedisKv};
use token_provider_host::outbound::read_pem_certs;
use token_provider_host::testkit::load;
use token_provider_host::{
    ApiRequest, Flavor, HostBuilder, LogSink, TokenHost, TokenRequest, describe, source_name,
};

mod demo;

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
    Token {
        #[command(flatten)]
        provider: ProviderArgs,
        /// Also print the access token.
        #[arg(long)]
        show_token: bool,
    },
    /// Send an authorized request to a protected API and print status and body.
    Call {
        /// The API URL (https://…; its origin must be allowed with --allowed-origin).
        url: String,
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H', value_name = "K: V")]
        headers: Vec<String>,
        /// Request body.
        #[arg(long, short = 'd')]
        data: Option<String>,
        /// An origin the client may call, e.g. https://api.example.com (repeatable).
        #[arg(long = "allowed-origin", value_name = "ORIGIN")]
        allowed_origins: Vec<String>,
        #[command(flatten)]
        provider: ProviderArgs,
    },
    /// Run an offline demo against an embedded token server and API on loopback.
    Demo,
    /// Load run: P processes × M concurrent fresh instances sharing one Redis, against a
    /// counting token server; prints requests, failures, token requests, latency.
    Load {
        /// Host processes.
        #[arg(long, default_value_t = 2)]
        processes: usize,
        /// Concurrent instances per process (each call gets a fresh instance).
        #[arg(long, default_value_t = 20)]
        instances: usize,
        /// Token lifetime the server grants, seconds.
        #[arg(long, default_value_t = 3)]
        lifetime_secs: u64,
        /// Run for this many token lifetimes.
        #[arg(long, default_value_t = 10)]
        lifetimes: u64,
        /// Instead of a duration: this many calls per instance (e.g. 1 = a cold start).
        #[arg(long)]
        calls: Option<u64>,
        /// The token server answers after this long.
        #[arg(long, default_value_t = 20)]
        token_delay_ms: u64,
        /// Shared store (`redis://HOST:PORT/`); default: start a local redis-server.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Component configuration for every instance, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        #[arg(long, default_value = "spin", value_parser = ["spin", "wasmtime"])]
        flavor: String,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// One worker process of `load` (internal).
    #[command(hide = true)]
    LoadWorker {
        #[arg(long)]
        token_url: String,
        #[arg(long)]
        store: String,
        #[arg(long)]
        flavor: String,
        #[arg(long)]
        plan: String,
        #[arg(long = "config")]
        config: Vec<String>,
    },
}

/// Flags that map one-to-one to the component's configuration keys.
#[derive(Args)]
struct ProviderArgs {
    /// Token endpoint URL (`token_url`).
    #[arg(long)]
    token_url: String,
    /// Client identifier (`client_id`).
    #[arg(long)]
    client_id: String,
    /// Name of the environment variable that holds the client secret.
    #[arg(long, value_name = "VAR", conflicts_with = "client_secret_file")]
    client_secret_env: Option<String>,
    /// File that holds the client secret (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,
    /// `client_secret_basic` (default) or `client_secret_post` (`auth_method`).
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
    /// Any other configuration key, `key=value` (repeatable), e.g. `http_timeout_ms=3000`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    extra: Vec<String>,
    /// Which embedded build to run: `spin` (default) or `wasmtime` (other WASI drafts).
    #[arg(long, value_name = "FLAVOR", default_value = "spin", value_parser = ["spin", "wasmtime"])]
    flavor: String,
    /// Use this component (either flavor) instead of the embedded one.
    #[arg(long, value_name = "WASM")]
    component: Option<PathBuf>,
    /// Print the component's audit log (JSON lines) on stderr.
    #[arg(long)]
    audit: bool,
    /// Key-value store behind the cache: `memory` (this process only, default) or
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` (shared by every process that uses it).
    #[arg(long, value_name = "URL", default_value = "memory")]
    store: String,
}

/// `memory` or a Redis URL as a key-value backend.
async fn store_backend(store: &str) -> anyhow::Result<Arc<dyn KvBackend>> {
    Ok(match store {
        "memory" => Arc::new(MemoryKv::new()),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Arc::new(RedisKv::connect(url).await?)
        }
        other => anyhow::bail!(
            "--store {}: expected `memory` or a redis:// URL",
            token_provider_host::kv::redact_url(other)
        ),
    })
}

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

impl ProviderArgs {
    async fn host(&self, allowed_origins: &[String]) -> anyhow::Result<TokenHost> {
        let secret = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(var), _) => std::env::var(var).map_err(|_| {
                anyhow::anyhow!("environment variable {var} (--client-secret-env) is not set")
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--client-secret-file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            (None, None) => anyhow::bail!(
                "no client secret: pass --client-secret-env VAR or --client-secret-file PATH (never the secret itself)"
            ),
        };
        let mut b: HostBuilder = TokenHost::builder()
            .config("token_url", &self.token_url)
            .config("client_id", &self.client_id)
            .config("client_secret", secret)
            .config("scope", self.scopes.join(" "))
            .config("resource", self.resources.join(" "))
            .config("allowed_origins", allowed_origins.join(","))
            .config("allow_insecure_http", self.allow_http.to_string())
            .log(if self.audit {
                LogSink::Inherit
            } else {
                LogSink::Discard
            })
            .flavor(if self.flavor == "wasmtime" {
                Flavor::Wasmtime
            } else {
                Flavor::Spin
            });
        if let Some(m) = &self.auth_method {
            b = b.config("auth_method", m);
        }
        if let Some(a) = &self.audience {
            b = b.config("audience", a);
        }
        b = b.configs(parse_pairs(&self.extra)?);
        b = b.kv(store_backend(&self.store).await?);
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
}

fn print_summary(s: &load::Summary) {
    println!();
    println!(
        "{} processes x {} instances, a fresh instance per call, {:.1} s",
        s.processes,
        s.instances_per_process,
        s.elapsed_ms as f64 / 1000.0
    );
    println!(
        "requests served          {} ({:.0}/s)",
        s.requests,
        s.requests as f64 * 1000.0 / s.elapsed_ms.max(1) as f64
    );
    println!("failures                 {}", s.failures);
    if let Some(e) = &s.first_error {
        println!("first failure            {e}");
    }
    println!(
        "token lifetimes elapsed  {:.2} ({} s tokens, refresh ahead {} %)",
        s.lifetimes_elapsed, s.lifetime_secs, s.refresh_ahead_percent
    );
    println!(
        "token-endpoint requests  {} (limit {})",
        s.token_requests, s.token_request_limit
    );
    println!(
        "token sources            fresh {}, store {}, memory {}",
        s.fresh, s.store, s.memory
    );
    println!(
        "get-token latency        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        s.p50_ms, s.p99_ms, s.max_ms
    );
    println!(
        "result                   {}",
        if s.passed() {
            "PASS: token requests within the limit, no failures"
        } else {
            "FAIL"
        }
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Token {
            provider,
            show_token,
        } => {
            let host = provider.host(&[]).await?;
            let result = host
                .instance()
                .await?
                .get_token(&TokenRequest::default_request())
                .await?;
            match result {
                Ok(t) => {
                    let mut out = serde_json::json!({
                        "token_type": t.token_type,
                        "expires_at": t.expires_at,
                        "scopes": t.scopes,
                        "source": source_name(t.source),
                        "fingerprint": token_provider::secret::AccessToken::new(t.token.as_str()).fingerprint(),
                    });
                    if show_token {
                        out["access_token"] = t.token.into();
                    }
                    println!("{out}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}", describe(&e));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Call {
            url,
            method,
            headers,
            data,
            allowed_origins,
            provider,
        } => {
            let host = provider.host(&allowed_origins).await?;
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().as_bytes().to_vec()))
                        .ok_or_else(|| anyhow::anyhow!("--header {h}: expected `Name: value`"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let request = ApiRequest {
                method,
                url,
                headers,
                body: data.map(String::into_bytes),
                token: None,
            };
            match host.instance().await?.send(&request).await? {
                Ok(resp) => {
                    println!("HTTP {}", resp.status);
                    println!("{}", String::from_utf8_lossy(&resp.body));
                    Ok(if resp.status < 400 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                Err(e) => {
                    eprintln!("{}", describe(&e));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Demo => {
            demo::run().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            processes,
            instances,
            lifetime_secs,
            lifetimes,
            calls,
            token_delay_ms,
            store,
            config,
            flavor,
            json,
        } => {
            anyhow::ensure!(
                processes > 0 && instances > 0 && lifetime_secs > 0,
                "--processes, --instances and --lifetime-secs must be at least 1"
            );
            let opts = load::LoadOptions {
                processes,
                plan: load::Plan {
                    instances,
                    calls,
                    duration_ms: lifetimes * lifetime_secs * 1000,
                },
                lifetime_secs,
                token_delay_ms,
                store,
                config: parse_pairs(&config)?,
                flavor,
            };
            let exe = std::env::current_exe()?;
            let summary = load::coordinate(&exe, &opts, &mut |line| {
                if !json {
                    println!("{line}");
                }
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                print_summary(&summary);
            }
            Ok(if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::LoadWorker {
            token_url,
            store,
            flavor,
            plan,
            config,
        } => {
            let secret = std::env::var("TOKEN_PROVIDER_LOAD_SECRET")?;
            let host = TokenHost::builder()
                .config("token_url", token_url)
                .config("client_id", load::CLIENT_ID)
                .config("client_secret", secret)
                .config("allow_insecure_http", "true")
                .configs(parse_pairs(&config)?)
                .kv(store_backend(&store).await?)
                .log(LogSink::Discard)
                .flavor(if flavor == "wasmtime" {
                    Flavor::Wasmtime
                } else {
                    Flavor::Spin
                })
                .build()?;
            load::worker(host, serde_json::from_str(&plan)?).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
