//! `token-provider handle`: an HTTP request handled by a WASIp3 HTTP component (such
//! as an app wrapped with `token-provider wrap`) in this host, with the provider's
//! settings, store and outbound HTTP: the way to run a wrapped app against a URL. With
//! `--repeat`, the request is sent that many times (`--concurrency` at once) to
//! instances reused as Spin 4.1 reuses them (`reuse::Reuse::SPIN`).

use super::{ProviderArgs, parse_headers};
use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use token_provider_host::reuse::Reuse;
use token_provider_host::serve::{ErrorCode, ServiceResponse};
use token_provider_host::{Inherit, TokenHost};
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
    /// Send the request this many times, to instances reused as Spin 4.1 reuses them
    /// (up to 128 requests per instance, 16 at once, dropped after 1 s idle); prints
    /// the first answer and a summary.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    repeat: u32,
    /// With --repeat: this many requests at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
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
    let headers = parse_headers(&args.headers)?;
    let body = Bytes::from(args.data.clone().unwrap_or_default());
    let make = || {
        let mut request = http::Request::builder()
            .method(args.method.as_str())
            .uri(&args.url);
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        request
            .body(Full::new(body.clone()))
            .map_err(|e| anyhow::anyhow!("the request: {e}"))
    };
    if args.repeat > 1 {
        return repeat(&host, &component, &args, make).await;
    }
    print_answer(host.handle_http(&component, Inherit::ALL, make()?).await?)
}

/// The answer on stdout, and the exit code it means.
fn print_answer(answer: Result<ServiceResponse, ErrorCode>) -> anyhow::Result<ExitCode> {
    match answer {
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

/// `--repeat`: the request `repeat` times, `concurrency` at once, through a pool reused
/// as Spin 4.1 reuses instances; the first answer, then `N requests, C at once, on K
/// instances: <status> ×n, …` (and the error codes). Exit as for the worst answer.
async fn repeat(
    host: &TokenHost,
    component: &Component,
    args: &HandleArgs,
    make: impl Fn() -> anyhow::Result<http::Request<Full<Bytes>>>,
) -> anyhow::Result<ExitCode> {
    let pool = host.service_pool(component, Inherit::ALL, Reuse::SPIN)?;
    let mut answers = Vec::with_capacity(args.repeat as usize);
    let mut left = args.repeat;
    while left > 0 {
        let wave = left.min(args.concurrency);
        let mut calls = Vec::with_capacity(wave as usize);
        for _ in 0..wave {
            let (pool, request) = (pool.clone(), make()?);
            calls.push(tokio::spawn(async move { pool.handle(request).await }));
        }
        for call in calls {
            answers.push(call.await??);
        }
        left -= wave;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &answers {
        let key = match answer {
            Ok(response) => response.status().as_u16().to_string(),
            Err(code) => format!("error-code {code:?}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    let mut first = answers.into_iter();
    let code = print_answer(first.next().expect("at least two"))?;
    let worst = first.fold(code, |code, answer| match answer {
        Err(_) => ExitCode::from(2),
        Ok(r) if r.status().as_u16() >= 400 && code == ExitCode::SUCCESS => ExitCode::FAILURE,
        Ok(_) => code,
    });
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    println!(
        "{} requests, {} at once, on {} instances (Spin 4.1's reuse): {}",
        args.repeat,
        args.concurrency,
        pool.instances_made(),
        summary.join(", ")
    );
    Ok(worst)
}
