//! The authorized client: checks a request against the allow-list, attaches the token,
//! and on a 401 invalidates it and retries exactly once.

use crate::audit::{Event, Outcome};
use crate::error::{Error, sanitize};
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};
use crate::oauth::client::ClientSettings;
use crate::oauth::request::{TokenParams, TokenRequest};
use crate::origin::{Origin, Scheme, parse_url};
use crate::platform::Platform;
use crate::provider::{IssuedToken, Provider};
use crate::send::challenge::is_token;
use crate::send::proof::{nonce_asked, token_headers};
use crate::send::routes::InterceptSettings;

/// Methods never sent with a token: TRACE (and the old TRACK) echo the request, its
/// Authorization header included, back in the response body; CONNECT opens a tunnel.
const REFUSED_METHODS: &[&str] = &["TRACE", "TRACK", "CONNECT"];

/// Headers a caller may not set: the ones that address the connection or frame the
/// message (RFC 9110 §7.2 and §7.6.1, RFC 9112 §6), which the HTTP layer sets. Refused
/// here, so that no host's own rules decide what goes out with a token.
const REFUSED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// A caller's API request (mirrors the WIT `authorized-client.request`). Its `Debug`
/// shows header names and the body's length only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    pub token: Option<TokenRequest>,
}

impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field(
                "headers",
                &crate::http_types::RedactedHeaders(&self.headers),
            )
            .field(
                "body",
                &self
                    .body
                    .as_ref()
                    .map(|b| crate::http_types::Redacted(b.len())),
            )
            .field("token", &self.token)
            .finish()
    }
}

/// The authorized client's requests to APIs.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// `allowed_origins`.
    pub allowed_origins: Vec<Origin>,
    /// `origin_audiences`: (origin, audience or resource) bindings.
    pub origin_audiences: Vec<(Origin, String)>,
    /// `max_response_bytes`.
    pub max_response_bytes: usize,
    /// `allow_insecure_http`.
    pub allow_insecure_http: bool,
    /// `renew_on_401`: which 401s blame the token (`send::challenge`).
    pub renew_on_401: crate::send::challenge::RenewOn401,
    /// The token interceptor's route table.
    pub intercept: InterceptSettings,
}

/// RFC 9110 §5.5 field value: no control characters but the tab (so no CR, LF, NUL).
pub(crate) fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A method a token never goes with (`REFUSED_METHODS`), as a refusal; the one rule
/// for `send` and the interceptor.
pub(crate) fn refuse_method(method: &str) -> Result<(), Error> {
    if REFUSED_METHODS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
    {
        return Err(Error::Refused(format!(
            "`{}` is never sent with a token (it echoes the request or opens a tunnel)",
            sanitize(method, 32)
        )));
    }
    Ok(())
}

/// A plain `http://` destination unless `allow_insecure_http`, as a refusal; the one rule
/// for `send` and the interceptor.
pub(crate) fn refuse_plain_http(settings: &SendSettings, origin: &Origin) -> Result<(), Error> {
    if origin.scheme == Scheme::Http && !settings.allow_insecure_http {
        return Err(Error::Refused(
            "plain http:// would expose the token; use https:// or set allow_insecure_http=true"
                .into(),
        ));
    }
    Ok(())
}

/// Validate `req` without sending anything: method, URL, scheme, origin, headers.
pub fn prepare(settings: &SendSettings, req: &ApiRequest) -> Result<HttpRequest, Error> {
    let method = req.method.as_str();
    if !is_token(method) {
        return Err(Error::Refused(format!(
            "`{}` is not a valid HTTP method",
            sanitize(method, 32)
        )));
    }
    refuse_method(method)?;
    let url = parse_url(&req.url).map_err(|e| Error::Refused(format!("URL: {e}")))?;
    refuse_plain_http(settings, &url.origin)?;
    if !settings.allowed_origins.contains(&url.origin) {
        return Err(Error::Refused(format!(
            "origin {} is not in allowed_origins",
            url.origin
        )));
    }
    let headers = checked_headers(req)?;
    Ok(HttpRequest {
        method: method.to_string(),
        url,
        headers,
        body: req.body.clone().unwrap_or_default(),
    })
}

