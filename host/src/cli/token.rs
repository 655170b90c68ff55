//! `token-provider token`: get a token, print what it is (not the token itself unless
//! asked) and which grant and client authentication got it.

use super::{ProviderArgs, provider_failed};
use std::process::ExitCode;
use token_provider_host::{LogSink, MemoryOutputPipe, TokenRequest, source_name};

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    provider: ProviderArgs,
    /// Also print the access token.
    #[arg(long)]
    show_token: bool,
}

pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    // The audit log is read for the method a fetch used (`auth_method = auto` is
    // resolved inside the component), then shown if asked for.
    let log = MemoryOutputPipe::new(4 << 20);
    let host = args
        .provider
        .host_logging(&[], LogSink::Capture(log.clone()))
        .await?;
    let result = host
        .instance()
        .await?
        .get_token(&TokenRequest::default_request())
        .await?;
    let lines = String::from_utf8_lossy(&log.contents()).into_owned();
    if args.provider.audit {
        eprint!("{lines}");
    }
    let fetch_field = |field: &str| {
        lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["event"] == "token.fetch")
            .find_map(|l| l[field].as_str().map(str::to_string))
    };
    let used = fetch_field("auth_method").unwrap_or_else(|| args.provider.auth_method_configured());
    let grant = fetch_field("grant").unwrap_or_else(|| args.provider.grant_configured());
    let t = match result {
        Ok(t) => t,
        Err(e) => return Ok(provider_failed(&e)),
    };
    let fingerprint = token_provider_core::AccessToken::new(t.token.as_str()).fingerprint();
    let mut out = serde_json::json!({
        "token_type": t.token_type,
        "expires_at": t.expires_at,
        "scopes": t.scopes,
        "source": source_name(t.source),
        "fingerprint": fingerprint,
        "grant": grant,
        "auth_method": used,
    });
    if args.show_token {
        out["access_token"] = t.token.into();
    }
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
