//! `token-provider load` (the coordinator) and `load-worker` (one of its processes):
//! the run itself is `testkit::load`; this is its command line and its report.

use super::{parse_pairs, store_backend};
use std::process::ExitCode;
use token_provider_host::testkit::load;
use token_provider_host::{Flavor, LogSink, TokenHost};

#[derive(clap::Args)]
pub struct LoadArgs {
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
    #[arg(long, value_enum, default_value_t = Flavor::Spin)]
    flavor: Flavor,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    token_url: String,
    #[arg(long)]
    store: String,
    #[arg(long, value_enum)]
    flavor: Flavor,
    #[arg(long)]
    plan: String,
    #[arg(long = "config")]
    config: Vec<String>,
}

/// Exit 1 when a request failed or the token endpoint saw more requests than the limit.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.processes > 0 && args.instances > 0 && args.lifetime_secs > 0,
        "--processes, --instances and --lifetime-secs must be at least 1"
    );
    let opts = load::LoadOptions {
        processes: args.processes,
        plan: load::Plan {
            instances: args.instances,
            calls: args.calls,
            duration_ms: args.lifetimes * args.lifetime_secs * 1000,
        },
        lifetime_secs: args.lifetime_secs,
        token_delay_ms: args.token_delay_ms,
        store: args.store,
        config: parse_pairs(&args.config)?,
        flavor: args.flavor,
    };
    let exe = std::env::current_exe()?;
    let summary = load::coordinate(&exe, &opts, &mut |line| {
        if !args.json {
            println!("{line}");
        }
    })
    .await?;
    if args.json {
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

pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let secret = std::env::var("TOKEN_PROVIDER_LOAD_SECRET")?;
    let host = TokenHost::builder()
        .config("token_url", args.token_url)
        .config("client_id", load::CLIENT_ID)
        .config("client_secret", secret)
        .config("allow_insecure_http", "true")
        .configs(parse_pairs(&args.config)?)
        .kv(store_backend(&args.store, false).await?)
        .log(LogSink::Discard)
        .flavor(args.flavor)
        .build()?;
    load::worker(host, serde_json::from_str(&args.plan)?).await?;
    Ok(ExitCode::SUCCESS)
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
