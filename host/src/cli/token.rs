//! `token-provider token`: get a token, print what it is (not the token itself unless
//! asked).

use super::{ProviderArgs, provider_failed};
use std::process::ExitCode;
use token_provider_host::{TokenRequest, source_name};

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    provider: ProviderArgs,
    /// Also print the access token.
    #[arg(long)]
    show_token: bool,
}

pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let host = args.provider.host(&[]).await?;
    let result = host
        .instance()
        .await?
        .get_token(&TokenRequest::default_request())
        .await?;
    let t = match result {
        Ok(t) => t,
        Err(e) => return Ok(provider_failed(&e)),
    };
    let fingerprint = token_provider::secret::AccessToken::new(t.token.as_str()).fingerprint();
    let mut out = serde_json::json!({
        "token_type": t.token_type,
        "expires_at": t.expires_at,
        "scopes": t.scopes,
        "source": source_name(t.source),
        "fingerprint": fingerprint,
        "auth_method": args.provider.auth_method_used(),
    });
    if args.show_token {
        out["access_token"] = t.token.into();
    }
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
