//! The load run: P host processes × M concurrent fresh instances (Spin's model: a new
//! instance per request) share one key-value store and call `get-token` against a
//! counting token server. The coordinator ([`coordinate`]) starts the token server (and
//! Redis, unless given one), spawns the worker processes (`token-provider load-worker`),
//! starts them together, and merges what they report.

use super::redis_server::LocalRedis;
use super::testserver::MockServer;
use crate::kv::{KvBackend as _, RedisKv};
use crate::{Flavor, TokenHost, TokenRequest, TokenSource, describe};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use token_provider_core::internal::KEY_PREFIX;

pub const CLIENT_ID: &str = "load-client";
pub const CLIENT_SECRET: &str = "load-secret-3f9a";

/// How much work one worker process does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Plan {
    /// Concurrent instances (each call gets a fresh one).
    pub instances: usize,
    /// Calls per instance slot; `None`: until `duration_ms` has passed.
    pub calls: Option<u64>,
    pub duration_ms: u64,
}

/// What one worker (or, merged, the whole run) saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub requests: u64,
    pub failures: u64,
    pub fresh: u64,
    pub store: u64,
    pub memory: u64,
    pub first_error: Option<String>,
    /// `get-token` latency of every call (instantiation included), microseconds.
    pub latencies_us: Vec<u32>,
}

impl Report {
    pub fn merge(&mut self, other: Report) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.fresh += other.fresh;
        self.store += other.store;
        self.memory += other.memory;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    /// The `q`-quantile (0..=1) of the latencies, in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() - 1) as f64 * q).round() as usize;
        f64::from(sorted[i]) / 1000.0
    }
}

/// Run `plan` on `host`: `plan.instances` tasks, each calling `get-token` on a fresh
/// instance in a loop.
pub async fn drive(host: &TokenHost, plan: Plan) -> Report {
    let deadline = Instant::now() + Duration::from_millis(plan.duration_ms);
    let mut tasks = Vec::new();
    for _ in 0..plan.instances {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            let mut done = 0u64;
            loop {
                match plan.calls {
                    Some(n) if done >= n => break,
                    None if Instant::now() >= deadline => break,
                    _ => {}
                }
                done += 1;
                let started = Instant::now();
                let outcome = match host.instance().await {
                    Ok(mut i) => i.get_token(&TokenRequest::default_request()).await,
                    Err(e) => Err(e),
                };
                let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                report.requests += 1;
                report.latencies_us.push(micros);
                match outcome {
                    Ok(Ok(t)) => match t.source {
                        TokenSource::Fresh => report.fresh += 1,
                        TokenSource::Store => report.store += 1,
                        TokenSource::Memory => report.memory += 1,
                    },
                    Ok(Err(e)) => {
                        report.failures += 1;
                        report.first_error.get_or_insert_with(|| describe(&e));
                    }
                    Err(e) => {
                        report.failures += 1;
                        report.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            report
        }));
    }
    let mut total = Report::default();
    for t in tasks {
        match t.await {
            Ok(r) => total.merge(r),
            Err(e) => {
                total.failures += 1;
                total.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    total
}

/// The coordinator's settings.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub processes: usize,
    pub plan: Plan,
    /// Token lifetime the server grants, seconds.
    pub lifetime_secs: u64,
    pub token_delay_ms: u64,
    /// `redis://…`, or `None` to start a local redis-server.
    pub store: Option<String>,
    /// Extra component configuration (`key=value`).
    pub config: Vec<(String, String)>,
    pub flavor: Flavor,
}

/// The merged result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub processes: usize,
    pub instances_per_process: usize,
    pub elapsed_ms: u64,
    pub lifetime_secs: u64,
    pub lifetimes_elapsed: f64,
    pub refresh_ahead_percent: u64,
    /// The most token requests that a perfect fleet-wide single flight allows.
    pub token_request_limit: u64,
    pub requests: u64,
    pub failures: u64,
    pub token_requests: u64,
    pub fresh: u64,
    pub store: u64,
    pub memory: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_error: Option<String>,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.token_requests <= self.token_request_limit
    }
}

/// Component configuration of every worker (besides the token URL and credentials).
pub fn worker_config(opts: &LoadOptions) -> Vec<(String, String)> {
    let mut config = vec![
        // Short test tokens: serve them to the last millisecond.
        ("expiry_skew_secs".to_string(), "0".to_string()),
        ("refresh_ahead_percent".to_string(), "0".to_string()),
    ];
    config.extend(opts.config.iter().cloned());
    config
}