/// The caller's headers, names lower-cased, if every one may be sent with a token.
fn checked_headers(req: &ApiRequest) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut headers = Vec::with_capacity(req.headers.len() + 1);
    for (name, value) in &req.headers {
        if !is_token(name) {
            return Err(Error::Refused(format!(
                "`{}` is not a valid header name",
                sanitize(name, 64)
            )));
        }
        let name = name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "authorization" | "proxy-authorization" | "dpop"
        ) {
            return Err(Error::Refused(format!(
                "the `{name}` header is set by the authorized client, not the caller"
            )));
        }
        if REFUSED_HEADERS.contains(&name.as_str()) {
            return Err(Error::Refused(format!(
                "the `{name}` header is set by the HTTP layer, not the caller"
            )));
        }
        if !is_field_value(value) {
            return Err(Error::Refused(format!(
                "header `{name}` has a value with CR, LF or NUL"
            )));
        }
        headers.push((name, value.clone()));
    }
    Ok(headers)
}

/// Whether the token for `request` may go to `origin` (pure): a token with an
/// audience or resources is meant for those APIs only, and another allowed origin
/// could replay it there. Its audience must be bound to `origin` in
/// `origin_audiences`; each resource must be at `origin` or bound to it. A token with
/// neither is not bound to any API and goes to every allowed origin.
pub fn bound_to(
    settings: &SendSettings,
    client: &ClientSettings,
    request: &TokenRequest,
    origin: &Origin,
) -> Result<(), Error> {
    let params = TokenParams::resolve(request, client)?;
    let bound = |value: &str| {
        settings
            .origin_audiences
            .iter()
            .any(|(o, v)| o == origin && v == value)
    };
    if let Some(a) = &params.audience
        && !bound(a)
    {
        return Err(Error::Refused(format!(
            "the token's audience `{}` is not bound to {origin} (origin_audiences)",
            sanitize(a, 100)
        )));
    }
    for r in &params.resources {
        let here = parse_url(r).is_ok_and(|u| u.origin == *origin);
        if !here && !bound(r) {
            return Err(Error::Refused(format!(
                "the token's resource `{}` is neither at {origin} nor bound to it (origin_audiences)",
                sanitize(r, 100)
            )));
        }
    }
    Ok(())
}

/// Said in `detail` when a 401 made the client renew the token and send again.
pub const RETRIED_AFTER_401: &str = "401 answered; token refreshed and request retried once";

/// Send `req` with a token attached; on a 401, invalidate the token and send once more
/// with a fresh one. One `client.send` audit line either way.
pub async fn send<P: Platform>(
    provider: &Provider<'_, P>,
    settings: &SendSettings,
    req: &ApiRequest,
) -> Result<HttpResponse, Error> {
    let (client, audit) = (&provider.settings.client, &provider.settings.audit);
    let token_request = req.token.clone().unwrap_or_default();
    let scopes = token_request
        .scopes
        .clone()
        .unwrap_or_else(|| client.scope.clone());
    let prepared = match prepare(settings, req) {
        Ok(p) => p,
        Err(e) => {
            let ev = Event::new(Outcome::SendRefused, audit, &scopes).with_error(&e);
            provider.audit(&ev);
            return Err(e);
        }
    };
    if let Err(e) = bound_to(settings, client, &token_request, &prepared.url.origin) {
        let ev = Event::new(Outcome::SendRefused, audit, &scopes).with_error(&e);
        provider.audit(&ev);
        return Err(e);
    }
    let (result, retried) = send_with_token(provider, settings, &prepared, &token_request).await;
    let mut ev = match &result {
        Ok(resp) => {
            let mut ev = Event::new(Outcome::SendOk, audit, &scopes);
            ev.status = Some(resp.status);
            ev
        }
        Err(e) => Event::new(Outcome::SendError, audit, &scopes).with_error(e),
    };
    ev.api_origin = Some(prepared.url.origin.to_string());
    if retried {
        ev = ev.with_detail(RETRIED_AFTER_401);
    }
    provider.audit(&ev);
    result
}

