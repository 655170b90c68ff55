//! `token-provider call`: one authorized request through `authorized-client.send`.

use super::{ProviderArgs, parse_headers, provider_failed};
use std::process::ExitCode;
use token_provider_host::ApiRequest;

#[derive(clap::Args)]
pub struct CallArgs {
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
}

/// Status and body on stdout; exit 1 for a status ≥ 400 or a provider error.
pub async fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let host = args.provider.host(&args.allowed_origins).await?;
    let headers = parse_headers(&args.headers)?
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    let request = ApiRequest {
        method: args.method,
        url: args.url,
        headers,
        body: args.data.map(String::into_bytes),
        token: None,
    };
    let mut instance = host.instance().await?;
    match instance.send(&request).await? {
        Ok(resp) => {
            if args.provider.dpop_asked() {
                // The token the call went with (from this instance's memory now): its
                // type, so that a server that ignored the proof is seen.
                if let Ok(t) = instance
                    .get_token(&token_provider_host::TokenRequest::default_request())
                    .await?
                {
                    eprintln!("token_type: {}", t.token_type);
                }
            }
            println!("HTTP {}", resp.status);
            println!("{}", String::from_utf8_lossy(&resp.body));
            Ok(if resp.status < 400 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => Ok(provider_failed(&e)),
    }
}
