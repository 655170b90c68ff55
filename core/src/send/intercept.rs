//! The token interceptor's decision for one outgoing request of an app (issue 12):
//! attach a token, send it on untouched, or refuse it. Pure: the interceptor component
//! (`component::interceptor`) asks, then does what it is told.
//!
//! Which origins get a token, and which token:
//! - an origin with a route in `intercept_routes` (`send::routes`): the route's token,
//!   whose audience and resources the route binds to it;
//! - any other origin in `allowed_origins`: the token the top-level keys describe
//!   (`scope`, `audience`, `resource`), bound as `send` binds it (`origin_audiences`).
//!
//! A request to any other origin goes on untouched, or is refused when
//! `intercept_unmatched = refuse`. A request whose `Authorization` the app set itself
//! goes on as the app made it.

use crate::error::Error;
use crate::oauth::client::ClientSettings;
use crate::oauth::request::TokenRequest;
use crate::origin::{Origin, parse_url};
use crate::send::authorized::SendSettings;
use crate::send::authorized::{bound_to, refuse_method, refuse_plain_http};
use crate::send::routes::Unmatched;

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Get this token and set `Authorization: Bearer …` before sending to `origin`.
    Attach { origin: Origin, token: TokenRequest },
    /// Send the request on as the app made it, for this reason (audited).
    PassThrough(&'static str),
    /// Do not send: a token is due here but may not go, or the origin gets no token and
    /// `intercept_unmatched = refuse` (audited, and the app gets an error).
    Refuse(Error),
}

/// Said when the app's request already carries `Authorization`.
pub const APP_AUTHORIZATION: &str = "the app set Authorization itself; left as it is";
/// Said when the destination has no route and is not one of `allowed_origins`.
pub const NOT_ROUTED: &str =
    "origin not in intercept_routes or allowed_origins; sent without a token";
/// Said when the request names no scheme or authority, or one that is not a URL origin.
pub const NO_ORIGIN: &str = "no http(s) origin in the request; sent without a token";

/// The decision for a `method` request to `scheme://authority`. `scheme` is as the app
/// set it (`http`, `https`, or another), `None` when it set none. A token never goes
/// where `send` would not send it: not over plain `http://` unless
/// `allow_insecure_http`, and never with TRACE, TRACK or CONNECT (they echo the request,
/// or open a tunnel); such a request is refused, whatever the settings were checked for
/// at load.
pub fn decide(
    settings: &SendSettings,
    client: &ClientSettings,
    method: &str,
    scheme: Option<&str>,
    authority: Option<&str>,
    app_authorization: bool,
) -> Decision {
    let Some(origin) = origin_of(scheme, authority) else {
        return unmatched(settings, NO_ORIGIN);
    };
    let token = if let Some(route) = settings.intercept.route(&origin) {
        // What the route takes from the top level is bound as for an allowed origin
        // (checked at load too).
        if let Some(inherited) = route.inherited(client)
            && let Err(e) = bound_to(settings, client, &inherited, &origin)
        {
            return Decision::Refuse(e);
        }
        route.token.clone()
    } else if settings.allowed_origins.contains(&origin) {
        let token = TokenRequest::default();
        if let Err(e) = bound_to(settings, client, &token, &origin) {
            return Decision::Refuse(e);
        }
        token
    } else {
        return unmatched(settings, NOT_ROUTED);
    };
    if app_authorization {
        return Decision::PassThrough(APP_AUTHORIZATION);
    }
    if let Err(e) = refuse_plain_http(settings, &origin).and_then(|()| refuse_method(method)) {
        return Decision::Refuse(e);
    }
    Decision::Attach { origin, token }
}

/// The origin of `scheme://authority`, if that is exactly an http(s) origin.
fn origin_of(scheme: Option<&str>, authority: Option<&str>) -> Option<Origin> {
    let (scheme, authority) = (scheme?, authority?);
    // Only an authority: a path, query or userinfo in it would make another URL.
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    parse_url(&format!("{scheme}://{authority}/"))
        .ok()
        .map(|url| url.origin)
}

fn unmatched(settings: &SendSettings, why: &'static str) -> Decision {
    match settings.intercept.unmatched {
        Unmatched::Pass => Decision::PassThrough(why),
        Unmatched::Refuse => Decision::Refuse(Error::Refused(format!(
            "{} (intercept_unmatched = refuse)",
            why.split_once(';').map_or(why, |(what, _)| what)
        ))),
    }
}

