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
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use token_provider_core::{
    AccessToken, AfterAnswer, Body, BodyPlan, Decision, Error as CoreError, Event, IssuedToken,
    Origin, Outcome, Provider, RETRIED_AFTER_401, RETRIED_TWICE_AFTER_401, Reading, Sent, Source,
    TokenRequest, after_answer, body_plan, decide, nonce_asked, retry_with_nonce, sanitize,
    settings::SendSettings, token_headers,
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
        let method = request.get_method();
        let scheme = request.get_scheme();
        let scheme_name = scheme.as_ref().map(|s| match s {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Other(other) => other.as_str(),
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
            method_name(&method),
            scheme_name,
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
                // The scheme goes out as the origin was checked: an app's `HTTPS`
                // (`other`, to the host: not TLS) would send the token in clear.
                let checked = match origin.scheme {
                    token_provider_core::Scheme::Https => Scheme::Https,
                    token_provider_core::Scheme::Http => Scheme::Http,
                };
                let parts = Parts::of(&request, method, Some(checked), authority);
                attach(p, request, parts, &origin, &token, &settings.send).await
            }
        }
    }
}

/// Get the token, send `request` with it, and on a 401 that blames the token
/// (`renew_on_401`) drop it and do what [`after_answer`] says: a body that can be sent
/// again (none, or one of at most `retry_body_bytes`, kept) is sent again with the next
/// token; a streamed one goes back to the app with the API's answer. A young token the
/// provider keeps (`rejected_by`) ends the retries.
async fn attach(
    p: P3Provider,
    request: Request,
    parts: Parts,
    origin: &Origin,
    token: &TokenRequest,
    rules: &SendSettings,
) -> Result<Response, ErrorCode> {
    let retry_body_bytes = rules.intercept.retry_body_bytes;
    let plan = body_plan(&parts.headers.get("content-length"), retry_body_bytes);
    // Dropping the writer reports the body as delivered (`Ok`) to the app's side.
    let (_, body_result) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, body_result);
    let mut body = AppBody::take(body, trailers, plan).await?;
    let mut retries = 0u8;
    let mut nonce_retried = false;
    loop {
        let issued = token_for(p, token, origin).await?;
        let (contents, trailers) = body.next_send();
        let outgoing = parts.build(&p, &issued, origin, contents, trailers)?;
        let response = sent_on(&p, outgoing, origin, token).await?;
        let status = response.get_status_code();
        let sent = Sent {
            retries,
            fresh: issued.source == Source::Fresh,
        };
        let challenges = challenges(&response);
        // A DPoP nonce asked for and given: the token is fine; again at once with a
        // proof that carries it, if the body can go again.
        let nonces = dpop_nonces(&issued, &response);
        if nonce_asked(&p, &issued, origin, (status, &challenges, &nonces))
            && retry_with_nonce(body.shape().await, nonce_retried)
        {
            nonce_retried = true;
            continue;
        }
        let blamed = status == 401
            && rules
                .renew_on_401
                .blames_token(&challenges, issued.token_type);
        // Only a 401 that blames the token asks what the body was (and may wait for
        // the copy to tell).
        let shape = if blamed {
            body.shape().await
        } else {
            Body::Bytes
        };
        let next = after_answer(status, blamed, shape, sent);
        let dropped = next != AfterAnswer::Deliver && p.rejected_by(token, &issued.token, origin);
        if next == AfterAnswer::InvalidateAndRetry && dropped {
            retries += 1;
            continue;
        }
        let note = (status == 401 && !blamed).then_some(KEPT_AFTER_401);
        audit_ok(&p, origin, token, (status, note), &issued.token, retries);
        return Ok(response);
    }
}

/// `outgoing` through the imported client; not reached: an `error` line for `origin`.
async fn sent_on(
    p: &P3Provider,
    outgoing: Request,
    origin: &Origin,
    token: &TokenRequest,
) -> Result<Response, ErrorCode> {
    client::send(outgoing).await.inspect_err(|code| {
        audit(p, Outcome::InterceptError, Some(origin), token, |ev| {
            ev.with_detail(&sanitize(&super::platform::not_reached(code), 200))
        });
    })
}

