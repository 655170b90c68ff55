//! The token interceptor's route table: `intercept_routes`, a JSON array that one Spin
//! variable can hold, and `intercept_unmatched`.
//!
//! ```json
//! [{"origin": "https://api.example.com", "scope": "orders:read orders:write"},
//!  {"origin": "https://billing.example.com:8443", "audience": "billing",
//!   "resource": "https://billing.example.com/"}]
//! ```
//!
//! Each route names one origin (as `allowed_origins` names them: scheme, host, port,
//! matched exactly) and which token goes there; a field left out takes the top-level
//! key (`scope`, `audience`, `resource`), an empty one asks for none. A route's own
//! audience and resources are bound to its origin: the route is the binding, as an
//! `origin_audiences` entry is. An audience or resource it takes from the top level is
//! not: that one must be bound to the route's origin as for any allowed origin
//! (`origin_audiences`, or a resource at that origin), or the table is a config error
//! (`Route::inherited`).

use crate::error::{Error, sanitize};
use crate::oauth::client::ClientSettings;
use crate::oauth::request::TokenRequest;
use crate::origin::{Origin, parse_origin};
use serde_json::Value;

/// At most this many routes: each is a cache key, and the table is searched per request.
pub(crate) const MAX_ROUTES: usize = 64;
/// Longest `intercept_routes` value read.
pub(crate) const MAX_ROUTES_BYTES: usize = 64 * 1024;

const KEY: &str = "intercept_routes";
const FIELDS: &[&str] = &["origin", "scope", "audience", "resource"];

/// One route: requests to `origin` get the token `token` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub origin: Origin,
    pub token: TokenRequest,
}

/// What the interceptor does with requests to origins that get no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Send them on untouched (`intercept_unmatched = pass`).
    Pass,
    /// Answer them with an error and send nothing (`intercept_unmatched = refuse`).
    Refuse,
}

/// The interceptor's settings.
#[derive(Debug, Clone)]
pub struct InterceptSettings {
    /// `intercept_routes`.
    pub routes: Vec<Route>,
    /// `intercept_unmatched`.
    pub unmatched: Unmatched,
    /// `retry_body_bytes`: a request body up to this size is kept to be sent again
    /// after a 401; 0: none is.
    pub retry_body_bytes: u64,
}

impl Route {
    /// The part of the route's token it takes from the top-level keys and does not
    /// bind itself: its audience and resources if it leaves them out (scopes bind
    /// nothing). `None` if it takes nothing of the kind from `client`.
    pub(crate) fn inherited(&self, client: &ClientSettings) -> Option<TokenRequest> {
        let audience = self.token.audience.is_none() && client.audience.is_some();
        let resources = self.token.resources.is_none() && !client.resource.is_empty();
        (audience || resources).then(|| TokenRequest {
            scopes: Some(Vec::new()),
            audience: self.token.audience.as_ref().map(|_| String::new()),
            resources: self.token.resources.as_ref().map(|_| Vec::new()),
            force_refresh: false,
        })
    }
}

impl InterceptSettings {
    /// The route for `origin`, if one names it.
    pub(crate) fn route(&self, origin: &Origin) -> Option<&Route> {
        self.routes.iter().find(|r| r.origin == *origin)
    }
}

fn bad(why: impl std::fmt::Display) -> Error {
    Error::config(KEY, why.to_string())
}

