//! `token-provider demo`: the whole flow, offline, narrated: the provider's WIT calls,
//! then an app with no OAuth code behind the token interceptor, then the audit log and
//! a stampede.

use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use token_provider_host::components::{
    EMBEDDED_COMPONENT, EMBEDDED_DEMO_APP, EMBEDDED_INTERCEPTOR, wasm_optimized,
};
use token_provider_host::testkit::testserver::MockServer;
use token_provider_host::{
    AccessToken, ApiRequest, ApiResponse, Inherit, LogSink, MemoryOutputPipe, ProviderError,
    TokenHost, TokenRequest, compose, describe, source_name,
};
use wasmtime::component::Component;

const CLIENT_ID: &str = "demo-service";
const CLIENT_SECRET: &str = "demo-secret";
const LIFETIME_SECS: u64 = 4;

pub async fn run() -> anyhow::Result<()> {
    println!("token-provider demo: everything below runs offline on 127.0.0.1\n");
    let demo = Demo::start().await?;
    demo.first_token().await?;
    demo.api_calls().await?;
    demo.intercepted().await?;
    demo.renewal().await?;
    demo.print_audit()?;
    let fetches = demo.server.token_requests().len();
    anyhow::ensure!(fetches == 2, "expected 2 token requests, saw {fetches}");
    let herd = demo.herd().await? - fetches;
    anyhow::ensure!(herd == 1, "expected 1 token request, saw {herd}");
    println!(
        "\nDone: {} API calls (2 of them by an app that holds no token), {fetches} token requests (one per token lifetime); then 20 simultaneous instances, {herd} token request.",
        demo.server.api_requests().len()
    );
    Ok(())
}

/// The token server and API, the host, the audit log it writes, and the demo app
/// with the interceptor in front of it.
struct Demo {
    server: MockServer,
    host: TokenHost,
    audit: MemoryOutputPipe,
    api: ApiRequest,
    app: Component,
}

fn step(n: u32, what: &str) {
    println!("\n{n}. {what}");
}

fn failed(e: ProviderError) -> anyhow::Error {
    anyhow::anyhow!(describe(&e))
}

impl Demo {
    /// Steps 1 and 2: the server, then the component.
    async fn start() -> anyhow::Result<Demo> {
        let server = MockServer::start(CLIENT_ID, CLIENT_SECRET).await?;
        server.set_expires_in(Some(LIFETIME_SECS.into()));
        println!(
            "1. Started an OAuth2 token endpoint  {}",
            server.url("/token")
        );
        println!(
            "   and a protected API               {}",
            server.url("/api/orders")
        );
        println!("   (tokens live {LIFETIME_SECS} s so that expiry shows within the demo)\n");

        let started = Instant::now();
        let audit = MemoryOutputPipe::new(1 << 20);
        let host = TokenHost::builder()
            .config("token_url", server.url("/token"))
            .config("client_id", CLIENT_ID)
            .config("client_secret", CLIENT_SECRET)
            .config("scope", "orders:read")
            .config("allowed_origins", server.origin())
            // The demo shows every decision, routine hits included.
            .config("audit", "all")
            .config("allow_insecure_http", "true")
            .log(LogSink::Capture(audit.clone()))
            .build()?;
        println!(
            "2. Loaded the token-provider component into wasmtime ({} KB{}, compiled in {} ms)",
            EMBEDDED_COMPONENT.len() / 1024,
            if wasm_optimized() {
                ""
            } else {
                ", not size-optimized"
            },
            started.elapsed().as_millis()
        );
        // Composed and compiled now, so that step 6 runs while step 3's token is fresh.
        let wrapped = compose::wrap(EMBEDDED_DEMO_APP, EMBEDDED_INTERCEPTOR)?;
        let app = Component::new(host.engine(), &wrapped)?;
        println!(
            "   and an app with no OAuth code (examples/p3-app, {} KB) wrapped with the token interceptor ({} KB)",
            EMBEDDED_DEMO_APP.len() / 1024,
            EMBEDDED_INTERCEPTOR.len() / 1024
        );
        let api = ApiRequest::get(server.url("/api/orders"));
        Ok(Demo {
            server,
            host,
            audit,
            api,
            app,
        })
    }

    fn report(&self) {
        println!(
            "   token endpoint requests so far: {}, API requests so far: {}",
            self.server.token_requests().len(),
            self.server.api_requests().len()
        )
    }

    /// `authorized-client.send` of the API request, on a fresh instance.
    async fn send(&self) -> anyhow::Result<ApiResponse> {
        self.host
            .instance()
            .await?
            .send(&self.api)
            .await?
            .map_err(failed)
    }

    /// Step 3.
    async fn first_token(&self) -> anyhow::Result<()> {
        step(
            3,
            "Fresh instance: get-token (cache empty, so the component fetches one)",
        );
        let t = get_token(&self.host, &TokenRequest::default_request()).await?;
        let sent = &self.server.token_requests()[0];
        println!(
            "   POST /token  body: {}",
            String::from_utf8_lossy(&sent.body)
        );
        println!("                Authorization: Basic <client_id:client_secret, form-encoded>");
        println!(
            "   -> 200, Bearer token (source: {}), expires_at {}, scopes {:?}",
            source_name(t.source),
            t.expires_at,
            t.scopes
        );
        self.report();
        Ok(())
    }