/// What the interceptor knows of a request's body before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// It ended without a byte: the request can be sent again as it was.
    Empty,
    /// It ended within `retry_body_bytes` and is kept: it can be sent again.
    Kept,
    /// Bytes were (or will be) streamed: they cannot be sent twice.
    Bytes,
}

/// Said in `detail` when a request went a third time: its token and the store's
/// successor were both refused, and a fetched token was sent.
pub const RETRIED_TWICE_AFTER_401: &str = "401 answered to the token and to its successor in the store; a new token was fetched and the request sent a third time";

/// The token a request was just sent with, as far as the 401 rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// How many times the request was sent again after a 401 (0: the first send).
    pub retries: u8,
    /// Whether the token was fetched for this request (not found in memory or the
    /// store): a fresh token refused says the API refuses this client, and fetching
    /// yet another would not help.
    pub fresh: bool,
}

/// What to do once the API has answered `status` to a request sent with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAnswer {
    /// Hand the answer to the app.
    Deliver,
    /// Hand the answer to the app, and drop the token so the next request gets another.
    InvalidateAndDeliver,
    /// Drop the token, get another and send the request once more (this answer is
    /// discarded); only for a body that can be sent again.
    InvalidateAndRetry,
}

/// The rule for a 401: the rejected token is dropped (in the store only if the store
/// still holds it). A request whose body can be sent again (none, or one kept) and whose
/// token came from the cache is sent again with the next token: the one the store holds
/// if another instance replaced it, else one fetched once for the fleet. If that one
/// came from the store and is refused too, once more with a fetched one. So never more
/// than two retries, and a refused token that was fetched for this request (or for the
/// requests that waited on its fetch) is never followed by another fetch: the API
/// refuses this client's tokens, and asking again would only load the token endpoint.
/// A streamed body goes back to the app with its 401, the token dropped all the same.
/// Only a 401 that blames the token (`blamed`, from `renew_on_401` and the answer's
/// `WWW-Authenticate`) drops it; and the provider may keep a young one
/// (`Provider::rejected_by`), which ends the retries too.
pub fn after_answer(status: u16, blamed: bool, body: Body, sent: Sent) -> AfterAnswer {
    let resendable = matches!(body, Body::Empty | Body::Kept);
    match status {
        // A 401 for another reason than the token (`renew_on_401`): another token
        // would be refused too.
        401 if !blamed => AfterAnswer::Deliver,
        401 if resendable && !sent.fresh && sent.retries < 2 => AfterAnswer::InvalidateAndRetry,
        401 => AfterAnswer::InvalidateAndDeliver,
        _ => AfterAnswer::Deliver,
    }
}

/// After a 401 that asks for a DPoP nonce (`DPoP error="use_dpop_nonce"`) and brought
/// one this instance kept: send again at once with a proof that carries it, once per
/// request, and only a body that can be sent again (none, or one kept), as after a
/// 401 that blames the token. Otherwise the 401 goes back to the app, and the nonce
/// goes with the next request.
pub fn retry_with_nonce(body: Body, nonce_retried: bool) -> bool {
    !nonce_retried && matches!(body, Body::Empty | Body::Kept)
}

/// How the interceptor takes a request's body before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Stream it on as it comes, never looked at (`content-length` says it is larger
    /// than `retry_body_bytes`): a 401 to it goes back to the app.
    Stream,
    /// Read it until it ends or passes `limit` bytes: ended within the limit, it is
    /// kept (or known empty) and can be sent again after a 401; past it, what was read
    /// is sent first and the rest streamed on. With `limit` 0 this reads one chunk, to
    /// learn whether there is a body at all.
    Read { limit: u64 },
}