/// `intercept_routes` parsed; `text` is the trimmed value, empty for no routes. Each
/// route's token is checked against the request bounds by the caller.
pub(crate) fn parse_routes(text: &str) -> Result<Vec<Route>, Error> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.len() > MAX_ROUTES_BYTES {
        return Err(bad(format!(
            "{} bytes long; at most {MAX_ROUTES_BYTES}",
            text.len()
        )));
    }
    // From bytes, as every other JSON the components read: one copy of the parser.
    let value: Value = serde_json::from_slice(text.as_bytes()).map_err(|e| {
        bad(format!(
            "not JSON (line {}, column {}); expected an array of routes such as [{{\"origin\":\"https://api.example.com\",\"scope\":\"read\"}}]",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Array(items) = value else {
        return Err(bad("expected a JSON array of routes"));
    };
    if items.len() > MAX_ROUTES {
        return Err(bad(format!("{} routes; at most {MAX_ROUTES}", items.len())));
    }
    let mut routes: Vec<Route> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let route = parse_route(item).map_err(|why| bad(format!("route {}: {why}", i + 1)))?;
        if routes.iter().any(|r| r.origin == route.origin) {
            return Err(bad(format!(
                "route {}: {} has a route already",
                i + 1,
                route.origin
            )));
        }
        routes.push(route);
    }
    Ok(routes)
}

fn parse_route(item: &Value) -> Result<Route, String> {
    let Value::Object(fields) = item else {
        return Err("expected an object with \"origin\"".into());
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{}`; the fields are {}",
            sanitize(unknown, 40),
            FIELDS.join(", ")
        ));
    }
    let text = |name: &str| -> Result<Option<&str>, String> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(_) => Err(format!("`{name}` must be a string")),
        }
    };
    let origin = text("origin")?.ok_or("`origin` is missing")?;
    let origin =
        parse_origin(origin).map_err(|e| format!("origin `{}`: {e}", sanitize(origin, 100)))?;
    let words = |s: &str| {
        s.split_ascii_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let resources = text("resource")?.map(words);
    for r in resources.iter().flatten() {
        crate::oauth::request::parse_resource(r).map_err(|e| format!("resource: {e}"))?;
    }
    Ok(Route {
        origin,
        token: TokenRequest {
            scopes: text("scope")?.map(words),
            audience: text("audience")?.map(str::to_string),
            resources,
            force_refresh: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_routes(text).unwrap_err().to_string()
    }

    #[test]
    fn routes_name_an_origin_and_the_token_it_gets() {
        let routes = parse_routes(
            r#"[{"origin": "HTTPS://API.example.com:443", "scope": " a  b "},
                {"origin": "https://billing.example.com:8443", "audience": "billing",
                 "resource": "https://billing.example.com/ urn:x"},
                {"origin": "http://127.0.0.1:8080", "scope": ""}]"#,
        )
        .unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(
            routes[0].origin,
            parse_origin("https://api.example.com").unwrap()
        );
        assert_eq!(
            routes[0].token,
            TokenRequest {
                scopes: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            }
        );
        assert_eq!(routes[1].origin.port, 8443);
        assert_eq!(routes[1].token.audience.as_deref(), Some("billing"));
        assert_eq!(
            routes[1].token.resources,
            Some(vec!["https://billing.example.com/".into(), "urn:x".into()])
        );
        assert_eq!(
            routes[1].token.scopes, None,
            "left out: the top-level scope"
        );
        assert_eq!(routes[2].token.scopes, Some(vec![]), "empty: no scope");
        assert!(parse_routes("").unwrap().is_empty());
        assert!(parse_routes("[]").unwrap().is_empty());
    }

    #[test]
    fn a_bad_table_is_a_config_error_that_says_where() {
        for (text, says) in [
            ("{", "intercept_routes: not JSON (line 1, column 1)"),
            (r#"{"origin":"https://a"}"#, "expected a JSON array"),
            ("[1]", "route 1: expected an object"),
            ("[{}]", "route 1: `origin` is missing"),
            (r#"[{"origin": 7}]"#, "route 1: `origin` must be a string"),
            (
                r#"[{"origin":"https://a/x"}]"#,
                "route 1: origin `https://a/x`",
            ),
            (r#"[{"origin":"ftp://a"}]"#, "route 1: origin `ftp://a`"),
            (
                r#"[{"origin":"https://a","scopes":"x"}]"#,
                "route 1: unknown field `scopes`",
            ),
            (
                r#"[{"origin":"https://a","resource":"not-a-uri"}]"#,
                "route 1: resource: `not-a-uri` is not an absolute URI",
            ),
            (
                r#"[{"origin":"https://a"},{"origin":"https://A:443"}]"#,
                "route 2: https://a:443 has a route already",
            ),
            (
                r#"[{"origin":"https://a","scope":["x"]}]"#,
                "route 1: `scope` must be a string",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.starts_with("config: intercept_routes: "), "{e}");
        }
        let many = format!(
            "[{}]",
            vec![r#"{"origin":"https://a"}"#; MAX_ROUTES + 1].join(",")
        );
        assert!(err(&many).contains("65 routes; at most 64"));
        let long = format!("[\"{}\"]", "x".repeat(MAX_ROUTES_BYTES));
        assert!(err(&long).contains("at most 65536"));
    }
}
