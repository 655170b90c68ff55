//! The adapters: WASI bindings for the core (built only for wasm32). Each function here
//! translates types or makes one WASI call; decisions live in the core modules.

use crate::authorized::{self, ApiRequest};
use crate::cache::MemoryCache;
use crate::config::Settings;
use crate::error::{Error as CoreError, OAuthError};
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};
use crate::origin::Scheme as CoreScheme;
use crate::platform::Platform;
use crate::provider::{IssuedToken, Provider, Source};
use crate::token_request::TokenRequest as CoreTokenRequest;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

// One source, two flavors: only the world (which WASI drafts are imported) differs.
// The draft keyvalue/config interfaces the adapters call have the same shape in both.
#[cfg(not(feature = "wasmtime-flavor"))]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider/token-provider",
    generate_all,
});
#[cfg(feature = "wasmtime-flavor")]
wit_bindgen::generate!({
    path: "wit",
    world: "oauth2:token-provider/token-provider-wasmtime",
    generate_all,
});

// Both drafts are in wit/deps, so the bindings carry the version in the module name.
#[cfg(not(feature = "wasmtime-flavor"))]
use wasi::{config0_2_0_draft_2024_09_27 as config, keyvalue0_2_0_draft2 as keyvalue};
#[cfg(feature = "wasmtime-flavor")]
use wasi::{config0_2_0_rc_1 as config, keyvalue0_2_0_draft as keyvalue};

use exports::oauth2::token_provider::authorized_client;
use exports::oauth2::token_provider::provider;
use oauth2::token_provider::types as wit;
use wasi::http::types as http;
use wasi::io::streams::StreamError;

struct Component;
export!(Component);

thread_local! {
    static SETTINGS: OnceCell<Settings> = const { OnceCell::new() };
    static MEMORY: RefCell<MemoryCache> = RefCell::new(MemoryCache::default());
    static BUCKETS: RefCell<HashMap<String, keyvalue::store::Bucket>> = RefCell::new(HashMap::new());
}

