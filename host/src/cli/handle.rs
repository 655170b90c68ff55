//! `token-provider handle`: one HTTP request handled by a WASIp3 HTTP component (such
//! as an app wrapped with `token-provider wrap`) in this host, with the provider's
//! settings, store and outbound HTTP: the way to run a wrapped app against a URL.

use super::{ProviderArgs, parse_headers};
use bytes::Bytes;
use http_body_util::Full;
use std::path::PathBuf;
use std::process::ExitCode;
use token_provider_host::Inherit;
use wasmtime::component::Component;

#[derive(clap::Args)]
pub struct HandleArgs {
    /// The component (it must export wasi:http/handler@0.3.0).
    #[arg(value_name = "COMPONENT")]
    app: PathBuf,
    /// The URL of the request handed to the component, e.g. http://localhost/api/orders
    /// (what the component does with it is its own business).
    url: String,
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "K: V")]
    headers: Vec<String>,
    /// Request body.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// An origin that gets the default token, e.g. https://api.example.com
    /// (repeatable; `allowed_origins`; routes: `--config intercept_routes=…`).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    #[command(flatten)]
    provider: ProviderArgs,
}

/// The component's status and body on stdout; exit 1 for a status ≥ 400, 2 when the
/// component answered with an error code instead of a response.
pub async fn run(args: HandleArgs) -> anyhow::Result<ExitCode> {
    let host = args.provider.host(&args.allowed_origins).await?;
    let bytes = std::fs::read(&args.app)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.app.display()))?;
    let component = Component::new(host.engine(), bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a component: {e}", args.app.display()))?;
    let mut request = http::Request::builder()
        .method(args.method.as_str())
        .uri(&args.url);
    for (k, v) in parse_headers(&args.headers)? {
        request = request.header(k, v);
    }
    let body = Full::new(Bytes::from(args.data.unwrap_or_default()));
    let request = request
        .body(body)
        .map_err(|e| anyhow::anyhow!("the request: {e}"))?;
    match host.handle_http(&component, Inherit::ALL, request).await? {
        Ok(response) => {
            println!("HTTP {}", response.status().as_u16());
            println!("{}", String::from_utf8_lossy(response.body()));
            Ok(if response.status().as_u16() < 400 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(code) => {
            eprintln!("the component answered with error-code {code:?}");
            Ok(ExitCode::from(2))
        }
    }
}
