//! The token interceptor's export: `wasi:http/client@0.3.0` `send`, in front of the
//! host's own. For each request of the app, [`intercept::decide`] says whether a token
//! goes with it; the request is rebuilt around the app's body stream (never buffered)
//! with `Authorization: Bearer …` on a copy of its headers, and sent on through the
//! imported client. Tokens come from the provider's core (memory, store, lease,
//! single flight), fetched through `wasi:http/outgoing-handler@0.2.6`.

use super::bindings::exports::wasi::http0_3_0::client::Guest;
use super::bindings::wit_future;
use super::wasi::http_p3::client;
use super::wasi::http_p3::types::{ErrorCode, Request, Response, Scheme};
use super::{Component, with_provider};
use crate::audit::{Event, Outcome};
use crate::error::Error as CoreError;
use crate::intercept::{self, Decision};
use crate::origin::Origin;
use crate::token_request::TokenRequest;

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
        let decision = with_provider(|p| {
            Ok(intercept::decide(
                p.settings,
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
                audit(Outcome::InterceptPassed, None, |ev| ev.with_detail(why));
                client::send(request).await
            }
            Ok(Decision::Refuse(e)) => {
                audit(Outcome::InterceptRefused, None, |ev| ev.with_error(&e));
                Err(ErrorCode::HttpRequestDenied)
            }
            Ok(Decision::Attach { origin, token }) => attach(request, &origin, &token).await,
        }
    }
}

/// Get the token, send `request` with it, and on a 401 drop the token so that the next
/// request gets another (this answer goes back to the app as it came).
async fn attach(
    request: Request,
    origin: &Origin,
    token: &TokenRequest,
) -> Result<Response, ErrorCode> {
    let issued = match with_provider(|p| p.get_token(token)) {
        Ok(issued) => issued,
        Err(e) => {
            audit(Outcome::InterceptError, Some(origin), |ev| {
                ev.with_error(&e)
            });
            return Err(error_code(&e));
        }
    };
    let bearer = format!("Bearer {}", issued.token.expose());
    let outgoing = with_token(request, bearer.as_bytes())?;
    let answer = client::send(outgoing).await;
    match &answer {
        Ok(response) => {
            let status = response.get_status_code();
            if status == 401 {
                let _ = with_provider(|p| {
                    p.invalidate_token(token, &issued.token);
                    Ok(())
                });
            }
            audit(Outcome::InterceptOk, Some(origin), |mut ev| {
                ev.status = Some(status);
                ev.fingerprint = Some(issued.token.fingerprint());
                ev
            });
        }
        Err(code) => audit(Outcome::InterceptError, Some(origin), |ev| {
            ev.with_detail(&format!("the API was not reached: {code:?}"))
        }),
    }
    answer
}

/// `request` rebuilt around its own body and trailers, with `Authorization` set to
/// `value` on a copy of its headers (the app's own `Authorization` was checked absent).
fn with_token(request: Request, value: &[u8]) -> Result<Request, ErrorCode> {
    let headers = request.get_headers().clone();
    headers
        .set("authorization", &[value.to_vec()])
        .map_err(|_| ErrorCode::InternalError(Some("could not set Authorization".into())))?;
    let method = request.get_method();
    let scheme = request.get_scheme();
    let authority = request.get_authority();
    let path = request.get_path_with_query();
    let options = request.get_options();
    // Dropping the writer reports the body as delivered (`Ok`) to the app's side.
    let (_, body_result) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, body_result);
    let (outgoing, _) = Request::new(headers, Some(body), trailers, options);
    let invalid = |_| ErrorCode::HttpRequestUriInvalid;
    outgoing.set_method(&method).map_err(invalid)?;
    outgoing.set_scheme(scheme.as_ref()).map_err(invalid)?;
    outgoing
        .set_authority(authority.as_deref())
        .map_err(invalid)?;
    outgoing
        .set_path_with_query(path.as_deref())
        .map_err(invalid)?;
    Ok(outgoing)
}

/// One `intercept.send` line, if the settings load (they did, for any decision).
fn audit(
    outcome: Outcome,
    origin: Option<&Origin>,
    fill: impl for<'e> FnOnce(Event<'e>) -> Event<'e>,
) {
    let _ = with_provider(|p| {
        let mut ev = fill(Event::new(outcome, p.settings, &p.settings.client.scope));
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
