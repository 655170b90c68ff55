//! Judging the token endpoint's answer: lenient where servers differ, strict where a
//! mistake would leak or break something.

use crate::error::{Error, OAuthError, sanitize};
use crate::http_types::HttpResponse;
use crate::oauth::dpop::{DpopSettings, TokenType};
use crate::secret::AccessToken;
use serde_json::{Map, Value};

/// Largest token endpoint response we read.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest access token accepted (large JWTs with many claims stay well below).
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A usable token from a successful response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    /// Seconds from when the request was sent, after defaults and clamping.
    pub expires_in: u64,
    /// Why the response's `expires_in` was not usable (0, negative, not a whole
    /// number), so the default lifetime was used: worth a line in the audit log.
    pub expires_in_ignored: Option<&'static str>,
    /// Granted scopes (response `scope`, else the requested ones), sorted.
    pub scopes: Vec<String>,
    /// `token_type` (absent: Bearer).
    pub token_type: TokenType,
    /// `issued_token_type` (RFC 8693 §2.2.1), when the answer has one as a string.
    pub issued_token_type: Option<String>,
}

/// Lifetime limits from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub default_expires_in: u64,
    pub max_expires_in: u64,
}

/// Turn an HTTP response from the token endpoint into a token or a typed error.
pub fn parse(
    resp: &HttpResponse,
    requested_scopes: &[String],
    limits: Lifetimes,
) -> Result<TokenResponse, Error> {
    let status = resp.status;
    if resp.body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(Error::InvalidResponse(format!(
            "body larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"
        )));
    }
    if (300..400).contains(&status) {
        return Err(Error::Server {
            status,
            message: "the token endpoint answered with a redirect, which is not followed".into(),
        });
    }
    let json = parse_object(&resp.body);
    if status >= 400 || !(200..300).contains(&status) {
        if let Ok(obj) = &json
            && let Some(err) = oauth_error(obj, status)
        {
            return Err(Error::OAuth(err));
        }
        return Err(Error::Server {
            status,
            message: format!("no OAuth error in the response ({})", describe_body(resp)),
        });
    }
    let obj =
        json.map_err(|why| Error::InvalidResponse(format!("{why} ({})", describe_body(resp))))?;
    if let Some(err) = oauth_error(&obj, status) {
        return Err(Error::OAuth(err));
    }
    let access_token = access_token(&obj)?;
    check_token(access_token)?;
    let token_type = token_type(&obj)?;
    let (expires_in, expires_in_ignored) = lifetime(obj.get("expires_in"), limits);
    Ok(TokenResponse {
        access_token: AccessToken::new(access_token.to_string()),
        expires_in,
        expires_in_ignored,
        scopes: granted_scopes(&obj, requested_scopes)?,
        token_type,
        issued_token_type: obj
            .get("issued_token_type")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// An `invalid_scope` refusal, with the scope the request asked for added to its
/// description: a server that answers only `{"error":"invalid_scope"}` (Amazon
/// Cognito does) leaves the reader guessing which value it refused. Other errors
/// are as they were.
pub(crate) fn with_scope_asked(mut e: Error, scopes: &[String]) -> Error {
    add_scope_asked(&mut e, scopes);
    e
}

/// [`with_scope_asked`] in place (not inlined: a component's fetch path stays small).
#[inline(never)]
fn add_scope_asked(e: &mut Error, scopes: &[String]) {
    match e {
        Error::OAuth(o) if o.error == "invalid_scope" => {
            // Pushed, not formatted: this is on every build's error path.
            let mut asked = String::from("the request asked for ");
            match scopes {
                [] => asked.push_str("no scope"),
                _ => {
                    // At most 200 characters of ours beside the server's 256.
                    asked.push_str("scope \"");
                    asked.push_str(&crate::error::sanitize(&scopes.join(" "), 200));
                    asked.push('"');
                }
            }
            o.description = Some(match o.description.take() {
                Some(mut theirs) => {
                    theirs.push_str(" (");
                    theirs.push_str(&asked);
                    theirs.push(')');
                    theirs
                }
                None => asked,
            });
        }
        _ => {}
    }
}

/// The token types a token exchange's answer may issue for use as an access token.
pub(crate) const USABLE_ISSUED_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:jwt",
];

/// A token exchange's answer says what it issued (RFC 8693 §2.2.1), and it is an
/// access token or a JWT: an ID token or a refresh token is not one to send to APIs.
pub(crate) fn exchanged(issued_token_type: Option<&str>) -> Result<(), Error> {
    let what = match issued_token_type {
        Some(t) if USABLE_ISSUED_TYPES.contains(&t) => return Ok(()),
        None => {
            return Err(Error::InvalidResponse(
                "issued_token_type is missing: a token exchange answer says what it issued (RFC 8693 §2.2.1)".into(),
            ));
        }
        Some("urn:ietf:params:oauth:token-type:id_token") => "an ID token".to_string(),
        Some("urn:ietf:params:oauth:token-type:refresh_token") => "a refresh token".to_string(),
        Some(other) => format!("`{}`", sanitize(other, 80)),
    };
    Err(Error::InvalidResponse(format!(
        "issued_token_type is {what}, not an access token: check requested_token_type and what the security token service issues for it"
    )))
}

fn access_token(obj: &Map<String, Value>) -> Result<&str, Error> {
    match obj.get("access_token") {
        Some(Value::String(t)) => Ok(t),
        None | Some(Value::Null) => Err(Error::InvalidResponse("access_token is missing".into())),
        Some(_) => Err(Error::InvalidResponse(
            "access_token is not a string".into(),
        )),
    }
}

fn token_type(obj: &Map<String, Value>) -> Result<TokenType, Error> {
    match obj.get("token_type") {
        // Some servers omit it: Bearer, the default of RFC 6750.
        None | Some(Value::Null) => Ok(TokenType::Bearer),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => Ok(TokenType::Bearer),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("dpop") => Ok(TokenType::DPoP),
        Some(Value::String(t)) => Err(Error::InvalidResponse(format!(
            "token_type `{}` is not supported (only Bearer and DPoP)",
            sanitize(t, 32)
        ))),
        Some(_) => Err(Error::InvalidResponse("token_type is not a string".into())),
    }
}

/// Whether a token answered with `token_type` is bound to the DPoP key the request
/// proved (`dpop`: the settings, `None` when off). A DPoP token without DPoP is no use;
/// a Bearer answer to a DPoP request means the server ignored the proof, an error
/// unless `dpop_require_binding = false`.
pub fn bound(token_type: TokenType, dpop: Option<&DpopSettings>) -> Result<bool, Error> {
    match (token_type, dpop) {
        (TokenType::Bearer, None) => Ok(false),
        (TokenType::DPoP, Some(_)) => Ok(true),
        (TokenType::DPoP, None) => Err(Error::InvalidResponse(
            "token_type `DPoP`: the server bound the token to a key, but dpop is off".into(),
        )),
        (TokenType::Bearer, Some(d)) if d.require_binding => Err(Error::InvalidResponse(
            "token_type `Bearer` answered a DPoP token request: the server ignored the proof \
             (dpop_require_binding = false uses such a token as a Bearer token)"
                .into(),
        )),
        (TokenType::Bearer, Some(_)) => Ok(false),
    }
}

/// The response's `scope` (sorted, without duplicates), else the requested scopes.
fn granted_scopes(obj: &Map<String, Value>, requested: &[String]) -> Result<Vec<String>, Error> {
    match obj.get("scope") {
        None | Some(Value::Null) => Ok(requested.to_vec()),
        Some(Value::String(s)) => {
            let mut v: Vec<String> = s.split_ascii_whitespace().map(str::to_string).collect();
            v.sort_unstable();
            v.dedup();
            Ok(v)
        }
        Some(_) => Err(Error::InvalidResponse("scope is not a string".into())),
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    // Tolerate a UTF-8 byte-order mark: some frameworks emit one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err("body is empty");
    }
    // From bytes, as the store's records are read: one JSON reader in the component.
    match serde_json::from_slice::<Value>(text.as_bytes()) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("body is JSON but not an object"),
        Err(_) => Err("body is not JSON"),
    }
}

