//! The token interceptor's export: `wasi:http/client@0.3.0` `send`, in front of the
//! host's own. For each request of the app, [`decide`](token_provider_core::decide) says whether a token
//! goes with it; the request is rebuilt around the app's body stream (never buffered)
//! with `Authorization: Bearer …` on a copy of its headers, and sent on through the
//! imported client. Tokens come from the provider's core (memory, store, lease,
//! single flight), fetched through `wasi:http/outgoing-handler@0.2.6`.

use super::Component;
use super::bindings::exports::wasi::http0_3_0::client::Guest;
use super::bindings::wasi::http0_3_0::client;
use super::bindings::wasi::http0_3_0::types::{
    ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme,
};
use super::bindings::{wit_future, wit_stream};
use token_provider_core::{
    AccessToken, AfterAnswer, Body, Decision, Error as CoreError, Event, Origin, Outcome, Provider,
    RETRIED_AFTER_401, Reading, Settings, TokenRequest, after_answer, decide, promises_body,
};
use token_provider_wasi::{WasiPlatform, with_provider as with_instance};
use wit_bindgen::{FutureReader, StreamReader, StreamResult};

/// The interceptor reads every key, its route table included.
const READING: Reading = Reading::Everything;

/// `f` with this instance's settings and provider.
fn with_provider<R>(
    f: impl FnOnce(&Settings, &Provider<'_, WasiPlatform>) -> Result<R, CoreError>,
) -> Result<R, CoreError> {
    with_instance(READING, f)
}

impl Guest for Component {
    async fn send(request: Request) -> Result<Response, ErrorCode> {
        // (The headers handle is a child of the request: dropped before the request is
        // taken apart.)
        let app_authorization = request.get_headers().has("authorization");
        let scheme = request.get_scheme().map(|s| match s {
            Scheme::Http => "http".to_string(),
            Scheme::Https => "https".to_string(),
            Scheme::Other(other) => other,
        });
        let authority = request.get_authority();
        let decision = with_provider(|s, p| {
            Ok(decide(
                &s.send,
                &p.settings.client,
                scheme.as_deref(),
                authority.as_deref(),
                app_authorization,
            ))
        });
        match decision {
            // Without settings the interceptor cannot tell where tokens go: nothing is
            // sent (a request meant for an API would otherwise leave without its token).
            Err(e) => Err(error_code(&e)),
            Ok(Decision::PassThrough(why)) => {
                let none = TokenRequest::default();
                audit(Outcome::InterceptPassed, None, &none, |ev| {
                    ev.with_detail(why)
                });
                client::send(request).await
            }
            Ok(Decision::Refuse(e)) => {
                let none = TokenRequest::default();
                audit(Outcome::InterceptRefused, None, &none, |ev| {
                    ev.with_error(&e)
                });
                Err(ErrorCode::HttpRequestDenied)
            }
            Ok(Decision::Attach { origin, token }) => attach(request, &origin, &token).await,
        }
    }
}

/// Get the token, send `request` with it, and on a 401 drop the token: a request
/// without a body is then sent once more with a new one; one with a body goes back to
/// the app as the API answered (`after_answer`).
async fn attach(
    request: Request,
    origin: &Origin,
    token: &TokenRequest,
) -> Result<Response, ErrorCode> {
    let parts = Parts::of(&request);
    let promised = promises_body(&parts.headers.get("content-length"));
    // Dropping the writer reports the body as delivered (`Ok`) to the app's side.
    let (_, body_result) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, body_result);
    // A promised body is streamed on as it comes; otherwise the first chunk tells
    // whether there is one (an empty body can be sent twice).
    let mut body = if promised {
        Some(body)
    } else {
        peek(body).await
    };
    let shape = if body.is_some() {
        Body::Bytes
    } else {
        Body::Empty
    };
    let mut trailers = Some(trailers);
    let mut retried = false;
    loop {
        let issued = with_provider(|_, p| p.get_token(token)).map_err(|e| {
            audit(Outcome::InterceptError, Some(origin), token, |ev| {
                ev.with_error(&e)
            });
            error_code(&e)
        })?;
        let outgoing = parts.build(&issued.token, body.take(), trailers.take())?;
        let response = client::send(outgoing).await.map_err(|code| {
            audit(Outcome::InterceptError, Some(origin), token, |ev| {
                ev.with_detail(&format!("the API was not reached: {code:?}"))
            });
            code
        })?;
        let status = response.get_status_code();
        let next = after_answer(status, shape, retried);
        if next != AfterAnswer::Deliver {
            let _ = with_provider(|_, p| {
                p.invalidate_token(token, &issued.token);
                Ok(())
            });
        }
        if next == AfterAnswer::InvalidateAndRetry {
            retried = true;
            continue;
        }
        audit_ok(origin, token, status, &issued.token, retried);
        return Ok(response);
    }
}