/// Start the token server (and Redis if needed), run `opts.processes` workers of `exe`
/// in parallel, merge their reports. `progress` gets one line per step.
pub async fn coordinate(
    exe: &Path,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Summary> {
    let (store, _local_redis) = empty_store(opts, progress).await?;
    let server = Arc::new(MockServer::start(CLIENT_ID, CLIENT_SECRET).await?);
    server.set_expires_in(Some(opts.lifetime_secs.into()));
    server.set_token_delay(Duration::from_millis(opts.token_delay_ms));
    server.set_record_api(false);
    progress(&format!(
        "token server on {} ({} s tokens, {} ms per token request)",
        server.origin(),
        opts.lifetime_secs,
        opts.token_delay_ms
    ));

    let config = worker_config(opts);
    let workers = spawn_workers(exe, opts, &server.url("/token"), &store, &config)?;
    progress(&format!(
        "{} worker processes ready; running {}",
        opts.processes,
        match opts.plan.calls {
            Some(n) => format!("{n} call(s) per instance"),
            None => format!("for {:.1} s", opts.plan.duration_ms as f64 / 1000.0),
        }
    ));
    let started = Instant::now();
    let total = run_workers(workers, opts, &server, progress).await?;
    let refresh_ahead_percent = config
        .iter()
        .rev()
        .find(|(k, _)| k == "refresh_ahead_percent")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Ok(summarize(
        opts,
        total,
        started.elapsed().as_millis() as u64,
        refresh_ahead_percent,
        server.token_request_count() as u64,
    ))
}

/// The store's URL, emptied of the provider's keys (the run measures cold start too),
/// and the local redis-server started when none was given (it stops when dropped).
async fn empty_store(
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(String, Option<LocalRedis>)> {
    let (store, local_redis) = match &opts.store {
        Some(url) => (url.clone(), None),
        None => {
            let redis = LocalRedis::start()?;
            progress(&format!("started redis-server on {}", redis.url()));
            (redis.url(), Some(redis))
        }
    };
    let kv = RedisKv::connect(&store).await?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = kv
            .list_keys("default", cursor, 1000)
            .await
            .map_err(anyhow::Error::msg)?;
        keys.extend(page.keys);
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    for k in keys.iter().filter(|k| k.starts_with(KEY_PREFIX)) {
        kv.delete("default", k).await.map_err(anyhow::Error::msg)?;
    }
    Ok((store, local_redis))
}

/// A worker process that said `ready`, and its stdout.
type Worker = (Child, BufReader<ChildStdout>);

/// Spawn `opts.processes` workers of `exe` and wait until every one has compiled the
/// component.
fn spawn_workers(
    exe: &Path,
    opts: &LoadOptions,
    token_url: &str,
    store: &str,
    config: &[(String, String)],
) -> anyhow::Result<Vec<Worker>> {
    let mut workers = Vec::new();
    for _ in 0..opts.processes {
        let mut cmd = Command::new(exe);
        cmd.arg("load-worker")
            .args(["--token-url", token_url, "--store", store])
            .args(["--flavor", opts.flavor.name()])
            .arg("--plan")
            .arg(serde_json::to_string(&opts.plan)?)
            .env("TOKEN_PROVIDER_LOAD_SECRET", CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in config {
            cmd.arg("--config").arg(format!("{k}={v}"));
        }
        let mut child = cmd.spawn()?;
        let out = BufReader::new(child.stdout.take().expect("piped"));
        workers.push((child, out));
    }
    for (_, out) in &mut workers {
        let mut line = String::new();
        out.read_line(&mut line)?;
        anyhow::ensure!(line.trim() == "ready", "worker did not start: {line:?}");
    }
    Ok(workers)
}

/// Start the workers together and merge their reports, with a progress line once per
/// token lifetime while they run.
async fn run_workers(
    mut workers: Vec<Worker>,
    opts: &LoadOptions,
    server: &MockServer,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    for (child, _) in &mut workers {
        writeln!(child.stdin.as_mut().expect("piped"), "go")?;
    }
    let collect = async move {
        let mut total = Report::default();
        for (mut child, mut out) in workers {
            let report = tokio::task::spawn_blocking(move || -> anyhow::Result<Report> {
                let mut line = String::new();
                out.read_line(&mut line)?;
                let status = child.wait()?;
                anyhow::ensure!(status.success(), "worker failed: {status}");
                Ok(serde_json::from_str(&line)?)
            })
            .await??;
            total.merge(report);
        }
        anyhow::Ok(total)
    };
    tokio::pin!(collect);
    let mut tick = tokio::time::interval(Duration::from_secs(opts.lifetime_secs));
    tick.tick().await;
    loop {
        tokio::select! {
            total = &mut collect => return total,
            _ = tick.tick() => progress(&format!(
                "  {:>5.1} s: {} token requests so far",
                started.elapsed().as_secs_f64(),
                server.token_request_count()
            )),
        }
    }
}

/// The run's numbers, with the token-request limit a perfect fleet-wide single flight
/// allows in `elapsed_ms`.
fn summarize(
    opts: &LoadOptions,
    total: Report,
    elapsed_ms: u64,
    refresh_ahead_percent: u64,
    token_requests: u64,
) -> Summary {
    let lifetime_ms = opts.lifetime_secs * 1000;
    let lifetimes_elapsed = elapsed_ms as f64 / lifetime_ms as f64;
    // With refresh ahead a token is replaced as early as (100 - percent) % of its life.
    let serve_ms = lifetime_ms as f64 * (1.0 - refresh_ahead_percent as f64 / 100.0);
    let token_request_limit = (elapsed_ms as f64 / serve_ms).floor() as u64 + 1;
    Summary {
        processes: opts.processes,
        instances_per_process: opts.plan.instances,
        elapsed_ms,
        lifetime_secs: opts.lifetime_secs,
        lifetimes_elapsed,
        refresh_ahead_percent,
        token_request_limit,
        requests: total.requests,
        failures: total.failures,
        token_requests,
        fresh: total.fresh,
        store: total.store,
        memory: total.memory,
        p50_ms: total.percentile_ms(0.50),
        p99_ms: total.percentile_ms(0.99),
        max_ms: total.percentile_ms(1.0),
        first_error: total.first_error,
    }
}

/// The worker side: build the host, say `ready`, wait for `go` on stdin, run, print
/// the report as one JSON line.
pub async fn worker(host: TokenHost, plan: Plan) -> anyhow::Result<()> {
    // Compile and instantiate once before the start signal.
    host.instance().await?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "go", "expected `go`, got {line:?}");
    let report = drive(&host, plan).await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