/// RFC 6749 §5.2: an `error` member makes it an error response.
fn oauth_error(obj: &Map<String, Value>, status: u16) -> Option<OAuthError> {
    let code = match obj.get("error")? {
        Value::String(s) => s,
        Value::Null => return None,
        _ => "invalid_error_member",
    };
    // error = 1*( %x20-21 / %x23-5B / %x5D-7E ); anything else is replaced.
    let code: String = code
        .chars()
        .take(64)
        .map(|c| {
            if matches!(c, ' '..='!' | '#'..='[' | ']'..='~') {
                c
            } else {
                '?'
            }
        })
        .collect();
    let text = |key: &str, max: usize| match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(sanitize(s, max)),
        _ => None,
    };
    Some(OAuthError {
        error: if code.is_empty() {
            "unknown_error".into()
        } else {
            code
        },
        description: text("error_description", 256),
        uri: text("error_uri", 256),
        status,
    })
}

/// A token must be usable as an HTTP header value and printable: visible ASCII only.
fn check_token(token: &str) -> Result<(), Error> {
    if token.is_empty() {
        return Err(Error::InvalidResponse("access_token is empty".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::InvalidResponse(format!(
            "access_token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::InvalidResponse(
            "access_token has characters that cannot be sent in a header (control, space or non-ASCII)".into(),
        ));
    }
    Ok(())
}

/// `expires_in` as a JSON integer, an integral float, or a string of digits.
/// The token's lifetime in seconds: `expires_in` clamped to `max_expires_in`, or the
/// default (itself at most the maximum) when it is absent or unusable; a usable token
/// is never refused over its lifetime. The second value says why `expires_in` was not
/// used, when it was there.
fn lifetime(value: Option<&Value>, limits: Lifetimes) -> (u64, Option<&'static str>) {
    let default = limits.default_expires_in.min(limits.max_expires_in);
    match value.map(expires_in) {
        None | Some(Ok(None)) => (default, None),
        Some(Ok(Some(0))) => (default, Some("is 0")),
        Some(Ok(Some(n))) => (n.min(limits.max_expires_in), None),
        Some(Err(why)) => (default, Some(why)),
    }
}

/// `expires_in` as whole seconds (`None` for null); `Err` says why it is unusable.
fn expires_in(v: &Value) -> Result<Option<u64>, &'static str> {
    let bad = |why: &'static str| Err(why);
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if n.as_i64().is_some() {
                bad("is negative")
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => {
                        Ok(Some(f.floor().min(u64::MAX as f64) as u64))
                    }
                    Some(f) if f < 0.0 => bad("is negative"),
                    _ => bad("is not a number"),
                }
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Some(s.parse::<u64>().unwrap_or(u64::MAX)))
            } else {
                bad("is a string that is not a whole number")
            }
        }
        _ => bad("is not a number"),
    }
}

