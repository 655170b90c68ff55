//! The token interceptor's export: `wasi:http/client@0.3.0` `send`, in front of the
//! host's own. For each request of the app, [`decide`] says whether a token goes with
//! it; the request is rebuilt around the app's body with `Authorization: Bearer …` on a
//! copy of its headers, and sent on through the imported client.
//!
//! Tokens come from the provider's core over [`P3Platform`], which never blocks the
//! instance: a request that needs a fetch waits for it (with the instance's other
//! requests for the same token: single flight), every other request goes on. A token
//! due for renewal is served at once, and the renewal runs in a task of its own that
//! outlives the request's answer ([`Provider::get_token_deferring`]).

use super::Component;
use super::bindings::exports::wasi::http0_3_0::client::Guest;
use super::bindings::wasi::http0_3_0::client;
use super::bindings::wasi::http0_3_0::types::{
    ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme,
};
use super::bindings::{wit_future, wit_stream};
use super::platform::P3Platform;
use token_provider_core::{
    AccessToken, AfterAnswer, Body, BodyPlan, Decision, Error as CoreError, Event, IssuedToken,
    Origin, Outcome, Provider, RETRIED_AFTER_401, Reading, Sent, Source, TokenRequest,
    after_answer, body_plan, decide,
};
use token_provider_wasi::Instance;
use wit_bindgen::{FutureReader, StreamReader, StreamResult};

/// A request's trailers, as `wasi:http@0.3.0` passes them.
type Trailers = FutureReader<Result<Option<Fields>, ErrorCode>>;

/// The interceptor reads every key, its route table included.
const READING: Reading = Reading::Everything;

/// This instance's provider over WASI 0.3 (`'static`: a renewal task may outlive the
/// request that started it).
type P3Provider = Provider<'static, P3Platform>;

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
        // Without settings the interceptor cannot tell where tokens go: nothing is sent
        // (a request meant for an API would otherwise leave without its token).
        let instance: &'static Instance =
            token_provider_wasi::instance(READING).map_err(|e| error_code(&e))?;
        let settings = &instance.settings;
        let p = instance.provider(&P3Platform);
        let decision = decide(
            &settings.send,
            &settings.provider.client,
            scheme.as_deref(),
            authority.as_deref(),
            app_authorization,
        );
        match decision {
            Decision::PassThrough(why) => {
                let none = TokenRequest::default();
                audit(&p, Outcome::InterceptPassed, None, &none, |ev| {
                    ev.with_detail(why)
                });
                client::send(request).await
            }
            Decision::Refuse(e) => {
                let none = TokenRequest::default();
                audit(&p, Outcome::InterceptRefused, None, &none, |ev| {
                    ev.with_error(&e)
                });
                Err(ErrorCode::HttpRequestDenied)
            }
            Decision::Attach { origin, token } => {
                let retry_body_bytes = settings.send.intercept.retry_body_bytes;
                attach(p, request, &origin, &token, retry_body_bytes).await
            }
        }
    }
}

/// Get the token, send `request` with it, and on a 401 drop the token and do what
/// [`after_answer`] says: a body that can be sent again (none, or one of at most
/// `retry_body_bytes`, kept) is sent again with the next token; a streamed one goes
/// back to the app with the API's answer.
async fn attach(
    p: P3Provider,
    request: Request,
    origin: &Origin,
    token: &TokenRequest,
    retry_body_bytes: u64,
) -> Result<Response, ErrorCode> {
    let parts = Parts::of(&request);
    let plan = body_plan(&parts.headers.get("content-length"), retry_body_bytes);
    // Dropping the writer reports the body as delivered (`Ok`) to the app's side.
    let (_, body_result) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, body_result);
    let mut body = AppBody::take(body, trailers, plan).await?;
    let mut retries = 0u8;
    loop {
        let issued = token_for(p, token).await.map_err(|e| {
            audit(&p, Outcome::InterceptError, Some(origin), token, |ev| {
                ev.with_error(&e)
            });
            error_code(&e)
        })?;
        let (contents, trailers) = body.next_send();
        let outgoing = parts.build(&issued.token, contents, trailers)?;
        let response = client::send(outgoing).await.map_err(|code| {
            audit(&p, Outcome::InterceptError, Some(origin), token, |ev| {
                ev.with_detail(&format!("the API was not reached: {code:?}"))
            });
            code
        })?;
        let status = response.get_status_code();
        let sent = Sent {
            retries,
            fresh: issued.source == Source::Fresh,
        };
        let next = after_answer(status, body.shape(), sent);
        if next != AfterAnswer::Deliver {
            p.invalidate_token(token, &issued.token);
        }
        if next == AfterAnswer::InvalidateAndRetry {
            retries += 1;
            continue;
        }
        audit_ok(&p, origin, token, status, &issued.token, retries > 0);
        return Ok(response);
    }
}