    /// Steps 4 and 5: the API through the component, then from the store.
    async fn api_calls(&self) -> anyhow::Result<()> {
        step(4, "Fresh instance: authorized-client.send GET /api/orders");
        let resp = self.send().await?;
        println!(
            "   -> HTTP {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        let used = self
            .server
            .api_requests()
            .last()
            .and_then(|r| r.header("authorization").map(|h| h.len()))
            .unwrap_or(0);
        println!(
            "   the API saw `Authorization: Bearer <token>` ({used} bytes); the caller never handled the token"
        );
        self.report();

        step(
            5,
            "Another fresh instance, same call: the token comes from the shared key-value store",
        );
        println!("   -> HTTP {}", self.send().await?.status);
        self.report();
        Ok(())
    }

    /// Step 6: the app sends a GET and a POST through `wasi:http/client`; the
    /// interceptor attaches the token from the same cache.
    async fn intercepted(&self) -> anyhow::Result<()> {
        step(
            6,
            "The app (no OAuth code) sends GET and POST /api/orders; the interceptor in front of it adds the token",
        );
        let before = self.server.token_requests().len();
        let provided = self
            .server
            .issued_tokens()
            .last()
            .cloned()
            .unwrap_or_default();
        for (method, body) in [("GET", ""), ("POST", r#"{"item":"book","qty":1}"#)] {
            let request = http::Request::builder()
                .method(method)
                .uri("http://app.local/api/orders")
                .header("x-forward-to", self.server.origin())
                .body(Full::new(Bytes::from(body)))?;
            let answer = self
                .host
                .handle_http(&self.app, Inherit::ALL, request)
                .await?
                .map_err(|code| anyhow::anyhow!("the app answered error-code {code:?}"))?;
            let seen = self.server.api_requests().last().cloned();
            let seen = seen.ok_or_else(|| anyhow::anyhow!("the API saw no request"))?;
            let bearer = seen.header("authorization").unwrap_or("(none)");
            let same = bearer == format!("Bearer {provided}");
            println!(
                "   app: {method} /api/orders ({} body bytes, no Authorization) -> HTTP {}",
                body.len(),
                answer.status().as_u16()
            );
            println!(
                "   the API saw Authorization: Bearer <token>{}, and the body as sent ({} bytes)",
                if same {
                    ", the one get-token returned in step 3"
                } else {
                    ""
                },
                seen.body.len()
            );
            anyhow::ensure!(same, "the API saw another token than step 3's");
        }
        let fetched = self.server.token_requests().len() - before;
        println!(
            "   token requests for the app: {fetched} (the interceptor read the provider's token from the shared store)"
        );
        anyhow::ensure!(fetched == 0, "the interceptor fetched its own token");
        Ok(())
    }

    /// Step 7: after expiry, the component renews the token.
    async fn renewal(&self) -> anyhow::Result<()> {
        println!(
            "\n   waiting for the token to come due ({LIFETIME_SECS} s lifetime, renewed before it expires)…"
        );
        tokio::time::sleep(Duration::from_secs(LIFETIME_SECS / 2 + 1)).await;
        step(
            7,
            "Fresh instance after expiry: the component renews the token, then calls the API",
        );
        println!("   -> HTTP {}", self.send().await?.status);
        self.report();
        Ok(())
    }

    /// Step 8: one line per audit record, its notable fields only.
    fn print_audit(&self) -> anyhow::Result<()> {
        println!(
            "\n8. The components' audit log (one JSON line per decision; no secret, no token):"
        );
        for line in String::from_utf8_lossy(&self.audit.contents()).lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            println!(
                "   {:<17} {:<8} {}",
                v["event"].as_str().unwrap_or(""),
                v["outcome"].as_str().unwrap_or(""),
                [
                    v["cache"].as_str().map(|c| format!("cache={c}")),
                    v["status"].as_u64().map(|s| format!("status={s}")),
                    v["fingerprint"]
                        .as_str()
                        .map(|f| format!("fingerprint={f}")),
                    v["duration_ms"].as_u64().map(|d| format!("{d} ms")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
            );
        }
        Ok(())
    }

    /// Step 9: twenty instances at once, one token request. Returns the token
    /// endpoint's request count after it.
    async fn herd(&self) -> anyhow::Result<usize> {
        step(
            9,
            "Twenty fresh instances ask for a `reports:read` token at the same moment, and the token server takes 300 ms",
        );
        let fetches = self.server.token_requests().len();
        self.server.set_token_delay(Duration::from_millis(300));
        let before = self.audit.contents().len();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let host = self.host.clone();
                tokio::spawn(async move {
                    get_token(&host, &TokenRequest::with_scopes(["reports:read"])).await
                })
            })
            .collect();
        let mut sources = BTreeMap::new();
        for t in tasks {
            *sources.entry(source_name(t.await??.source)).or_insert(0) += 1;
        }
        let after = self.server.token_requests().len();
        let waited = String::from_utf8_lossy(&self.audit.contents()[before..])
            .lines()
            .filter(|l| l.contains(r#""event":"token.lease","outcome":"waited""#))
            .count();
        println!(
            "   -> {} token request; tokens by source: {sources:?}",
            after - fetches
        );
        println!(
            "   one instance took the lease (an atomic increment in the key-value store) and fetched;\n   {waited} waited for its token instead of asking the server (audit: token.lease waited)"
        );
        Ok(after)
    }
}

/// `provider.get-token` on a fresh instance of `host`.
async fn get_token(host: &TokenHost, request: &TokenRequest) -> anyhow::Result<AccessToken> {
    host.instance()
        .await?
        .get_token(request)
        .await?
        .map_err(failed)
}
