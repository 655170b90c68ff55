//! The authorized client: checks a request against the allow-list, attaches the token,
//! and on a 401 invalidates it and retries exactly once.

use crate::audit::Event;
use crate::error::{Error, sanitize};
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};
use crate::origin::{Scheme, parse_url};
use crate::platform::Platform;
use crate::provider::Provider;
use crate::token_request::TokenRequest;

/// A caller's API request (mirrors the WIT `authorized-client.request`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    pub token: Option<TokenRequest>,
}

/// Validate `req` without sending anything: method, URL, scheme, origin, headers.
pub fn prepare(settings: &crate::config::Settings, req: &ApiRequest) -> Result<HttpRequest, Error> {
    let method = http::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
        Error::Refused(format!(
            "`{}` is not a valid HTTP method",
            sanitize(&req.method, 32)
        ))
    })?;
    let url = parse_url(&req.url).map_err(|e| Error::Refused(format!("URL: {e}")))?;
    if url.origin.scheme == Scheme::Http && !settings.allow_insecure_http {
        return Err(Error::Refused(
            "plain http:// would expose the token; use https:// or set allow_insecure_http=true"
                .into(),
        ));
    }
    if !settings.allowed_origins.contains(&url.origin) {
        return Err(Error::Refused(format!(
            "origin {} is not in allowed_origins",
            url.origin
        )));
    }
    let mut headers = Vec::with_capacity(req.headers.len() + 1);
    for (name, value) in &req.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::Refused(format!(
                "`{}` is not a valid header name",
                sanitize(name, 64)
            ))
        })?;
        if name == http::header::AUTHORIZATION || name == http::header::PROXY_AUTHORIZATION {
            return Err(Error::Refused(format!(
                "the `{name}` header is set by the authorized client, not the caller"
            )));
        }
        http::HeaderValue::from_bytes(value).map_err(|_| {
            Error::Refused(format!("header `{name}` has a value with CR, LF or NUL"))
        })?;
        headers.push((name.as_str().to_string(), value.clone()));
    }
    Ok(HttpRequest {
        method: method.as_str().to_string(),
        url,
        headers,
        body: req.body.clone().unwrap_or_default(),
    })
}

pub fn send<P: Platform>(
    provider: &Provider<'_, P>,
    req: &ApiRequest,
) -> Result<HttpResponse, Error> {
    let settings = provider.settings;
    let platform = provider.platform;
    let token_request = req.token.clone().unwrap_or_default();
    let scopes = token_request
        .scopes
        .clone()
        .unwrap_or_else(|| settings.scope.clone());
    let log = |outcome,
               status: Option<u16>,
               err: Option<&Error>,
               retried: bool,
               origin: Option<String>| {
        let mut ev = Event::new("client.send", outcome, settings, &scopes);
        if let Some(e) = err {
            ev = ev.with_error(e);
        }
        ev.status = status.or(ev.status);
        ev.api_origin = origin;
        if retried {
            ev.detail = Some("401 answered; token refreshed and request retried once".into());
        }
        platform.log(&ev.to_line());
    };
    let prepared = match prepare(settings, req) {
        Ok(p) => p,
        Err(e) => {
            log("refused", None, Some(&e), false, None);
            return Err(e);
        }
    };
    let origin = Some(prepared.url.origin.to_string());
    let options = HttpOptions {
        timeout_ms: settings.http_timeout_ms,
        read_limit: settings.max_response_bytes.saturating_add(1),
    };
    let attempt = |force_refresh: bool| -> Result<HttpResponse, Error> {
        let token = provider.get_token(&TokenRequest {
            force_refresh,
            ..token_request.clone()
        })?;
        let mut with_token = prepared.clone();
        with_token.headers.push((
            "authorization".into(),
            format!("Bearer {}", token.token.expose()).into_bytes(),
        ));
        let resp = platform.send(&with_token, options)?;
        if resp.body.len() > settings.max_response_bytes {
            return Err(Error::InvalidResponse(format!(
                "API response body larger than max_response_bytes ({})",
                settings.max_response_bytes
            )));
        }
        Ok(resp)
    };
    let mut retried = false;
    let result = attempt(token_request.force_refresh).and_then(|resp| {
        if resp.status == 401 {
            provider.invalidate(&token_request);
            retried = true;
            attempt(true)
        } else {
            Ok(resp)
        }
    });
    match &result {
        Ok(resp) => log("ok", Some(resp.status), None, retried, origin),
        Err(e) => log("error", None, Some(e), retried, origin),
    }
    result
}