/// Settings are read once per instance; a failed read is retried on the next call.
fn with_provider<R>(
    f: impl FnOnce(&Provider<'_, WasiPlatform>) -> Result<R, CoreError>,
) -> Result<R, CoreError> {
    SETTINGS.with(|cell| {
        if cell.get().is_none() {
            let settings = Settings::load(|key| {
                config::store::get(key).map_err(|e| match e {
                    config::store::Error::Upstream(m) | config::store::Error::Io(m) => m,
                })
            })?;
            let _ = cell.set(settings);
        }
        let settings = cell.get().expect("set above");
        MEMORY.with(|memory| {
            f(&Provider {
                settings,
                platform: &WasiPlatform,
                memory,
            })
        })
    })
}

impl provider::Guest for Component {
    fn get_token(request: wit::TokenRequest) -> Result<wit::AccessToken, wit::Error> {
        let request = core_token_request(request);
        with_provider(|p| p.get_token(&request))
            .map(wit_token)
            .map_err(wit_error)
    }

    fn invalidate(request: wit::TokenRequest) {
        let request = core_token_request(request);
        // Without valid settings there is nothing cached to drop.
        let _ = with_provider(|p| {
            p.invalidate(&request);
            Ok(())
        });
    }
}

impl authorized_client::Guest for Component {
    fn send(
        request: authorized_client::Request,
    ) -> Result<authorized_client::Response, wit::Error> {
        let request = ApiRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            token: request.token.map(core_token_request),
        };
        with_provider(|p| authorized::send(p, &request))
            .map(|r| authorized_client::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(wit_error)
    }
}

fn core_token_request(r: wit::TokenRequest) -> CoreTokenRequest {
    CoreTokenRequest {
        scopes: r.scopes,
        audience: r.audience,
        resources: r.resources,
        force_refresh: r.force_refresh,
    }
}

fn wit_token(t: IssuedToken) -> wit::AccessToken {
    wit::AccessToken {
        token: t.token.expose().to_string(),
        token_type: "Bearer".into(),
        expires_at: t.expires_at,
        scopes: t.scopes,
        source: match t.source {
            Source::Fresh => wit::TokenSource::Fresh,
            Source::Memory => wit::TokenSource::Memory,
            Source::Store => wit::TokenSource::Store,
        },
    }
}

fn wit_error(e: CoreError) -> wit::Error {
    match e {
        CoreError::Config(m) => wit::Error::Config(m),
        CoreError::OAuth(OAuthError {
            error,
            description,
            uri,
            status,
        }) => wit::Error::Oauth(wit::OauthError {
            error,
            error_description: description,
            error_uri: uri,
            status,
        }),
        CoreError::Server { status, message } => {
            wit::Error::Server(wit::ServerError { status, message })
        }
        CoreError::Transport(m) => wit::Error::Transport(m),
        CoreError::InvalidResponse(m) => wit::Error::InvalidResponse(m),
        CoreError::Timeout => wit::Error::Timeout,
        CoreError::Refused(m) => wit::Error::Refused(m),
    }
}

struct WasiPlatform;

impl WasiPlatform {
    fn with_bucket<R>(
        &self,
        store: &str,
        f: impl FnOnce(&keyvalue::store::Bucket) -> Result<R, keyvalue::store::Error>,
    ) -> Result<R, String> {
        BUCKETS.with(|buckets| {
            let mut buckets = buckets.borrow_mut();
            if !buckets.contains_key(store) {
                let bucket = keyvalue::store::open(store).map_err(kv_error)?;
                buckets.insert(store.to_string(), bucket);
            }
            f(&buckets[store]).map_err(kv_error)
        })
    }
}

fn kv_error(e: keyvalue::store::Error) -> String {
    use keyvalue::store::Error as E;
    match e {
        E::NoSuchStore => "no such store".into(),
        E::AccessDenied => {
            "access denied (is the store in the component's key_value_stores?)".into()
        }
        E::Other(m) => crate::error::sanitize(&m, 200),
    }
}

impl Platform for WasiPlatform {
    fn now_unix_ms(&self) -> u64 {
        let now = wasi::clocks::wall_clock::now();
        now.seconds
            .saturating_mul(1000)
            .saturating_add(u64::from(now.nanoseconds / 1_000_000))
    }

    fn monotonic_ms(&self) -> u64 {
        wasi::clocks::monotonic_clock::now() / 1_000_000
    }

    fn sleep_ms(&self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }

    fn random_bytes(&self, out: &mut [u8]) {
        let bytes = wasi::random::random::get_random_bytes(out.len() as u64);
        out.copy_from_slice(&bytes[..out.len()]);
    }

    fn send(&self, request: &HttpRequest, options: HttpOptions) -> Result<HttpResponse, CoreError> {
        send(request, options)
    }

    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with_bucket(store, |b| b.get(key))
    }

    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.with_bucket(store, |b| b.set(key, value))
    }

    fn kv_delete(&self, store: &str, key: &str) -> Result<(), String> {
        self.with_bucket(store, |b| b.delete(key))
    }

    fn kv_increment(&self, store: &str, key: &str) -> Result<u64, String> {
        // draft2 (Spin) counts in s64, draft (wasmtime) in u64; we only ever add 1.
        #[cfg(not(feature = "wasmtime-flavor"))]
        let count = self
            .with_bucket(store, |b| keyvalue::atomics::increment(b, key, 1))
            .and_then(|n| u64::try_from(n).map_err(|_| "lease counter is negative".into()));
        #[cfg(feature = "wasmtime-flavor")]
        let count = self.with_bucket(store, |b| keyvalue::atomics::increment(b, key, 1));
        count
    }

    fn log(&self, line: &str) {
        // One write for the line and its newline: `eprintln!` writes them separately,
        // and instances that share a stderr (a host's log pipe) then interleave lines.
        use std::io::Write;
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        let _ = std::io::stderr().write_all(buf.as_bytes());
    }
}

