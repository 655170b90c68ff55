//! The token interceptor's decision for one outgoing request of an app (issue 12):
//! attach a token, send it on untouched, or refuse it. Pure: the interceptor component
//! (`component::interceptor`) asks, then does what it is told.
//!
//! Which origins get a token: those in `allowed_origins`, each with the token the
//! top-level keys describe (`scope`, `audience`, `resource`), bound as `send` binds it
//! (`origin_audiences`). A request to any other origin goes on untouched, and so does a
//! request whose `Authorization` the app set itself.

use crate::authorized::bound_to;
use crate::config::Settings;
use crate::error::Error;
use crate::origin::{Origin, parse_url};
use crate::token_request::TokenRequest;

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Get this token and set `Authorization: Bearer …` before sending to `origin`.
    Attach { origin: Origin, token: TokenRequest },
    /// Send the request on as the app made it, for this reason (audited).
    PassThrough(&'static str),
    /// Do not send: a token is due here but may not go (audited, and the app gets an
    /// error).
    Refuse(Error),
}

/// Said when the app's request already carries `Authorization`.
pub const APP_AUTHORIZATION: &str = "the app set Authorization itself; left as it is";
/// Said when the destination is not one of `allowed_origins`.
pub const NOT_ROUTED: &str = "origin not in allowed_origins; sent without a token";
/// Said when the request names no scheme or authority, or one that is not a URL origin.
pub const NO_ORIGIN: &str = "no http(s) origin in the request; sent without a token";

/// The decision for a request to `scheme://authority`. `scheme` is as the app set it
/// (`http`, `https`, or another), `None` when it set none.
pub fn decide(
    settings: &Settings,
    scheme: Option<&str>,
    authority: Option<&str>,
    app_authorization: bool,
) -> Decision {
    if app_authorization {
        return Decision::PassThrough(APP_AUTHORIZATION);
    }
    let (Some(scheme), Some(authority)) = (scheme, authority) else {
        return Decision::PassThrough(NO_ORIGIN);
    };
    // Only an authority: a path, query or userinfo in it would make another URL.
    if authority.contains(['/', '?', '#', '@']) {
        return Decision::PassThrough(NO_ORIGIN);
    }
    let Ok(url) = parse_url(&format!("{scheme}://{authority}/")) else {
        return Decision::PassThrough(NO_ORIGIN);
    };
    let origin = url.origin;
    if !settings.send.allowed_origins.contains(&origin) {
        return Decision::PassThrough(NOT_ROUTED);
    }
    let token = TokenRequest::default();
    match bound_to(settings, &token, &origin) {
        Ok(()) => Decision::Attach { origin, token },
        Err(e) => Decision::Refuse(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::settings;

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
            match decide(&api(), Some(scheme), Some(authority), false) {
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
                decide(&api(), Some(scheme), Some(authority), false),
                Decision::PassThrough(NOT_ROUTED),
                "{scheme}://{authority}"
            );
        }
    }

    #[test]
    fn the_apps_own_authorization_is_left_alone() {
        assert_eq!(
            decide(&api(), Some("https"), Some("api.example.com"), true),
            Decision::PassThrough(APP_AUTHORIZATION)
        );
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
                decide(&api(), scheme, authority, false),
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
            decide(&s, Some("https"), Some("api.example.com"), false),
            Decision::Attach { .. }
        ));
        match decide(&s, Some("https"), Some("other.example.com"), false) {
            Decision::Refuse(Error::Refused(m)) => assert!(m.contains("orders-api"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