/// The token to send now. A renewal this request is to run (the token is due and this
/// instance took the lease) goes on in a task of its own after the request. No token:
/// an `error` line for `origin`, and the error code the app gets.
async fn token_for(
    p: P3Provider,
    token: &TokenRequest,
    origin: &Origin,
) -> Result<IssuedToken, ErrorCode> {
    let (issued, renewal) = p.get_token_deferring(token).await.map_err(|e| {
        audit(&p, Outcome::InterceptError, Some(origin), token, |ev| {
            ev.with_error(&e)
        });
        error_code(&e)
    })?;
    if let Some(renewal) = renewal {
        wit_bindgen::spawn_local(async move {
            p.renew(renewal).await;
        });
    }
    Ok(issued)
}

/// The `DPoP-Nonce` values of an API's answer to a request with a DPoP token (none
/// are looked at for a Bearer token).
fn dpop_nonces(issued: &IssuedToken, response: &Response) -> Vec<Vec<u8>> {
    match issued.dpop {
        Some(_) => response.get_headers().get("dpop-nonce"),
        None => Vec::new(),
    }
}

/// The `WWW-Authenticate` values of an API's answer, if it is a 401 (none are looked
/// at otherwise).
fn challenges(response: &Response) -> Vec<Vec<u8>> {
    if response.get_status_code() != 401 {
        return Vec::new();
    }
    response.get_headers().get("www-authenticate")
}

/// Said when a 401 did not blame the token.
const KEPT_AFTER_401: &str = "401 without Bearer error=\"invalid_token\" (renew_on_401): the token kept, the request not resent";

/// The `ok` line: the API answered `status` (with a `note`) to a request that carried
/// `sent`, after `retries` resends. Not even the fingerprint is computed for a line not
/// written.
fn audit_ok(
    p: &P3Provider,
    origin: &Origin,
    token: &TokenRequest,
    (status, note): (u16, Option<&str>),
    sent: &AccessToken,
    retries: u8,
) {
    if !p.audits(Outcome::InterceptOk, retries > 0 || note.is_some()) {
        return;
    }
    audit(p, Outcome::InterceptOk, Some(origin), token, |mut ev| {
        ev.status = Some(status);
        ev.fingerprint = Some(sent.fingerprint());
        match (retries, note) {
            (_, Some(note)) if retries == 0 => ev.with_detail(note),
            (0, _) => ev,
            (1, _) => ev.with_detail(RETRIED_AFTER_401),
            _ => ev.with_detail(RETRIED_TWICE_AFTER_401),
        }
    });
}

/// How many bytes are read from the app's body at a time when it is copied.
const CHUNK: usize = 16 * 1024;

/// The app's request body as the interceptor holds it.
enum AppBody {
    /// It ended without a byte; its trailers, if any, are kept.
    Empty(Option<Fields>),
    /// Copied on as it streams by a task, which keeps it (and its trailers) while it
    /// is within `retry_body_bytes`: the request leaves with the first chunk, and
    /// after a 401 the copy says whether it can be sent again.
    Copied {
        /// The first send's body and trailers (`None` once sent).
        first: Option<(StreamReader<u8>, Trailers)>,
        /// Shared with the copy task: what it kept, and when to stop feeding the host.
        copy: Rc<Copy>,
        /// The kept body, once waited for.
        known: Option<Option<KeptBody>>,
    },
    /// Passed on unread (`content-length` above `retry_body_bytes`): sent once.
    Streamed(Option<(StreamReader<u8>, Trailers)>),
}

/// A body that ended within `retry_body_bytes` (kept as read, chunk by chunk: no
/// buffer grows past the limit, and a resend shares them), and its trailers.
struct KeptBody {
    chunks: Rc<Vec<Vec<u8>>>,
    trailers: Option<Fields>,
}

/// Between a request's task and its body's copy task.
#[derive(Default)]
struct Copy {
    /// What the copy kept (`None`: more than `retry_body_bytes`, or the body failed).
    kept: Oneshot<Option<KeptBody>>,
    /// Set after a 401: the host has its answer, so the copy stops feeding it the body
    /// (a host may keep the stream open without reading it) and only keeps the rest.
    stop: Cell<bool>,
    stop_waker: RefCell<Option<Waker>>,
}

impl Copy {
    fn stop(&self) {
        self.stop.set(true);
        if let Some(waker) = self.stop_waker.take() {
            waker.wake();
        }
    }