/// The token to send now. A renewal this request is to run (the token is due and this
/// instance took the lease) goes on in a task of its own after the request.
async fn token_for(p: P3Provider, token: &TokenRequest) -> Result<IssuedToken, CoreError> {
    let (issued, renewal) = p.get_token_deferring(token).await?;
    if let Some(renewal) = renewal {
        wit_bindgen::spawn_local(async move {
            p.renew(renewal).await;
        });
    }
    Ok(issued)
}

/// The `ok` line: the API answered `status` to a request that carried `sent`.
fn audit_ok(
    p: &P3Provider,
    origin: &Origin,
    token: &TokenRequest,
    status: u16,
    sent: &AccessToken,
    retried: bool,
) {
    audit(p, Outcome::InterceptOk, Some(origin), token, |mut ev| {
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

/// The app's request body as the interceptor holds it.
enum AppBody {
    /// It ended without a byte (trailers, if any, kept).
    Empty(Option<Fields>),
    /// It ended within `retry_body_bytes`: kept whole, with its trailers.
    Kept(Vec<u8>, Option<Fields>),
    /// Streamed on as it comes, once (`None` once sent).
    Streamed(Option<(StreamReader<u8>, Trailers)>),
}

impl AppBody {
    /// Take the app's body as `plan` says. Reading stops at the end of the body, or
    /// once past the plan's limit: what was read is then sent first, and a task copies
    /// the rest as it comes, one chunk at a time (memory stays at the limit plus a
    /// chunk).
    async fn take(
        mut body: StreamReader<u8>,
        trailers: Trailers,
        plan: BodyPlan,
    ) -> Result<Self, ErrorCode> {
        let limit = match plan {
            BodyPlan::Stream => return Ok(AppBody::Streamed(Some((body, trailers)))),
            BodyPlan::Read { limit } => usize::try_from(limit).unwrap_or(usize::MAX),
        };
        let mut kept = Vec::new();
        loop {
            let (result, chunk) = body.read(Vec::with_capacity(CHUNK)).await;
            kept.extend_from_slice(&chunk);
            if kept.len() > limit {
                return Ok(AppBody::Streamed(Some((continued(kept, body), trailers))));
            }
            match result {
                StreamResult::Complete(_) => {}
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
        // The whole body is here: its trailers come next (or the app's error).
        let trailers = trailers.await?;
        Ok(if kept.is_empty() {
            AppBody::Empty(trailers)
        } else {
            AppBody::Kept(kept, trailers)
        })
    }

    fn shape(&self) -> Body {
        match self {
            AppBody::Empty(_) => Body::Empty,
            AppBody::Kept(..) => Body::Kept,
            AppBody::Streamed(_) => Body::Bytes,
        }
    }

    /// The body and trailers for one send: a kept body as a new stream each time, a
    /// streamed one the first time only (never sent twice: `after_answer`).
    fn next_send(&mut self) -> (Option<StreamReader<u8>>, Option<Trailers>) {
        match self {
            AppBody::Empty(trailers) => (None, Some(trailers_of(trailers.as_ref()))),
            AppBody::Kept(bytes, trailers) => (
                Some(stream_of(bytes.clone())),
                Some(trailers_of(trailers.as_ref())),
            ),
            AppBody::Streamed(taken) => match taken.take() {
                Some((body, trailers)) => (Some(body), Some(trailers)),
                None => (None, None),
            },
        }
    }
}

/// A stream of `bytes`, written by a task.
fn stream_of(bytes: Vec<u8>) -> StreamReader<u8> {
    let (mut writer, reader) = wit_stream::new::<u8>();
    wit_bindgen::spawn_local(async move {
        let _ = writer.write_all(bytes).await;
    });
    reader
}

/// A trailers future that resolves to a copy of `trailers`.
fn trailers_of(trailers: Option<&Fields>) -> Trailers {
    let (writer, reader) = wit_future::new(|| Ok(None));
    if let Some(fields) = trailers.map(Fields::clone) {
        wit_bindgen::spawn_local(async move {
            let _ = writer.write(Ok(Some(fields))).await;
        });
    }
    reader
}

/// A stream that starts with `first` (bytes already read) and goes on with the rest of
/// `body`, copied by a task one chunk at a time.
fn continued(first: Vec<u8>, mut body: StreamReader<u8>) -> StreamReader<u8> {
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
    reader
}

/// What is kept of the app's request to build it again, with a token, once or more.
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
        trailers: Option<Trailers>,
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

/// One `intercept.send` line.
fn audit(
    p: &P3Provider,
    outcome: Outcome,
    origin: Option<&Origin>,
    token: &TokenRequest,
    fill: impl for<'e> FnOnce(Event<'e>) -> Event<'e>,
) {
    let scopes = token.scopes.as_ref().unwrap_or(&p.settings.client.scope);
    let mut ev = fill(Event::new(outcome, &p.settings.audit, scopes));
    ev.api_origin = origin.map(|o| o.to_string());
    p.audit(&ev);
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