/// The `ok` line: the API answered `status` to a request that carried `sent`.
fn audit_ok(origin: &Origin, token: &TokenRequest, status: u16, sent: &AccessToken, retried: bool) {
    audit(Outcome::InterceptOk, Some(origin), token, |mut ev| {
        ev.status = Some(status);
        ev.fingerprint = Some(sent.fingerprint());
        if retried {
            ev = ev.with_detail(RETRIED_AFTER_401);
        }
        ev
    });
}

/// How many bytes are read from the app's body at a time when it has to be looked at.
const CHUNK: usize = 64 * 1024;

/// The app's body if it has a byte, as a stream that starts with that byte; `None`
/// when it ended empty. The first chunk read is written to a new stream, and a task
/// copies the rest as it comes, one chunk at a time (memory stays at a chunk).
async fn peek(mut body: StreamReader<u8>) -> Option<StreamReader<u8>> {
    let first = loop {
        let (result, chunk) = body.read(Vec::with_capacity(CHUNK)).await;
        match result {
            StreamResult::Complete(_) if chunk.is_empty() => continue,
            StreamResult::Complete(_) => break chunk,
            StreamResult::Dropped | StreamResult::Cancelled => return None,
        }
    };
    let (mut writer, reader) = wit_stream::new::<u8>();
    wit_bindgen::spawn_local(async move {
        let mut chunk = first;
        loop {
            if !writer.write_all(chunk).await.is_empty() {
                return; // The receiving side went away.
            }
            let (result, next) = body.read(Vec::with_capacity(CHUNK)).await;
            match result {
                StreamResult::Complete(_) => chunk = next,
                StreamResult::Dropped | StreamResult::Cancelled => return,
            }
        }
    });
    Some(reader)
}

/// What is kept of the app's request to build it again, with a token, once or twice.
struct Parts {
    headers: Fields,
    method: Method,
    scheme: Option<Scheme>,
    authority: Option<String>,
    path: Option<String>,
    options: Option<RequestOptions>,
}

impl Parts {
    fn of(request: &Request) -> Self {
        Parts {
            headers: request.get_headers().clone(),
            method: request.get_method(),
            scheme: request.get_scheme(),
            authority: request.get_authority(),
            path: request.get_path_with_query(),
            options: request.get_options(),
        }
    }

    /// The request with `Authorization: Bearer {token}` on a copy of its headers (the
    /// app's own `Authorization` was checked absent), around `body` and `trailers` (none
    /// given: an empty body and no trailers).
    fn build(
        &self,
        token: &AccessToken,
        body: Option<StreamReader<u8>>,
        trailers: Option<FutureReader<Result<Option<Fields>, ErrorCode>>>,
    ) -> Result<Request, ErrorCode> {
        let headers = self.headers.clone();
        let bearer = format!("Bearer {}", token.expose());
        headers
            .set("authorization", &[bearer.into_bytes()])
            .map_err(|_| ErrorCode::InternalError(Some("could not set Authorization".into())))?;
        let trailers = trailers.unwrap_or_else(|| wit_future::new(|| Ok(None)).1);
        let options = self.options.as_ref().map(RequestOptions::clone);
        let (outgoing, _) = Request::new(headers, body, trailers, options);
        let invalid = |_| ErrorCode::HttpRequestUriInvalid;
        outgoing.set_method(&self.method).map_err(invalid)?;
        outgoing.set_scheme(self.scheme.as_ref()).map_err(invalid)?;
        outgoing
            .set_authority(self.authority.as_deref())
            .map_err(invalid)?;
        outgoing
            .set_path_with_query(self.path.as_deref())
            .map_err(invalid)?;
        Ok(outgoing)
    }
}

/// One `intercept.send` line, if the settings load (they did, for any decision).
fn audit(
    outcome: Outcome,
    origin: Option<&Origin>,
    token: &TokenRequest,
    fill: impl for<'e> FnOnce(Event<'e>) -> Event<'e>,
) {
    let _ = with_provider(|_, p| {
        let scopes = token.scopes.as_ref().unwrap_or(&p.settings.client.scope);
        let mut ev = fill(Event::new(outcome, &p.settings.audit, scopes));
        ev.api_origin = origin.map(|o| o.to_string());
        p.audit(&ev);
        Ok(())
    });
}

/// The `error-code` an HTTP client expects for a core error (its text carries no
/// secret and no token).
fn error_code(e: &CoreError) -> ErrorCode {
    match e {
        CoreError::Timeout => ErrorCode::ConnectionTimeout,
        CoreError::Config(_) => ErrorCode::ConfigurationError,
        CoreError::Refused(_) => ErrorCode::HttpRequestDenied,
        other => ErrorCode::InternalError(Some(format!("token interceptor: {other}"))),
    }
}