/// The exchange itself, and whether a 401 made it send twice.
async fn send_with_token<P: Platform>(
    provider: &Provider<'_, P>,
    settings: &SendSettings,
    prepared: &HttpRequest,
    token_request: &TokenRequest,
) -> (Result<HttpResponse, Error>, bool) {
    let options = HttpOptions {
        timeout_ms: provider.settings.http.timeout_ms,
        read_limit: settings.max_response_bytes.saturating_add(1),
    };
    let origin = &prepared.url.origin;
    let send_with =
        async |token: &IssuedToken| send_once(provider, settings, prepared, token, options).await;
    // The token sent, and the answer: a 401 that asks for a DPoP nonce it has just
    // sent is answered at once, once, with a new proof carrying it.
    let attempt = async |force_refresh: bool| -> Result<(IssuedToken, HttpResponse), Error> {
        let token = provider
            .get_token(&TokenRequest {
                force_refresh,
                ..token_request.clone()
            })
            .await?;
        let (mut resp, asked) = send_with(&token).await?;
        if asked {
            resp = send_with(&token).await?.0;
        }
        Ok((token, resp))
    };
    match attempt(token_request.force_refresh).await {
        // Drop the rejected token if the 401 blames it (`renew_on_401`), once, and not
        // a young one again for the origin that dropped the last (`rejected_by`); then
        // get one the ordinary way: another instance's successor from the store, or
        // one fetch under the lease for the whole fleet.
        Ok((rejected, resp))
            if resp.status == 401
                && settings
                    .renew_on_401
                    .blames_token(&resp.header_values("www-authenticate"), rejected.token_type)
                && provider.rejected_by(token_request, &rejected.token, origin) =>
        {
            (attempt(false).await.map(|(_, resp)| resp), true)
        }
        other => (other.map(|(_, resp)| resp), false),
    }
}