/// A short, safe description of a body for error messages: content type and size,
/// never the body itself.
fn describe_body(resp: &HttpResponse) -> String {
    let ct = resp
        .header("content-type")
        .map(|c| sanitize(c.split(';').next().unwrap_or("").trim(), 64))
        .unwrap_or_else(|| "no content-type".into());
    format!("{ct}, {} bytes", resp.body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Lifetimes = Lifetimes {
        default_expires_in: 300,
        max_expires_in: 86_400,
    };

    fn resp(status: u16, ct: &str, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), ct.as_bytes().to_vec())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn ok(body: &str) -> Result<TokenResponse, Error> {
        parse(
            &resp(200, "application/json", body),
            &["req".to_string()],
            LIMITS,
        )
    }

    #[test]
    fn standard_response_is_accepted() {
        let t = ok(
            r#"{"access_token":"abc.def","token_type":"Bearer","expires_in":3600,"scope":"b a"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "abc.def");
        assert_eq!(t.expires_in, 3600);
        assert_eq!(t.scopes, ["a", "b"]);
    }

    /// Google's answer to a service account's JWT-bearer grant can carry an
    /// `id_token` beside the access token: the access token is taken, the rest ignored.
    #[test]
    fn an_id_token_beside_the_access_token_is_ignored() {
        let t = ok(
            r#"{"access_token":"ya29.c.b0Aa","expires_in":3599,"token_type":"Bearer","id_token":"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "ya29.c.b0Aa");
        assert_eq!(t.expires_in, 3599);
        assert_eq!(t.token_type, TokenType::Bearer);
    }

    #[test]
    fn string_expires_in_is_accepted() {
        assert_eq!(
            ok(r#"{"access_token":"t","token_type":"bearer","expires_in":"120"}"#)
                .unwrap()
                .expires_in,
            120
        );
    }

    #[test]
    fn token_type_is_case_insensitive_and_may_be_missing() {
        let t = |body: &str| ok(body).unwrap().token_type;
        assert_eq!(
            t(r#"{"access_token":"t","token_type":"BEARER"}"#),
            TokenType::Bearer
        );
        assert_eq!(t(r#"{"access_token":"t"}"#), TokenType::Bearer);
        assert_eq!(
            t(r#"{"access_token":"t","token_type":"dpop"}"#),
            TokenType::DPoP
        );
    }

    #[test]
    fn other_token_types_are_refused() {
        let e = ok(r#"{"access_token":"t","token_type":"MAC"}"#).unwrap_err();
        assert_eq!(
            e,
            Error::InvalidResponse(
                "token_type `MAC` is not supported (only Bearer and DPoP)".into()
            )
        );
        assert!(matches!(
            ok(r#"{"access_token":"t","token_type":5}"#),
            Err(Error::InvalidResponse(_))
        ));
    }

    #[test]
    fn a_token_is_bound_only_when_dpop_asked_and_the_server_said_dpop() {
        let on = |require_binding| DpopSettings {
            configured: None,
            require_binding,
        };
        assert_eq!(bound(TokenType::Bearer, None), Ok(false));
        assert_eq!(bound(TokenType::DPoP, Some(&on(true))), Ok(true));
        assert_eq!(bound(TokenType::Bearer, Some(&on(false))), Ok(false));
        let ignored = bound(TokenType::Bearer, Some(&on(true))).unwrap_err();
        assert!(
            ignored.to_string().contains("the server ignored the proof")
                && ignored.to_string().contains("dpop_require_binding"),
            "{ignored}"
        );
        let off = bound(TokenType::DPoP, None).unwrap_err();
        assert!(off.to_string().contains("dpop is off"), "{off}");
    }

    #[test]
    fn missing_expires_in_uses_the_configured_default_not_forever() {
        assert_eq!(
            ok(r#"{"access_token":"t","token_type":"Bearer"}"#)
                .unwrap()
                .expires_in,
            300
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":null}"#)
                .unwrap()
                .expires_in,
            300
        );
    }

    #[test]
    fn absurd_expires_in_is_clamped_and_unusable_ones_mean_the_default() {
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":99999999999}"#)
                .unwrap()
                .expires_in,
            86_400
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":"99999999999999999999"}"#)
                .unwrap()
                .expires_in,
            86_400
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":1e300}"#)
                .unwrap()
                .expires_in,
            86_400
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":59.9}"#)
                .unwrap()
                .expires_in,
            59
        );
        // A usable token is never refused over its lifetime: 0, negative, empty or
        // non-integer values mean the default lifetime, and say why.
        for (bad, why) in [
            ("0", "is 0"),
            ("0.5", "is 0"),
            ("-1", "is negative"),
            ("-0.5", "is negative"),
            (r#""""#, "is a string that is not a whole number"),
            (r#""3600.0""#, "is a string that is not a whole number"),
            (r#""-5""#, "is a string that is not a whole number"),
            (r#""ten""#, "is a string that is not a whole number"),
            ("true", "is not a number"),
            ("[60]", "is not a number"),
        ] {
            let body = format!(r#"{{"access_token":"t","expires_in":{bad}}}"#);
            let t = ok(&body).unwrap();
            assert_eq!(
                (t.expires_in, t.expires_in_ignored),
                (300, Some(why)),
                "{bad}"
            );
        }
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":60}"#)
                .unwrap()
                .expires_in_ignored,
            None
        );
    }

    #[test]
    fn the_default_lifetime_is_never_longer_than_the_maximum() {
        let limits = Lifetimes {
            default_expires_in: 600,
            max_expires_in: 120,
        };
        for body in [
            r#"{"access_token":"t"}"#,
            r#"{"access_token":"t","expires_in":0}"#,
        ] {
            let t = parse(&resp(200, "application/json", body), &[], limits).unwrap();
            assert_eq!(t.expires_in, 120, "{body}");
        }
    }

    #[test]
    fn missing_scope_means_the_requested_scopes() {
        assert_eq!(ok(r#"{"access_token":"t"}"#).unwrap().scopes, ["req"]);
        assert!(matches!(
            ok(r#"{"access_token":"t","scope":["a"]}"#),
            Err(Error::InvalidResponse(_))
        ));
    }

    #[test]
    fn an_invalid_scope_refusal_says_what_scope_was_asked_for() {
        let refusal = |body: &str, status: u16| {
            parse(&resp(status, "application/json", body), &[], LIMITS).unwrap_err()
        };
        let scopes = ["orders/read".to_string(), "orders/write".to_string()];
        // Cognito's bare answer gets our words; a described one keeps its own first.
        let bare = with_scope_asked(refusal(r#"{"error":"invalid_scope"}"#, 400), &scopes);
        assert_eq!(
            bare.to_string(),
            r#"invalid_scope (HTTP 400): the request asked for scope "orders/read orders/write""#
        );
        let described = with_scope_asked(
            refusal(
                r#"{"error":"invalid_scope","error_description":"AADSTS1002012: bad"}"#,
                400,
            ),
            &[],
        );
        assert_eq!(
            described.to_string(),
            "invalid_scope (HTTP 400): AADSTS1002012: bad (the request asked for no scope)"
        );
        // A long request is cut as the server's words are.
        let many: Vec<String> = (0..100).map(|i| format!("scope-{i}")).collect();
        let long = with_scope_asked(refusal(r#"{"error":"invalid_scope"}"#, 400), &many);
        let Error::OAuth(o) = &long else {
            panic!("{long:?}")
        };
        let description = o.description.as_deref().unwrap();
        assert!(description.ends_with("…\""), "{description}");
        assert!(description.chars().count() < 240, "{description}");
        let other = refusal(r#"{"error":"invalid_client"}"#, 401);
        assert_eq!(with_scope_asked(other.clone(), &scopes), other);
    }

    #[test]
    fn error_member_in_a_200_is_an_oauth_error() {
        let e = ok(r#"{"error":"invalid_scope","error_description":"nope"}"#).unwrap_err();
        assert_eq!(
            e,
            Error::OAuth(OAuthError {
                error: "invalid_scope".into(),
                description: Some("nope".into()),
                uri: None,
                status: 200
            })
        );
    }

    #[test]
    fn rfc6749_errors_become_oauth_errors_on_400_and_401() {
        for status in [400, 401] {
            let r = resp(
                status,
                "application/json;charset=utf-8",
                r#"{"error":"invalid_client","error_description":"bad\r\nsecret","error_uri":"https://x/e"}"#,
            );
            let e = parse(&r, &[], LIMITS).unwrap_err();
            assert_eq!(
                e,
                Error::OAuth(OAuthError {
                    error: "invalid_client".into(),
                    description: Some("bad  secret".into()),
                    uri: Some("https://x/e".into()),
                    status
                })
            );
        }
    }

    #[test]
    fn html_error_pages_and_5xx_are_server_errors() {
        let e = parse(
            &resp(502, "text/html", "<html>Bad gateway</html>"),
            &[],
            LIMITS,
        )
        .unwrap_err();
        assert_eq!(
            e,
            Error::Server {
                status: 502,
                message: "no OAuth error in the response (text/html, 24 bytes)".into()
            }
        );
        let e = parse(&resp(400, "text/plain", "bad request"), &[], LIMITS).unwrap_err();
        assert!(matches!(e, Error::Server { status: 400, .. }));
        // The body is never echoed.
        assert!(!e.to_string().contains("bad request"));
    }

    #[test]
    fn redirects_are_not_followed() {
        let e = parse(&resp(302, "text/html", ""), &[], LIMITS).unwrap_err();
        assert!(matches!(e, Error::Server { status: 302, .. }));
    }

    #[test]
    fn non_json_200_is_an_invalid_response() {
        for body in [
            "<html>login</html>",
            "",
            "[1,2]",
            "\"str\"",
            "{\"access_token\":\"t\"} trailing",
        ] {
            assert!(
                matches!(ok(body), Err(Error::InvalidResponse(_))),
                "{body:?}"
            );
        }
        let e = parse(
            &HttpResponse {
                status: 200,
                headers: vec![],
                body: vec![0xff, 0xfe, b'{'],
            },
            &[],
            LIMITS,
        )
        .unwrap_err();
        assert_eq!(
            e,
            Error::InvalidResponse("body is not UTF-8 (no content-type, 3 bytes)".into())
        );
    }

    #[test]
    fn bom_is_tolerated() {
        assert!(ok("\u{feff}{\"access_token\":\"t\"}").is_ok());
    }

    #[test]
    fn tokens_that_cannot_be_header_values_are_refused() {
        for bad in ["", "a\\r\\nb", "a b", "a\\u0000b", "tök", "a\\tb"] {
            let body = format!(r#"{{"access_token":"{bad}"}}"#);
            assert!(
                matches!(ok(&body), Err(Error::InvalidResponse(m)) if m.starts_with("access_token")),
                "{bad}"
            );
        }
        let huge = format!(
            r#"{{"access_token":"{}"}}"#,
            "a".repeat(MAX_TOKEN_BYTES + 1)
        );
        assert!(matches!(ok(&huge), Err(Error::InvalidResponse(_))));
        assert!(
            matches!(ok(r#"{"access_token":42}"#), Err(Error::InvalidResponse(m)) if m == "access_token is not a string")
        );
        assert!(
            matches!(ok(r#"{"token_type":"Bearer"}"#), Err(Error::InvalidResponse(m)) if m == "access_token is missing")
        );
    }

    #[test]
    fn body_cap_is_enforced() {
        let pad = "x".repeat(MAX_TOKEN_RESPONSE_BYTES);
        let body = format!(r#"{{"access_token":"t","pad":"{pad}"}}"#);
        assert_eq!(
            ok(&body).unwrap_err(),
            Error::InvalidResponse(format!("body larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"))
        );
    }

    #[test]
    fn error_codes_are_sanitised() {
        let e = ok(r#"{"error":"bad\u001b[31m\"code"}"#).unwrap_err();
        match e {
            Error::OAuth(o) => assert_eq!(o.error, "bad?[31m?code"),
            other => panic!("{other:?}"),
        }
    }

    /// A token exchange's answer must say it issued an access token or a JWT: an ID
    /// token, a refresh token, another type or none at all is refused, with words.
    #[test]
    fn a_token_exchange_answer_must_issue_an_access_token() {
        assert!(exchanged(Some("urn:ietf:params:oauth:token-type:access_token")).is_ok());
        assert!(exchanged(Some("urn:ietf:params:oauth:token-type:jwt")).is_ok());
        let refused = |t: Option<&str>| exchanged(t).unwrap_err().to_string();
        assert!(refused(None).contains("issued_token_type is missing"));
        assert!(
            refused(Some("urn:ietf:params:oauth:token-type:id_token"))
                .contains("issued_token_type is an ID token, not an access token")
        );
        assert!(
            refused(Some("urn:ietf:params:oauth:token-type:refresh_token"))
                .contains("is a refresh token")
        );
        assert!(refused(Some("urn:x:saml2")).contains("is `urn:x:saml2`"));
        let ok = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"access_token":"a","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#.to_vec(),
        };
        let parsed = parse(&ok, &[], LIMITS).unwrap();
        assert_eq!(
            parsed.issued_token_type.as_deref(),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
    }
}
