//! The core's [`Platform`] for a WASIp3 instance that serves many requests at once:
//! the two calls that wait are async over WASI 0.3 (the token request through the
//! imported `wasi:http/client@0.3.0`, waits through `wasi:clocks/monotonic-clock@0.3.0`
//! `wait-for`), so while one request fetches a token the instance serves the others.
//! Clocks, random numbers, the store and stderr are the short synchronous WASI 0.2
//! calls of [`WasiPlatform`].

use super::bindings::wasi::clocks0_3_0::monotonic_clock;
use super::bindings::wasi::http0_3_0::client;
use super::bindings::wasi::http0_3_0::types::{
    ErrorCode, Fields, HeaderError, Method, Request, RequestOptions, Response, Scheme,
};
use super::bindings::{wit_future, wit_stream};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use token_provider_core::{Error as CoreError, HttpOptions, HttpRequest, HttpResponse, Platform};
use token_provider_wasi::WasiPlatform;
use wit_bindgen::StreamResult;

token_provider_wasi::error_code_mapping!(ErrorCode);

/// What an audit line says when a request to the API got `code` (the same words as a
/// failed token request; a derived `Debug` would bring kilobytes of formatting code).
pub(crate) fn not_reached(code: &ErrorCode) -> String {
    format!("the API was not reached: {}", transport_error(code.clone()))
}

/// [`Platform`] over this instance's imports, waiting without blocking.
pub struct P3Platform;

impl Platform for P3Platform {
    fn now_unix_ms(&self) -> u64 {
        WasiPlatform.now_unix_ms()
    }

    fn monotonic_ms(&self) -> u64 {
        WasiPlatform.monotonic_ms()
    }

    async fn sleep_ms(&self, ms: u64) {
        monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
    }

    fn random_bytes(&self, out: &mut [u8]) {
        WasiPlatform.random_bytes(out)
    }

    /// One exchange, whole, within `timeout_ms` from start to the last byte (the host's
    /// per-phase timeouts reset on every chunk: a server dripping bytes would otherwise
    /// hold it open for hours).
    async fn send(
        &self,
        request: &HttpRequest,
        options: HttpOptions,
    ) -> Result<HttpResponse, CoreError> {
        let exchange = exchange(request, options);
        within(options.timeout_ms, exchange)
            .await
            .unwrap_or(Err(CoreError::Timeout))
    }

    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        WasiPlatform.kv_get(store, key)
    }

    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), String> {
        WasiPlatform.kv_set(store, key, value)
    }

    fn kv_delete(&self, store: &str, key: &str) -> Result<(), String> {
        WasiPlatform.kv_delete(store, key)
    }

    fn kv_increment(&self, store: &str, key: &str) -> Result<u64, String> {
        WasiPlatform.kv_increment(store, key)
    }

    fn log(&self, line: &str) {
        WasiPlatform.log(line)
    }
}

/// `future`'s output, or `None` if `ms` milliseconds pass first (then `future` is
/// dropped, which cancels what it was waiting for).
pub(crate) async fn within<F: Future>(ms: u64, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = pin!(monotonic_clock::wait_for(ms.saturating_mul(1_000_000)));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

async fn exchange(request: &HttpRequest, options: HttpOptions) -> Result<HttpResponse, CoreError> {
    let outgoing = outgoing_request(request, options.timeout_ms)?;
    let response = client::send(outgoing).await.map_err(transport_error)?;
    let status = response.get_status_code();
    let headers = response.get_headers().copy_all();
    let (_, done) = wit_future::new(|| Ok(()));
    let (mut body, trailers) = Response::consume_body(response, done);
    let mut read = Vec::new();
    while read.len() < options.read_limit {
        let want = (options.read_limit - read.len()).min(64 * 1024);
        let (result, chunk) = body.read(Vec::with_capacity(want)).await;
        read.extend_from_slice(&chunk);
        match result {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    if read.len() < options.read_limit {
        // The whole body came: a failure mid-body shows in the trailers' result.
        if let Err(code) = trailers.await {
            return Err(transport_error(code));
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body: read,
    })
}

/// The request with its method, URL, headers (plus `content-length`) and body, and the
/// same timeout for connect, first byte and between bytes.
fn outgoing_request(request: &HttpRequest, timeout_ms: u64) -> Result<Request, CoreError> {
    let mut headers = request.headers.clone();
    headers.push((
        "content-length".into(),
        request.body.len().to_string().into_bytes(),
    ));
    let fields = Fields::from_list(&headers).map_err(|e| {
        CoreError::Refused(format!(
            "the host refused a request header: {}",
            match e {
                HeaderError::InvalidSyntax => "invalid-syntax",
                HeaderError::Forbidden => "forbidden",
                HeaderError::Immutable => "immutable",
                HeaderError::SizeExceeded => "size-exceeded",
                HeaderError::Other(_) => "other",
            }
        ))
    })?;
    let options = token_provider_wasi::with_timeouts!(RequestOptions::new(), timeout_ms);
    let (mut writer, contents) = wit_stream::new::<u8>();
    let body = request.body.clone();
    wit_bindgen::spawn_local(async move {
        // A failed write shows as the exchange's error (the host reports it).
        let _ = writer.write_all(body).await;
    });
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (outgoing, _) = Request::new(fields, Some(contents), trailers, Some(options));
    token_provider_wasi::set_request_target!(outgoing, request, Method, Scheme)?;
    Ok(outgoing)
}