fn send(request: &HttpRequest, options: HttpOptions) -> Result<HttpResponse, CoreError> {
    let mut headers = request.headers.clone();
    headers.push((
        "content-length".into(),
        request.body.len().to_string().into_bytes(),
    ));
    let fields = http::Fields::from_list(&headers)
        .map_err(|e| CoreError::Refused(format!("the host refused a request header: {e:?}")))?;
    let outgoing = http::OutgoingRequest::new(fields);
    let method = match request.method.as_str() {
        "GET" => http::Method::Get,
        "POST" => http::Method::Post,
        "PUT" => http::Method::Put,
        "DELETE" => http::Method::Delete,
        "PATCH" => http::Method::Patch,
        "HEAD" => http::Method::Head,
        "OPTIONS" => http::Method::Options,
        other => http::Method::Other(other.to_string()),
    };
    let scheme = match request.url.origin.scheme {
        CoreScheme::Https => http::Scheme::Https,
        CoreScheme::Http => http::Scheme::Http,
    };
    let invalid = |what: &str| CoreError::Refused(format!("the host refused the request {what}"));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&request.url.authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&request.url.path_and_query))
        .map_err(|()| invalid("path"))?;

    let timeout_ns = options.timeout_ms.saturating_mul(1_000_000);
    let request_options = http::RequestOptions::new();
    // A host that does not support a timeout says so with Err; the others still apply.
    let _ = request_options.set_connect_timeout(Some(timeout_ns));
    let _ = request_options.set_first_byte_timeout(Some(timeout_ns));
    let _ = request_options.set_between_bytes_timeout(Some(timeout_ns));

    let body = outgoing
        .body()
        .map_err(|()| CoreError::Transport("request body unavailable".into()))?;
    let future = wasi::http::outgoing_handler::handle(outgoing, Some(request_options))
        .map_err(transport_error)?;

    // Write the body, remembering a failure: when the connection fails, the write sees a
    // closed stream first, and the response future has the real reason.
    let mut write_failed = false;
    if let Ok(stream) = body.write() {
        for chunk in request.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                write_failed = true;
                break;
            }
        }
    } else {
        write_failed = true;
    }
    if http::OutgoingBody::finish(body, None).is_err() {
        write_failed = true;
    }

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(transport_error(code)),
        Some(Err(())) | None => return Err(CoreError::Transport("response already taken".into())),
    };
    if write_failed {
        return Err(CoreError::Transport(
            "the request body could not be sent".into(),
        ));
    }
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| CoreError::Transport("response body unavailable".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| CoreError::Transport("response body unavailable".into()))?;
        while body.len() < options.read_limit {
            let want = (options.read_limit - body.len()).min(64 * 1024) as u64;
            match stream.blocking_read(want) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match http::http_error_code(&e) {
                        Some(code) => transport_error(code),
                        None => {
                            // Hosts do not all attach the error code to body-read
                            // failures; a timeout still has to be a timeout.
                            let text = e.to_debug_string();
                            let lower = text.to_ascii_lowercase();
                            if lower.contains("timeout") || lower.contains("timed out") {
                                CoreError::Timeout
                            } else {
                                CoreError::Transport(format!(
                                    "reading the response failed: {}",
                                    crate::error::sanitize(&text, 200)
                                ))
                            }
                        }
                    });
                }
            }
        }
    }
    drop(http::IncomingBody::finish(incoming));
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn transport_error(code: http::ErrorCode) -> CoreError {
    use http::ErrorCode as C;
    match code {
        C::ConnectionTimeout
        | C::ConnectionReadTimeout
        | C::ConnectionWriteTimeout
        | C::HttpResponseTimeout => CoreError::Timeout,
        C::DnsError(_) => CoreError::Transport("DNS lookup failed".into()),
        C::ConnectionRefused => CoreError::Transport("connection refused".into()),
        C::TlsCertificateError => CoreError::Transport("TLS certificate not trusted".into()),
        C::HttpProtocolError => CoreError::Transport(
            "HTTP protocol error (the connection closed without a complete response)".into(),
        ),
        C::HttpRequestDenied => {
            CoreError::Transport("the host denied the outbound request (allowed hosts?)".into())
        }
        other => CoreError::Transport(crate::error::sanitize(&format!("{other:?}"), 200)),
    }
}