    /// Ready once `stop` was called.
    async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            if self.stop.get() {
                Poll::Ready(())
            } else {
                *self.stop_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl AppBody {
    /// Take the app's body as `plan` says: passed on unread, or its first chunk read
    /// (an empty body ends there: most requests have none) and the rest copied on
    /// and kept.
    async fn take(
        mut body: StreamReader<u8>,
        trailers: Trailers,
        plan: BodyPlan,
    ) -> Result<Self, ErrorCode> {
        let limit = match plan {
            BodyPlan::Stream => return Ok(AppBody::Streamed(Some((body, trailers)))),
            BodyPlan::Read { limit } => usize::try_from(limit).unwrap_or(usize::MAX),
        };
        let (first, ended) = loop {
            let (result, chunk) = body.read(Vec::with_capacity(CHUNK)).await;
            let ended = !matches!(result, StreamResult::Complete(_));
            if !chunk.is_empty() || ended {
                break (chunk, ended);
            }
        };
        if first.is_empty() {
            return Ok(AppBody::Empty(trailers.await?));
        }
        let copy = Rc::new(Copy::default());
        let sent = copy_and_keep((first, ended), body, trailers, limit, copy.clone());
        Ok(AppBody::Copied {
            first: Some(sent),
            copy,
            known: None,
        })
    }

    /// What the body is for the 401 rule; waits for the copy only as far as needed
    /// (to the body's end, or past `retry_body_bytes`).
    async fn shape(&mut self) -> Body {
        match self {
            AppBody::Empty(_) => Body::Empty,
            AppBody::Streamed(_) => Body::Bytes,
            AppBody::Copied { copy, known, .. } => {
                if known.is_none() {
                    copy.stop();
                    *known = Some(copy.kept.take().await);
                }
                match known {
                    Some(Some(k)) if k.chunks.is_empty() => Body::Empty,
                    Some(Some(_)) => Body::Kept,
                    _ => Body::Bytes,
                }
            }
        }
    }

    /// The body and trailers for one send: the first send takes the copy (or the app's
    /// own stream), a resend a new stream of the kept bytes (never a streamed body:
    /// `after_answer`).
    fn next_send(&mut self) -> (Option<StreamReader<u8>>, Option<Trailers>) {
        match self {
            AppBody::Empty(trailers) => (None, Some(trailers_of(trailers.as_ref()))),
            AppBody::Streamed(taken) => match taken.take() {
                Some((body, trailers)) => (Some(body), Some(trailers)),
                None => (None, None),
            },
            AppBody::Copied { first, known, .. } => match (first.take(), known) {
                (Some((body, trailers)), _) => (Some(body), Some(trailers)),
                (None, Some(Some(k))) => (
                    (!k.chunks.is_empty()).then(|| stream_of(k.chunks.clone())),
                    Some(trailers_of(k.trailers.as_ref())),
                ),
                (None, _) => (None, None),
            },
        }
    }
}

/// A stream and trailers that carry the app's body (`first` chunk already read, and
/// whether the body `ended` with it; then the rest of `body`) and `trailers` on, copied
/// by a task one chunk at a time. The task keeps the chunks while they stay within
/// `limit` and tells `copy.kept` what it kept as soon as that is known; after
/// `copy.stop` it feeds the host no more and only keeps. Memory stays at `limit` plus
/// a chunk.
fn copy_and_keep(
    (first, ended): (Vec<u8>, bool),
    mut body: StreamReader<u8>,
    trailers: Trailers,
    limit: usize,
    copy: Rc<Copy>,
) -> (StreamReader<u8>, Trailers) {
    let (writer, reader) = wit_stream::new::<u8>();
    let (trailers_writer, trailers_reader) = wit_future::new(|| Ok(None));
    wit_bindgen::spawn_local(async move {
        let mut out = Some(writer);
        let (mut chunks, mut len) = (Some(Vec::new()), 0usize);
        let mut next = Some((first, ended));
        let ended = loop {
            let (ended, chunk) = match next.take() {
                Some((first, ended)) => (ended, first),
                None => {
                    let (result, chunk) = body.read(Vec::with_capacity(CHUNK)).await;
                    (!matches!(result, StreamResult::Complete(_)), chunk)
                }
            };
            if copy.stop.get() {
                out = None;
            }
            if !chunk.is_empty() {
                keep(&mut chunks, &mut len, &chunk, limit, &copy);
                if let Some(w) = &mut out {
                    match first_of(w.write_all(chunk), copy.stopped()).await {
                        // All written.
                        Some(rest) if rest.is_empty() => {}
                        // The host stopped reading, or a 401 says it has its answer.
                        _ => out = None,
                    }
                }
                if out.is_none() && chunks.is_none() {
                    break false; // Nobody wants the rest.
                }
            }
            if ended {
                break true;
            }
        };
        drop(out);
        if !ended {
            return;
        }
        let trailers = trailers.await;
        match (&trailers, chunks) {
            (Ok(t), Some(chunks)) => copy.kept.set(Some(KeptBody {
                chunks: Rc::new(chunks),
                trailers: t.as_ref().map(Fields::clone),
            })),
            _ => copy.kept.set(None),
        }
        if !copy.stop.get() {
            let _ = trailers_writer.write(trailers).await;
        }
    });
    (reader, trailers_reader)
}

/// Keep `chunk` with the others while they stay within `limit`; past it, keep none and
/// say so (`copy.kept`).
fn keep(
    chunks: &mut Option<Vec<Vec<u8>>>,
    len: &mut usize,
    chunk: &[u8],
    limit: usize,
    copy: &Copy,
) {
    match chunks {
        Some(kept) if *len + chunk.len() <= limit => {
            *len += chunk.len();
            kept.push(chunk.to_vec());
        }
        Some(_) => {
            *chunks = None;
            copy.kept.set(None);
        }
        None => {}
    }
}

/// `future`'s output, or `None` if `other` is ready first (then `future` is dropped).
async fn first_of<F: Future, G: Future<Output = ()>>(future: F, other: G) -> Option<F::Output> {
    let (mut future, mut other) = (std::pin::pin!(future), std::pin::pin!(other));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        other.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// One value handed from the copy task to the request's task (the first `set` wins).
struct Oneshot<T> {
    value: RefCell<Option<T>>,
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot {
            value: RefCell::new(None),
            set: Cell::new(false),
            waker: RefCell::new(None),
        }
    }
}

impl<T> Oneshot<T> {
    fn set(&self, value: T) {
        if self.set.replace(true) {
            return;
        }
        *self.value.borrow_mut() = Some(value);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The value, once set (taken: asked once).
    async fn take(&self) -> T {
        std::future::poll_fn(|cx| match self.value.borrow_mut().take() {
            Some(value) => Poll::Ready(value),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A stream of the kept `chunks`, written by a task one chunk at a time.
fn stream_of(chunks: Rc<Vec<Vec<u8>>>) -> StreamReader<u8> {
    let (mut writer, reader) = wit_stream::new::<u8>();
    wit_bindgen::spawn_local(async move {
        for chunk in chunks.iter() {
            if !writer.write_all(chunk.clone()).await.is_empty() {
                return;
            }
        }
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
    /// `request`'s parts; its method, scheme and authority, already read, are handed in.
    fn of(
        request: &Request,
        method: Method,
        scheme: Option<Scheme>,
        authority: Option<String>,
    ) -> Self {
        Parts {
            headers: request.get_headers().clone(),
            method,
            scheme,
            authority,
            path: request.get_path_with_query(),
            options: request.get_options(),
        }
    }

    /// The request with `Authorization` for `issued` on a copy of its headers (the
    /// app's own `Authorization` was checked absent), and for a DPoP token its proof
    /// (`DPoP`), made for this request at `origin`; around `body` and `trailers` (none
    /// given: an empty body and no trailers).
    fn build(
        &self,
        p: &P3Provider,
        issued: &IssuedToken,
        origin: &Origin,
        body: Option<StreamReader<u8>>,
        trailers: Option<Trailers>,
    ) -> Result<Request, ErrorCode> {
        let headers = self.headers.clone();
        let url = format!(
            "{}://{}{}",
            origin.scheme.as_str(),
            self.authority.as_deref().unwrap_or_default(),
            self.path.as_deref().unwrap_or("/")
        );
        let (authorization, proof) =
            token_headers(p, issued, method_name(&self.method), &url, origin);
        let unset = |what: &str| ErrorCode::InternalError(Some(format!("could not set {what}")));
        headers
            .set("authorization", &[authorization])
            .map_err(|_| unset("Authorization"))?;
        if let Some(proof) = proof {
            headers.set("dpop", &[proof]).map_err(|_| unset("DPoP"))?;
        }
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

/// The method's name, as `decide` compares it.
fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
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