/// One request with `token` (a DPoP token's proof made for it alone), and whether the
/// answer asks for the DPoP nonce it brought (`nonce_asked`, which keeps it).
async fn send_once<P: Platform>(
    provider: &Provider<'_, P>,
    settings: &SendSettings,
    prepared: &HttpRequest,
    token: &IssuedToken,
    options: HttpOptions,
) -> Result<(HttpResponse, bool), Error> {
    let origin = &prepared.url.origin;
    let (authorization, proof) = token_headers(
        provider,
        token,
        &prepared.method,
        &prepared.url.htu(),
        origin,
    );
    let mut with_token = prepared.clone();
    with_token
        .headers
        .push(("authorization".into(), authorization));
    if let Some(proof) = proof {
        with_token.headers.push(("dpop".into(), proof));
    }
    let resp = provider.platform.send(&with_token, options).await?;
    if resp.body.len() > settings.max_response_bytes {
        return Err(Error::InvalidResponse(format!(
            "API response body larger than max_response_bytes ({})",
            settings.max_response_bytes
        )));
    }
    let answer = (
        resp.status,
        &resp.header_values("www-authenticate")[..],
        &resp.header_values("dpop-nonce")[..],
    );
    let asked = nonce_asked(provider, token, origin, answer);
    Ok((resp, asked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::ready;
    use crate::testing::all_settings as settings;

    fn request(method: &str, headers: &[(&str, &[u8])]) -> ApiRequest {
        ApiRequest {
            method: method.into(),
            url: "https://api.example.com/v1".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            body: Some(b"card=4111".to_vec()),
            token: None,
        }
    }

    fn refusal(method: &str, headers: &[(&str, &[u8])]) -> Option<String> {
        let s = settings(&[("allowed_origins", "https://api.example.com")]);
        match prepare(&s.send, &request(method, headers)) {
            Ok(_) => None,
            Err(Error::Refused(m)) => Some(m),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn methods_that_echo_or_tunnel_are_never_sent_with_a_token() {
        for method in ["TRACE", "TRACK", "CONNECT", "trace", "Connect"] {
            let refused = refusal(method, &[]).unwrap_or_else(|| panic!("{method} was allowed"));
            assert!(refused.contains("never sent with a token"), "{refused}");
        }
        for method in [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "QUERY",
        ] {
            assert_eq!(refusal(method, &[]), None, "{method}");
        }
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_refused_whatever_the_host_allows() {
        for name in [
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "Upgrade",
        ] {
            let refused =
                refusal("POST", &[(name, b"x")]).unwrap_or_else(|| panic!("{name} was allowed"));
            assert!(
                refused.contains("set by the HTTP layer"),
                "{name}: {refused}"
            );
        }
        assert_eq!(refusal("POST", &[("Content-Type", b"text/plain")]), None);
    }

    #[test]
    fn debug_of_an_api_request_shows_no_header_value_and_no_body() {
        let shown = format!("{:?}", request("POST", &[("X-Api-Key", b"KEY-42")]));
        assert!(
            !shown.contains("KEY-42") && !shown.contains("4111"),
            "{shown}"
        );
        assert!(
            shown.contains("X-Api-Key") && shown.contains("9 bytes"),
            "{shown}"
        );
    }

    /// `n` instances (own memories, one store) that all hold token `t1` when an API
    /// revokes it; one after the other each sends once and gets a 401 for `t1`.
    /// Returns the rig and the number of token requests made.
    fn revoked_fleet(n: usize) -> (crate::testing::Rig, usize) {
        use crate::provider::instance::MemoryCache;
        use crate::testing::{Rig, T0, response};
        use std::cell::RefCell;
        let rig = Rig::new(&[("allowed_origins", "https://api.example.com")]);
        rig.store_token("t1", T0, 3600);
        let provider = |memory| Provider {
            settings: &rig.settings,
            platform: &rig.platform,
            memory,
        };
        let memories: Vec<RefCell<MemoryCache>> = (0..n).map(|_| Default::default()).collect();
        for m in &memories {
            let t = ready(provider(m).get_token(&TokenRequest::default())).unwrap();
            assert_eq!(t.token.expose(), "t1");
        }
        let mut fetched = 0;
        for m in &memories {
            let before = rig.platform.sent.borrow().len();
            rig.platform.respond(Ok(response(401, &[], "revoked")));
            if fetched == 0 {
                rig.platform.respond_token("t2", 3600);
            }
            rig.platform.respond(Ok(response(200, &[], "ok")));
            let req = ApiRequest {
                method: "GET".into(),
                url: "https://api.example.com/v1".into(),
                headers: vec![],
                body: None,
                token: None,
            };
            let resp = ready(send(&provider(m), &rig.send, &req));
            fetched += rig.platform.sent.borrow()[before..]
                .iter()
                .filter(|r| r.method == "POST")
                .count();
            assert_eq!(resp.map(|r| r.status), Ok(200), "after {fetched} fetches");
        }
        (rig, fetched)
    }

    #[test]
    fn a_fleet_that_gets_401_for_one_token_renews_it_once_and_keeps_the_successor() {
        let (rig, fetched) = revoked_fleet(20);
        assert_eq!(fetched, 1, "one token request for twenty 401s");
        let kept = rig.platform.events("token.invalidate");
        assert_eq!(kept.len(), 20);
        assert_eq!(
            kept[0]["outcome"], "ok",
            "the first drops t1 from the store"
        );
        assert!(
            kept[1..].iter().all(|e| e["outcome"] == "kept"),
            "the others leave the successor in place: {kept:?}"
        );
        // The store holds the successor.
        *rig.memory.borrow_mut() = Default::default();
        let t = ready(rig.provider().get_token(&TokenRequest::default())).unwrap();
        assert_eq!(t.token.expose(), "t2");
    }

    /// An API that answers 401 to every token: a fleet of fresh instances sends 200
    /// requests to it (one every 500 ms) and one to another origin after each.
    /// Returns the token requests made and the other origin's answers.
    fn refusing_api(extra: &[(&str, &str)], challenge: Option<&'static str>) -> (usize, Vec<u16>) {
        use crate::provider::instance::MemoryCache;
        use crate::testing::{Rig, response};
        use std::cell::{Cell, RefCell};
        use std::rc::Rc;
        let allowed = (
            "allowed_origins",
            "https://refuses.example,https://works.example",
        );
        let rig = Rig::new(&[&[allowed], extra].concat());
        let fetched = Rc::new(Cell::new(0));
        let count = fetched.clone();
        rig.platform.answer_with(move |r| {
            let to = r.url.authority.as_str();
            if r.method == "POST" {
                count.set(count.get() + 1);
                let body = format!(
                    r#"{{"access_token":"t{}","token_type":"Bearer","expires_in":3600}}"#,
                    count.get()
                );
                return Ok(response(
                    200,
                    &[("content-type", "application/json")],
                    &body,
                ));
            }
            assert!(r.headers.iter().any(|(k, _)| k == "authorization"));
            match (to, challenge) {
                ("refuses.example", Some(c)) => Ok(response(401, &[("www-authenticate", c)], "")),
                ("refuses.example", None) => Ok(response(401, &[], "")),
                _ => Ok(response(200, &[], "ok")),
            }
        });
        let get = |host: &str| ApiRequest {
            method: "GET".into(),
            url: format!("https://{host}/v1"),
            headers: vec![],
            body: None,
            token: None,
        };
        let mut works = Vec::new();
        for _ in 0..200 {
            let memory = RefCell::new(MemoryCache::default());
            let p = Provider {
                settings: &rig.settings,
                platform: &rig.platform,
                memory: &memory,
            };
            let refused = ready(send(&p, &rig.send, &get("refuses.example"))).unwrap();
            assert_eq!(refused.status, 401);
            works.push(
                ready(send(&p, &rig.send, &get("works.example")))
                    .unwrap()
                    .status,
            );
            rig.platform.advance(500);
        }
        (fetched.get(), works)
    }

    #[test]
    fn an_api_that_refuses_every_token_costs_one_token_request_per_min_token_age() {
        // 100 s of requests: the first token and its successor, then one per 30 s.
        let (fetched, works) = refusing_api(&[], None);
        assert!(
            fetched <= 6,
            "{fetched} token requests for 200 refused requests"
        );
        assert!(works.iter().all(|s| *s == 200), "{works:?}");
        let (fetched, _) = refusing_api(&[], Some(r#"Bearer error="invalid_token""#));
        assert!(fetched <= 6, "{fetched}");
        // A 401 that blames something else never drops the token.
        let (fetched, works) = refusing_api(&[], Some(r#"Bearer error="insufficient_scope""#));
        assert_eq!(fetched, 1);
        assert!(works.iter().all(|s| *s == 200));
        // renew_on_401 = invalid_token: a 401 that says nothing drops nothing.
        let (fetched, _) = refusing_api(&[("renew_on_401", "invalid_token")], None);
        assert_eq!(fetched, 1);
        // Without the age rule, the fleet fetches for every refused request.
        let (fetched, _) = refusing_api(&[("min_token_age_secs", "0")], None);
        assert!(fetched >= 200, "{fetched}");
    }

    /// Rollback (docs/design.md, "Known limits"): whoever can write the store puts back
    /// a token that was just dropped after a 401. It cannot be read or forged, and it
    /// costs one refused API call and one token request per put-back: the 401 drops it
    /// again at once (the young-token rule never keeps the very token it dropped), and
    /// the retry carries a new one, so the app sees 200.
    #[test]
    fn a_dropped_token_put_back_in_the_store_costs_one_401_and_one_token_request() {
        use crate::provider::instance::MemoryCache;
        use crate::testing::{Rig, T0, response};
        use std::cell::{Cell, RefCell};
        use std::rc::Rc;
        let rig = Rig::new(&[("allowed_origins", "https://api.example.com")]);
        let t1 = rig.sealed("t1", T0, 3600);
        rig.platform.kv_put(&rig.key().store_key(), &t1);
        let (fetched, refused) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let (f, r) = (fetched.clone(), refused.clone());
        rig.platform.answer_with(move |req| {
            if req.method == "POST" {
                f.set(f.get() + 1);
                let body = format!(
                    r#"{{"access_token":"t{}","token_type":"Bearer","expires_in":3600}}"#,
                    f.get() + 1
                );
                return Ok(response(200, &[], &body));
            }
            let auth = req
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .unwrap();
            if auth.1 == b"Bearer t1" {
                r.set(r.get() + 1);
                let challenge = [("www-authenticate", r#"Bearer error="invalid_token""#)];
                return Ok(response(401, &challenge, ""));
            }
            Ok(response(200, &[], "ok"))
        });
        let get = ApiRequest {
            method: "GET".into(),
            url: "https://api.example.com/v1".into(),
            headers: vec![],
            body: None,
            token: None,
        };
        let fresh_instance_sends = || {
            let memory = RefCell::new(MemoryCache::default());
            let p = Provider {
                settings: &rig.settings,
                platform: &rig.platform,
                memory: &memory,
            };
            ready(send(&p, &rig.send, &get)).unwrap().status
        };
        // t1 is revoked: dropped, and replaced once for the fleet.
        assert_eq!(fresh_instance_sends(), 200);
        assert_eq!((fetched.get(), refused.get()), (1, 1));
        assert_eq!(fresh_instance_sends(), 200);
        assert_eq!((fetched.get(), refused.get()), (1, 1), "t2 from the store");
        // Put back, seconds later: one more 401 and one more token request, each time.
        for round in 1..=3 {
            rig.platform.advance(2_000);
            rig.platform.kv_put(&rig.key().store_key(), &t1);
            assert_eq!(fresh_instance_sends(), 200, "round {round}");
            assert_eq!((fetched.get(), refused.get()), (1 + round, 1 + round));
        }
    }

    #[test]
    fn a_token_with_an_audience_or_resource_goes_only_where_it_is_bound() {
        let s = settings(&[
            (
                "allowed_origins",
                "https://internal.example,https://partner.example",
            ),
            ("origin_audiences", "https://internal.example=internal-api"),
        ]);
        let internal = parse_url("https://internal.example/x").unwrap().origin;
        let partner = parse_url("https://partner.example/x").unwrap().origin;
        let with = |audience: Option<&str>, resources: Option<Vec<&str>>| TokenRequest {
            audience: audience.map(str::to_string),
            resources: resources.map(|r| r.into_iter().map(str::to_string).collect()),
            ..Default::default()
        };
        // Audience: only the bound origin.
        let aud = with(Some("internal-api"), None);
        assert_eq!(
            bound_to(&s.send, &s.provider.client, &aud, &internal),
            Ok(())
        );
        let Err(Error::Refused(why)) = bound_to(&s.send, &s.provider.client, &aud, &partner) else {
            panic!()
        };
        assert_eq!(
            why,
            "the token's audience `internal-api` is not bound to https://partner.example:443 (origin_audiences)"
        );
        // Resource: its own origin, never another.
        let res = with(None, Some(vec!["https://internal.example/orders"]));
        assert_eq!(
            bound_to(&s.send, &s.provider.client, &res, &internal),
            Ok(())
        );
        assert!(bound_to(&s.send, &s.provider.client, &res, &partner).is_err());
        // Neither: not bound to any API.
        assert_eq!(
            bound_to(&s.send, &s.provider.client, &with(None, None), &partner),
            Ok(())
        );
        // The configured default audience counts like a requested one.
        let default = settings(&[
            (
                "allowed_origins",
                "https://internal.example,https://partner.example",
            ),
            ("audience", "internal-api"),
        ]);
        assert!(
            bound_to(
                &default.send,
                &default.provider.client,
                &with(None, None),
                &internal
            )
            .is_err()
        );
    }

    #[test]
    fn send_refuses_an_unbound_destination_before_asking_for_a_token() {
        use crate::testing::Rig;
        let rig = Rig::new(&[
            (
                "allowed_origins",
                "https://internal.example,https://partner.example",
            ),
            ("origin_audiences", "https://internal.example=internal-api"),
            ("audience", "internal-api"),
        ]);
        let req = ApiRequest {
            method: "GET".into(),
            url: "https://partner.example/replay".into(),
            headers: vec![],
            body: None,
            token: None,
        };
        assert!(matches!(
            ready(send(&rig.provider(), &rig.send, &req)),
            Err(Error::Refused(_))
        ));
        assert!(rig.platform.sent.borrow().is_empty(), "nothing sent");
        assert_eq!(rig.platform.events("client.send")[0]["outcome"], "refused");
    }

    #[test]
    fn token_and_field_value_checks_agree_with_the_http_crate_on_every_byte() {
        for b in 0u8..=255 {
            let one = [b];
            if let Ok(text) = std::str::from_utf8(&one) {
                assert_eq!(
                    is_token(text),
                    http::HeaderName::from_bytes(&one).is_ok(),
                    "header name byte {b:#04x}"
                );
                assert_eq!(
                    is_token(text),
                    http::Method::from_bytes(&one).is_ok(),
                    "method byte {b:#04x}"
                );
            }
            assert_eq!(
                is_field_value(&[b'a', b, b'z']),
                http::HeaderValue::from_bytes(&[b'a', b, b'z']).is_ok(),
                "field value byte {b:#04x}"
            );
        }
        assert!(!is_token(""));
        assert!(is_field_value(b""));
    }
}
