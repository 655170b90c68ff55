//! One request through `wasi:http/outgoing-handler`, its response read whole (bounded
//! by `read_limit`), and host error codes mapped to core errors.
//!
//! `timeout_ms` is also an absolute deadline for the whole exchange, kept here on the
//! monotonic clock: the host's per-phase timeouts (connect, first byte, between bytes)
//! reset on every chunk, so a server dripping one byte at a time would otherwise hold
//! a read open for hours.

use super::wasi;
use token_provider_core::{Error as CoreError, HttpOptions, HttpRequest, HttpResponse, sanitize};
use wasi::clocks::monotonic_clock;
use wasi::http::types as http;
use wasi::io::poll::{Pollable, poll};
use wasi::io::streams::StreamError;

/// The exchange's end, on the monotonic clock, and a timer that fires then (one per
/// exchange, made at the first wait: most exchanges never wait on anything but the head).
struct Deadline {
    at: u64,
    timer: Option<Pollable>,
}

impl Deadline {
    fn after_ms(ms: u64) -> Self {
        Deadline {
            at: monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)),
            timer: None,
        }
    }

    /// Block until `ready` is ready or the deadline passes; `false` on the deadline.
    fn wait(&mut self, ready: &Pollable) -> bool {
        let at = self.at;
        let timer = self
            .timer
            .get_or_insert_with(|| monotonic_clock::subscribe_instant(at));
        poll(&[ready, timer]).contains(&0)
    }
}

pub(super) fn send(request: &HttpRequest, options: HttpOptions) -> Result<HttpResponse, CoreError> {
    let mut deadline = Deadline::after_ms(options.timeout_ms);
    let outgoing = outgoing_request(request)?;
    let request_options = crate::with_timeouts!(http::RequestOptions::new(), options.timeout_ms);
    let body = outgoing
        .body()
        .map_err(|()| CoreError::Transport("request body unavailable".into()))?;
    let future = wasi::http::outgoing_handler::handle(outgoing, Some(request_options))
        .map_err(transport_error)?;
    // Write the body, remembering a failure: when the connection fails, the write sees a
    // closed stream first, and the response future has the real reason.
    let write_failed = !write_body(body, &request.body);

    if !deadline.wait(&future.subscribe()) {
        return Err(CoreError::Timeout);
    }
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
    let body = read_body(&incoming, options.read_limit, &mut deadline)?;
    drop(http::IncomingBody::finish(incoming));
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// The request's method, URL and headers (plus `content-length`, but not on a GET or
/// HEAD without a body, which has none on the wire either) as the host's type.
fn outgoing_request(request: &HttpRequest) -> Result<http::OutgoingRequest, CoreError> {
    let bodiless = request.body.is_empty() && matches!(request.method.as_str(), "GET" | "HEAD");
    let fields = if bodiless {
        http::Fields::from_list(&request.headers)
    } else {
        let mut headers = request.headers.clone();
        let length = request.body.len().to_string().into_bytes();
        headers.push(("content-length".into(), length));
        http::Fields::from_list(&headers)
    };
    let fields = fields.map_err(|e| {
        CoreError::Refused(
            match e {
                http::HeaderError::InvalidSyntax => {
                    "the host refused a request header: invalid-syntax"
                }
                http::HeaderError::Forbidden => "the host refused a request header: forbidden",
                http::HeaderError::Immutable => "the host refused a request header: immutable",
            }
            .into(),
        )
    })?;
    let outgoing = http::OutgoingRequest::new(fields);
    crate::set_request_target!(outgoing, request, http::Method, http::Scheme)?;
    Ok(outgoing)
}

/// Write and finish the request body; `false` if any of it failed. An empty body is
/// only finished.
fn write_body(body: http::OutgoingBody, bytes: &[u8]) -> bool {
    let written = bytes.is_empty() || write_all(&body, bytes);
    let finished = http::OutgoingBody::finish(body, None).is_ok();
    written && finished
}

/// `bytes` through the body's stream (dropped again before the body is finished).
fn write_all(body: &http::OutgoingBody, bytes: &[u8]) -> bool {
    let Ok(stream) = body.write() else {
        return false;
    };
    bytes
        .chunks(4096)
        .all(|chunk| stream.blocking_write_and_flush(chunk).is_ok())
}

/// The response body, up to `read_limit` bytes, by `deadline`. What the host has
/// buffered is read at once; only when nothing is there does it wait.
fn read_body(
    incoming: &http::IncomingBody,
    read_limit: usize,
    deadline: &mut Deadline,
) -> Result<Vec<u8>, CoreError> {
    let stream = incoming
        .stream()
        .map_err(|()| CoreError::Transport("response body unavailable".into()))?;
    let mut readable = None;
    let mut body = Vec::new();
    while body.len() < read_limit {
        let want = (read_limit - body.len()).min(64 * 1024) as u64;
        match stream.read(want) {
            Ok(chunk) if chunk.is_empty() => {
                let readable = readable.get_or_insert_with(|| stream.subscribe());
                if !deadline.wait(readable) {
                    return Err(CoreError::Timeout);
                }
            }
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(body_read_error(&e)),
        }
    }
    Ok(body)
}

fn body_read_error(e: &wasi::io::error::Error) -> CoreError {
    if let Some(code) = http::http_error_code(e) {
        return transport_error(code);
    }
    // Hosts do not all attach the error code to body-read failures; a timeout still has
    // to be a timeout.
    let text = e.to_debug_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("timeout") || lower.contains("timed out") {
        CoreError::Timeout
    } else {
        CoreError::Transport(format!(
            "reading the response failed: {}",
            sanitize(&text, 200)
        ))
    }
}

crate::error_code_mapping!(http::ErrorCode);