/// The plan for a body whose `content-length` values are `content_length` (none: not
/// said) under `retry_body_bytes`.
pub fn body_plan(content_length: &[Vec<u8>], retry_body_bytes: u64) -> BodyPlan {
    let declared = content_length.iter().find_map(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match declared {
        Some(n) if n > retry_body_bytes => BodyPlan::Stream,
        _ => BodyPlan::Read {
            limit: retry_body_bytes,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::testing::all_settings as settings;

    /// [`decide`] on `s`'s send and client settings.
    fn decide_on(
        s: &Settings,
        scheme: Option<&str>,
        authority: Option<&str>,
        app_authorization: bool,
    ) -> Decision {
        decide(
            &s.send,
            &s.provider.client,
            "GET",
            scheme,
            authority,
            app_authorization,
        )
    }

    fn api() -> Settings {
        settings(&[(
            "allowed_origins",
            "https://api.example.com,https://billing.example.com:8443",
        )])
    }

    #[test]
    fn an_allowed_origin_gets_the_default_token() {
        for (scheme, authority, port) in [
            ("https", "api.example.com", 443),
            ("HTTPS", "API.Example.com:443", 443),
            ("https", "billing.example.com:8443", 8443),
        ] {
            match decide_on(&api(), Some(scheme), Some(authority), false) {
                Decision::Attach { origin, token } => {
                    assert_eq!(origin.port, port);
                    assert_eq!(token, TokenRequest::default());
                }
                other => panic!("{scheme}://{authority}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_origins_and_look_alikes_go_untouched() {
        for (scheme, authority) in [
            ("https", "api.example.com:8443"),
            ("http", "api.example.com"),
            ("https", "api.example.com.evil.test"),
            ("https", "billing.example.com"),
            ("https", "xapi.example.com"),
        ] {
            assert_eq!(
                decide_on(&api(), Some(scheme), Some(authority), false),
                Decision::PassThrough(NOT_ROUTED),
                "{scheme}://{authority}"
            );
        }
    }

    #[test]
    fn the_apps_own_authorization_is_left_alone() {
        assert_eq!(
            decide_on(&api(), Some("https"), Some("api.example.com"), true),
            Decision::PassThrough(APP_AUTHORIZATION)
        );
        // ... but does not open an origin that `refuse` closes.
        let closed = settings(&[("intercept_unmatched", "refuse")]);
        assert!(matches!(
            decide_on(&closed, Some("https"), Some("elsewhere.example.com"), true),
            Decision::Refuse(_)
        ));
    }

    fn routed() -> Settings {
        settings(&[
            ("allow_insecure_http", "true"),
            ("scope", "default-scope"),
            (
                "allowed_origins",
                "https://api.example.com,https://billing.example.com",
            ),
            (
                "intercept_routes",
                r#"[{"origin":"https://billing.example.com","scope":"billing","audience":"billing-api"},
                    {"origin":"http://127.0.0.1:8080","resource":"urn:local"}]"#,
            ),
        ])
    }

    /// The decision keeps send's rules whatever was checked at load: no token over
    /// plain http:// without allow_insecure_http, none with TRACE, TRACK or CONNECT
    /// (they echo the request, Authorization included, or open a tunnel).
    #[test]
    fn a_token_never_goes_over_plain_http_or_with_an_echoing_method() {
        let mut s = routed();
        s.send.allow_insecure_http = false;
        for (scheme, authority) in [
            (Some("http"), Some("127.0.0.1:8080")),
            (Some("HTTP"), Some("127.0.0.1:8080")),
        ] {
            match decide_on(&s, scheme, authority, false) {
                Decision::Refuse(Error::Refused(m)) => assert!(m.contains("plain http://"), "{m}"),
                other => panic!("{scheme:?}: {other:?}"),
            }
        }
        let s = routed();
        for method in ["TRACE", "TRACK", "CONNECT", "trace", "Connect"] {
            match decide(
                &s.send,
                &s.provider.client,
                method,
                Some("https"),
                Some("billing.example.com"),
                false,
            ) {
                Decision::Refuse(Error::Refused(m)) => {
                    assert!(m.contains("never sent with a token"), "{m}")
                }
                other => panic!("{method}: {other:?}"),
            }
        }
        // Not our token: the app's own Authorization, and origins that get none.
        let own = decide(
            &s.send,
            &s.provider.client,
            "TRACE",
            Some("https"),
            Some("billing.example.com"),
            true,
        );
        assert_eq!(own, Decision::PassThrough(APP_AUTHORIZATION));
        let elsewhere = decide(
            &s.send,
            &s.provider.client,
            "TRACE",
            Some("https"),
            Some("elsewhere.example.com"),
            false,
        );
        assert_eq!(elsewhere, Decision::PassThrough(NOT_ROUTED));
    }

    #[test]
    fn a_route_gives_its_own_token_and_binds_its_audience() {
        let s = routed();
        match decide_on(&s, Some("https"), Some("billing.example.com"), false) {
            Decision::Attach { token, .. } => {
                assert_eq!(token.scopes, Some(vec!["billing".to_string()]));
                assert_eq!(token.audience.as_deref(), Some("billing-api"));
            }
            other => panic!("{other:?}"),
        }
        // A route's origin need not be in allowed_origins; what it leaves out is the
        // top-level default.
        match decide_on(&s, Some("http"), Some("127.0.0.1:8080"), false) {
            Decision::Attach { origin, token } => {
                assert_eq!(origin.port, 8080);
                assert_eq!(token.scopes, None);
                assert_eq!(token.resources, Some(vec!["urn:local".to_string()]));
            }
            other => panic!("{other:?}"),
        }
        // An allowed origin without a route: the default token.
        match decide_on(&s, Some("https"), Some("api.example.com"), false) {
            Decision::Attach { token, .. } => assert_eq!(token, TokenRequest::default()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide_on(&s, Some("http"), Some("127.0.0.1:8081"), false),
            Decision::PassThrough(NOT_ROUTED)
        );
    }

    #[test]
    fn refuse_closes_every_origin_that_gets_no_token() {
        let mut s = routed();
        s.send.intercept.unmatched = Unmatched::Refuse;
        for (scheme, authority) in [
            (Some("https"), Some("elsewhere.example.com")),
            (Some("http"), Some("api.example.com")),
            (None, Some("api.example.com")),
            (Some("https"), Some("api.example.com/x")),
        ] {
            match decide_on(&s, scheme, authority, false) {
                Decision::Refuse(Error::Refused(m)) => {
                    assert!(m.ends_with("(intercept_unmatched = refuse)"), "{m}");
                    assert!(!m.contains("sent without"), "{m}");
                }
                other => panic!("{scheme:?} {authority:?}: {other:?}"),
            }
        }
        assert!(matches!(
            decide_on(&s, Some("https"), Some("billing.example.com"), false),
            Decision::Attach { .. }
        ));
    }

    #[test]
    fn requests_without_a_usable_origin_go_untouched() {
        for (scheme, authority) in [
            (None, Some("api.example.com")),
            (Some("https"), None),
            (Some("ftp"), Some("api.example.com")),
            (Some("https"), Some("")),
            (Some("https"), Some("user@api.example.com")),
            (Some("https"), Some("api.example.com/x")),
            (Some("https"), Some("api.example.com?x")),
            (Some("https"), Some("api.example.com#x")),
            (Some("https"), Some("api.example.com:99999")),
            (Some("https"), Some(&*"a".repeat(70_000))),
        ] {
            assert_eq!(
                decide_on(&api(), scheme, authority, false),
                Decision::PassThrough(NO_ORIGIN),
                "{scheme:?} {:?}",
                authority.map(|a| &a[..a.len().min(40)])
            );
        }
    }

    #[test]
    fn a_bound_token_is_refused_where_it_is_not_bound() {
        let s = settings(&[
            (
                "allowed_origins",
                "https://api.example.com,https://other.example.com",
            ),
            ("audience", "orders-api"),
            ("origin_audiences", "https://api.example.com=orders-api"),
        ]);
        assert!(matches!(
            decide_on(&s, Some("https"), Some("api.example.com"), false),
            Decision::Attach { .. }
        ));
        match decide_on(&s, Some("https"), Some("other.example.com"), false) {
            Decision::Refuse(Error::Refused(m)) => assert!(m.contains("orders-api"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// A route that leaves out `audience` or `resource` takes the top-level one; that
    /// is bound to its origin only if `origin_audiences` says so (or the resource is
    /// there), as for an allowed origin: else the table is a config error, and the
    /// decision refuses it too.
    #[test]
    fn a_route_does_not_carry_an_inherited_audience_it_does_not_bind() {
        let routes = r#"[{"origin":"https://partner.example.net","scope":"x"}]"#;
        let base = [
            ("allowed_origins", "https://api.example.com"),
            ("audience", "orders-api"),
            ("origin_audiences", "https://api.example.com=orders-api"),
        ];
        let e = Settings::from_pairs(&[
            ("token_url", "https://auth.example.com/token"),
            ("client_id", "svc"),
            ("client_secret", "secret"),
            base[0],
            base[1],
            base[2],
            ("intercept_routes", routes),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config: intercept_routes: route 1: https://partner.example.net:443 takes the top-level audience"), "{e}");
        assert!(
            e.contains("`orders-api` is not bound to https://partner.example.net:443"),
            "{e}"
        );
        // Bound there, its own audience, or none: each is fine.
        for fix in [
            r#"[{"origin":"https://partner.example.net","audience":"partner"}]"#,
            r#"[{"origin":"https://partner.example.net","audience":""}]"#,
        ] {
            let s = settings(&[base[0], base[1], base[2], ("intercept_routes", fix)]);
            assert!(matches!(
                decide_on(&s, Some("https"), Some("partner.example.net"), false),
                Decision::Attach { .. }
            ));
        }
        let bound = settings(&[
            (
                "allowed_origins",
                "https://api.example.com,https://partner.example.net",
            ),
            base[1],
            (
                "origin_audiences",
                "https://api.example.com=orders-api,https://partner.example.net=orders-api",
            ),
            ("intercept_routes", routes),
        ]);
        assert!(matches!(
            decide_on(&bound, Some("https"), Some("partner.example.net"), false),
            Decision::Attach { .. }
        ));
        // Whatever was checked at load, the decision refuses it.
        let mut unbound = bound;
        unbound.send.origin_audiences.truncate(1);
        match decide_on(&unbound, Some("https"), Some("partner.example.net"), false) {
            Decision::Refuse(Error::Refused(m)) => assert!(m.contains("orders-api"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A resource it inherits is fine at the resource's own origin.
        let s = settings(&[
            ("resource", "https://partner.example.net/"),
            ("intercept_routes", routes),
        ]);
        assert!(matches!(
            decide_on(&s, Some("https"), Some("partner.example.net"), false),
            Decision::Attach { .. }
        ));
    }

    #[test]
    fn a_401_is_retried_at_most_twice_and_only_with_a_body_that_can_be_sent_again() {
        use AfterAnswer::*;
        let sent = |retries, fresh| Sent { retries, fresh };
        for body in [Body::Empty, Body::Kept] {
            // A cached token refused: try the next one.
            assert_eq!(
                after_answer(401, true, body, sent(0, false)),
                InvalidateAndRetry
            );
            // The store's successor refused too: once more, with a fetched one.
            assert_eq!(
                after_answer(401, true, body, sent(1, false)),
                InvalidateAndRetry
            );
            // A token fetched for this request refused: the API refuses the client,
            // and no other fetch follows, first send or not.
            assert_eq!(
                after_answer(401, true, body, sent(0, true)),
                InvalidateAndDeliver
            );
            assert_eq!(
                after_answer(401, true, body, sent(1, true)),
                InvalidateAndDeliver
            );
            assert_eq!(
                after_answer(401, true, body, sent(2, false)),
                InvalidateAndDeliver
            );
        }
        assert_eq!(
            after_answer(401, true, Body::Bytes, sent(0, false)),
            InvalidateAndDeliver
        );
        for body in [Body::Empty, Body::Kept, Body::Bytes] {
            // A 401 that does not blame the token: nothing is dropped, nothing resent.
            assert_eq!(after_answer(401, false, body, sent(0, false)), Deliver);
            for status in [200, 204, 400, 403, 404, 500] {
                for blamed in [true, false] {
                    assert_eq!(after_answer(status, blamed, body, sent(0, false)), Deliver);
                    assert_eq!(after_answer(status, blamed, body, sent(1, true)), Deliver);
                }
            }
        }
    }

    #[test]
    fn only_a_declared_length_over_retry_body_bytes_streams_unread() {
        let read = BodyPlan::Read { limit: 64 };
        assert_eq!(body_plan(&[b"65".to_vec()], 64), BodyPlan::Stream);
        assert_eq!(body_plan(&[b" 65 ".to_vec()], 64), BodyPlan::Stream);
        assert_eq!(body_plan(&[b"64".to_vec()], 64), read);
        // Not said, or not a length: read to find out.
        for unknown in [vec![], vec![b"x".to_vec()], vec![b"-1".to_vec()]] {
            assert_eq!(body_plan(&unknown, 64), read, "{unknown:?}");
        }
        // retry_body_bytes = 0: any body streams; without a length, one chunk is read
        // to learn whether there is one.
        assert_eq!(body_plan(&[b"1".to_vec()], 0), BodyPlan::Stream);
        assert_eq!(body_plan(&[b"0".to_vec()], 0), BodyPlan::Read { limit: 0 });
        assert_eq!(body_plan(&[], 0), BodyPlan::Read { limit: 0 });
    }

    #[test]
    fn a_nonce_request_is_answered_once_and_only_with_a_body_that_can_be_sent_again() {
        assert!(retry_with_nonce(Body::Empty, false));
        assert!(retry_with_nonce(Body::Kept, false));
        assert!(
            !retry_with_nonce(Body::Bytes, false),
            "streamed: to the app"
        );
        assert!(!retry_with_nonce(Body::Empty, true), "once per request");
    }
}
