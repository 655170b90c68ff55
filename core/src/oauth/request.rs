//! Building the token endpoint request (RFC 6749 §4.4, RFC 8707, client authentication).

use crate::http_types::HttpRequest;
use crate::oauth::client::Endpoint;
use crate::oauth::client::{AuthMethod, ClientSettings, Grant, SubjectToken, TokenExchange};
use crate::oauth::client_auth;
use crate::oauth::dpop::{DpopKey, ProofClaims};
use base64ct::Encoding as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What is being asked for, after defaults are applied and lists normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParams {
    /// Sorted, de-duplicated.
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    /// Sorted, de-duplicated.
    pub resources: Vec<String>,
}

/// A caller's request before defaults (mirrors the WIT `token-request`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub scopes: Option<Vec<String>>,
    pub audience: Option<String>,
    pub resources: Option<Vec<String>>,
    pub force_refresh: bool,
}

/// Bounds on what one request may ask for: every distinct set is a cache key (and a
/// store entry), so a caller looping over values must not make unbounded keys.
pub(crate) const MAX_SCOPES: usize = 64;
pub(crate) const MAX_SCOPE_LEN: usize = 256;
pub(crate) const MAX_RESOURCES: usize = 16;
pub(crate) const MAX_RESOURCE_LEN: usize = 2048;
pub(crate) const MAX_AUDIENCE_LEN: usize = 1024;

fn too_many(what: &str, count: usize, max: usize) -> crate::Error {
    crate::Error::Refused(format!("{count} {what} asked for; at most {max}"))
}

fn too_long(what: &str, value: &str, max: usize) -> crate::Error {
    crate::Error::Refused(format!(
        "{what} `{}` is {} bytes long; at most {max}",
        crate::error::sanitize(value, 64),
        value.len()
    ))
}

impl TokenParams {
    /// Fill what the caller left empty from the settings, then normalise. A scope
    /// entry may itself hold several space-separated scopes.
    pub fn resolve(request: &TokenRequest, client: &ClientSettings) -> Result<Self, crate::Error> {
        let scopes = normalise(
            request
                .scopes
                .as_ref()
                .unwrap_or(&client.scope)
                .iter()
                .flat_map(|s| s.split_ascii_whitespace()),
        );
        check_scopes(&scopes)?;
        let resources = normalise(
            request
                .resources
                .as_ref()
                .unwrap_or(&client.resource)
                .iter()
                .map(String::as_str),
        );
        check_resources(&resources)?;
        let audience = request
            .audience
            .clone()
            .or_else(|| client.audience.clone())
            .filter(|a| !a.is_empty());
        if let Some(a) = &audience {
            check_audience(a)?;
        }
        Ok(TokenParams {
            scopes,
            audience,
            resources,
        })
    }
}

fn check_scopes(scopes: &[String]) -> Result<(), crate::Error> {
    if scopes.len() > MAX_SCOPES {
        return Err(too_many("scopes", scopes.len(), MAX_SCOPES));
    }
    for s in scopes {
        if s.len() > MAX_SCOPE_LEN {
            return Err(too_long("scope", s, MAX_SCOPE_LEN));
        }
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if !s
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(crate::Error::Refused(format!(
                "scope `{}` has characters RFC 6749 does not allow",
                crate::error::sanitize(s, 64)
            )));
        }
    }
    Ok(())
}

fn check_resources(resources: &[String]) -> Result<(), crate::Error> {
    if resources.len() > MAX_RESOURCES {
        return Err(too_many("resources", resources.len(), MAX_RESOURCES));
    }
    for r in resources {
        if r.len() > MAX_RESOURCE_LEN {
            return Err(too_long("resource", r, MAX_RESOURCE_LEN));
        }
        parse_resource(r).map_err(crate::Error::Refused)?;
    }
    Ok(())
}

fn check_audience(a: &str) -> Result<(), crate::Error> {
    if a.len() > MAX_AUDIENCE_LEN {
        return Err(too_long("audience", a, MAX_AUDIENCE_LEN));
    }
    if a.chars().any(char::is_control) {
        return Err(crate::Error::Refused(
            "audience has control characters".into(),
        ));
    }
    Ok(())
}

fn normalise<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = items
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// RFC 6749 §2.3.1 + Appendix B: id and secret are form-encoded before Basic. We encode
/// every byte outside the RFC 3986 unreserved set, with space as `%20`: the form every
/// server we tested decodes the same way (a `+` for space is misread by some).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `Authorization` header value for `client_secret_basic`.
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let pair = format!(
        "{}:{}",
        utf8_percent_encode(client_id, NOT_UNRESERVED),
        utf8_percent_encode(client_secret, NOT_UNRESERVED)
    );
    format!("Basic {}", base64ct::Base64::encode_string(pair.as_bytes()))
}

/// What makes each token request's client assertion its own: the clock reading and
/// the random `jti` (read by the caller from the platform, once per attempt), and the
/// random bytes an RSA signature needs (the platform's, in the component).
#[derive(Clone, Copy)]
pub(crate) struct Fresh<'a> {
    pub now_secs: u64,
    pub jti: [u8; 16],
    pub random: &'a dyn Fn(&mut [u8]),
}

/// The DPoP proof a token request carries (`dpop = on`): the key, and the last nonce
/// the token endpoint's origin sent.
#[derive(Clone, Copy)]
pub(crate) struct DpopProof<'a> {
    pub key: &'a DpopKey,
    pub nonce: Option<&'a str>,
}

/// The token request for `params` to `endpoint` (no I/O); `fresh` is used by the
/// assertion methods and the DPoP proof (which draws its own `jti`). Fails only when
/// the federated assertion has expired.
pub(crate) fn build(
    client: &ClientSettings,
    endpoint: &Endpoint,
    params: &TokenParams,
    fresh: Fresh<'_>,
    dpop: Option<DpopProof<'_>>,
) -> Result<HttpRequest, crate::Error> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", client.grant.grant_type());
    match &client.grant {
        Grant::ClientCredentials => {}
        Grant::JwtBearer { subject } => {
            let assertion = grant_assertion(client, endpoint, params, subject.as_deref(), fresh)?;
            form.append_pair("assertion", &assertion);
        }
        Grant::TokenExchange(x) => {
            form.append_pair("subject_token", subject_token(x, fresh.now_secs)?);
            form.append_pair("subject_token_type", &x.subject_token_type);
            form.append_pair("requested_token_type", &x.requested_token_type);
        }
    }
    if !params.scopes.is_empty() {
        form.append_pair("scope", &params.scopes.join(" "));
    }
    if let Some(aud) = &params.audience {
        form.append_pair("audience", aud);
    }
    for r in &params.resources {
        form.append_pair("resource", r);
    }
    let mut headers = vec![
        (
            "content-type".to_string(),
            b"application/x-www-form-urlencoded".to_vec(),
        ),
        ("accept".to_string(), b"application/json".to_vec()),
    ];
    authenticate(client, endpoint, fresh, &mut form, &mut headers)?;
    if let Some(d) = dpop {
        headers.push(("dpop".to_string(), token_request_proof(endpoint, fresh, d)));
    }
    Ok(HttpRequest {
        method: "POST".into(),
        url: endpoint.url.clone(),
        headers,
        body: form.finish().into_bytes(),
    })
}

/// The subject token to send at `now_secs`: a JWT only while it is valid (an expired
/// one is a `config` error, and nothing is sent).
fn subject_token(x: &TokenExchange, now_secs: u64) -> Result<&str, crate::Error> {
    match &x.subject_token {
        SubjectToken::Jwt(jwt) => jwt
            .at(now_secs)
            .map_err(|e| crate::Error::config("subject_token", e)),
        SubjectToken::Opaque(token) => Ok(token.expose()),
    }
}

/// Client authentication as `endpoint.method` says: a Basic header, the secret in the
/// form, a client assertion in the form, or nothing (`none`).
fn authenticate(
    client: &ClientSettings,
    endpoint: &Endpoint,
    fresh: Fresh<'_>,
    form: &mut form_urlencoded::Serializer<'_, String>,
    headers: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), crate::Error> {
    let c = client;
    let secret = || {
        c.credentials
            .client_secret
            .as_ref()
            .map_or("", |s| s.expose())
    };
    match endpoint.method {
        AuthMethod::ClientSecretBasic => headers.push((
            "authorization".to_string(),
            basic_authorization(&c.id, secret()).into_bytes(),
        )),
        AuthMethod::ClientSecretPost => {
            form.append_pair("client_id", &c.id);
            form.append_pair("client_secret", secret());
        }
        AuthMethod::None => {}
        method => {
            let assertion = assertion(client, endpoint, method, fresh)?;
            form.append_pair("client_id", &c.id);
            form.append_pair("client_assertion_type", client_auth::JWT_BEARER);
            form.append_pair("client_assertion", &assertion);
        }
    }
    Ok(())
}

/// The `DPoP` header of a token request to `endpoint`: `POST`, the endpoint without
/// query, its own `jti`, and the server's nonce if any.
fn token_request_proof(endpoint: &Endpoint, fresh: Fresh<'_>, d: DpopProof<'_>) -> Vec<u8> {
    let mut jti = [0u8; 16];
    (fresh.random)(&mut jti);
    let url = endpoint.url.htu();
    let claims = ProofClaims {
        method: "POST",
        url: &url,
        now_secs: fresh.now_secs,
        jti,
        nonce: d.nonce,
        access_token: None,
    };
    d.key.proof(&claims, fresh.random).into_bytes()
}

/// What a signed assertion says about this client to `endpoint` now: `iss`/`sub` the
/// client id, `aud` the token endpoint or the issuer (`client_assertion_audience`).
fn claims<'a>(
    client: &'a ClientSettings,
    endpoint: &'a Endpoint,
    fresh: Fresh<'_>,
) -> client_auth::Claims<'a> {
    let c = client;
    let audience = match (&c.discovery, c.assertion.audience_is_issuer) {
        (Some(d), true) => d.issuer.as_str(),
        _ => endpoint.url_text.as_str(),
    };
    client_auth::Claims {
        client_id: &c.id,
        audience,
        now_secs: fresh.now_secs,
        lifetime_secs: c.assertion.lifetime_secs,
        jti: fresh.jti,
        typ: c.assertion.typ,
    }
}

fn missing(key: &str) -> crate::Error {
    crate::Error::config(key, "is required but not set")
}

/// The `assertion` of a `grant = jwt_bearer` token request: signed now with
/// `client_private_key`, the scopes asked for in its `scope` claim.
fn grant_assertion(
    client: &ClientSettings,
    endpoint: &Endpoint,
    params: &TokenParams,
    subject: Option<&str>,
    fresh: Fresh<'_>,
) -> Result<String, crate::Error> {
    let c = client;
    let key = c
        .credentials
        .private_key
        .as_ref()
        .ok_or_else(|| missing("client_private_key"))?;
    let scope = params.scopes.join(" ");
    let grant = client_auth::GrantClaims {
        claims: claims(client, endpoint, fresh),
        subject,
        scope: &scope,
    };
    Ok(client_auth::jwt_bearer_assertion(
        &grant,
        key,
        c.assertion.key_ids(),
        fresh.random,
    ))
}

/// The `client_assertion` of an assertion method: signed now, or the federated one
/// while it is valid.
fn assertion(
    client: &ClientSettings,
    endpoint: &Endpoint,
    method: AuthMethod,
    fresh: Fresh<'_>,
) -> Result<String, crate::Error> {
    let c = client;
    let claims = claims(client, endpoint, fresh);
    match method {
        AuthMethod::PrivateKeyJwt => {
            let key = c
                .credentials
                .private_key
                .as_ref()
                .ok_or_else(|| missing("client_private_key"))?;
            Ok(client_auth::private_key_jwt(
                &claims,
                key,
                c.assertion.key_ids(),
                fresh.random,
            ))
        }
        AuthMethod::ClientAssertion => {
            let federated = c
                .credentials
                .federated
                .as_ref()
                .ok_or_else(|| missing("client_assertion"))?;
            federated
                .at(fresh.now_secs)
                .map(str::to_string)
                .map_err(|e| crate::Error::config("client_assertion", e))
        }
        _ => {
            let secret = c
                .credentials
                .client_secret
                .as_ref()
                .ok_or_else(|| missing("client_secret"))?;
            Ok(client_auth::client_secret_jwt(
                &claims,
                secret.expose().as_bytes(),
            ))
        }
    }
}

/// RFC 8707: a resource indicator is an absolute URI (RFC 3986 `scheme ":" …`)
/// without a fragment. Only the syntax that matters here is checked: a scheme, and no
/// fragment, space, control or non-ASCII character.
pub fn parse_resource(text: &str) -> Result<(), String> {
    let shown = crate::error::sanitize(text, 64);
    let scheme_ok = text.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if !scheme_ok || !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(format!("`{shown}` is not an absolute URI"));
    }
    if text.contains('#') {
        return Err(format!("`{shown}` must not contain a fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client::ClientSettings;
    use base64::Engine as _;

    const FRESH: Fresh<'static> = Fresh {
        random: &|out: &mut [u8]| out.fill(7),
        now_secs: 1_800_000_000,
        jti: [9; 16],
    };

    fn settings(extra: &[(&str, &str)]) -> ClientSettings {
        let base: &[(&str, &str)] = &[
            ("token_url", "https://auth.example.com/oauth/token"),
            ("client_secret", "s3cret"),
        ];
        crate::testing::settings(&[base, extra].concat()).client
    }

    fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn basic_encoding_golden_values() {
        // id `1PpG/Q 1`, secret `z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw=`
        // form-encoded: 1PpG%2FQ%201 : z%2FtZ9VwFZqApmIQ%2BZH1I5pLk%2FuB4ud%3AX2%2F8bL%2BwfFTt1rFw%3D
        assert_eq!(
            basic_authorization(
                "1PpG/Q 1",
                "z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw="
            ),
            "Basic MVBwRyUyRlElMjAxOnolMkZ0WjlWd0ZacUFwbUlRJTJCWkgxSTVwTGslMkZ1QjR1ZCUzQVgyJTJGOGJMJTJCd2ZGVHQxckZ3JTNE"
        );
        // `:` `+` `%` and space in both halves; unreserved characters stay as they are.
        assert_eq!(
            basic_authorization("a:b+c%d e", "-._~AZaz09"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("a%3Ab%2Bc%25d%20e:-._~AZaz09")
            )
        );
        // Non-ASCII is UTF-8 then percent-encoded.
        assert_eq!(
            basic_authorization("é", "x"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("%C3%A9:x")
            )
        );
    }

    #[test]
    fn basic_request_has_exact_body_and_headers() {
        let s = settings(&[("scope", "write read")]);
        let p = TokenParams::resolve(&TokenRequest::default(), &s).unwrap();
        let req = build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url.path_and_query, "/oauth/token");
        assert_eq!(
            std::str::from_utf8(&req.body).unwrap(),
            "grant_type=client_credentials&scope=read+write"
        );
        assert_eq!(
            header(&req, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header(&req, "accept"), Some("application/json"));
        assert_eq!(
            header(&req, "authorization"),
            Some(basic_authorization("svc", "s3cret").as_str())
        );
    }

    #[test]
    fn post_method_puts_credentials_in_the_body_and_sends_no_authorization() {
        let s = settings(&[("auth_method", "client_secret_post")]);
        let p = TokenParams::resolve(&TokenRequest::default(), &s).unwrap();
        let req = build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None).unwrap();
        assert_eq!(
            std::str::from_utf8(&req.body).unwrap(),
            "grant_type=client_credentials&client_id=svc&client_secret=s3cret"
        );
        assert_eq!(header(&req, "authorization"), None);
    }

    #[test]
    fn post_body_form_encodes_special_characters() {
        let s = settings(&[
            ("auth_method", "client_secret_post"),
            ("client_secret", "a+b&c=d e%"),
        ]);
        let p = TokenParams::resolve(&TokenRequest::default(), &s).unwrap();
        let body = String::from_utf8(
            build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None)
                .unwrap()
                .body,
        )
        .unwrap();
        assert!(body.ends_with("client_secret=a%2Bb%26c%3Dd+e%25"), "{body}");
    }

    #[test]
    fn audience_and_repeated_resources() {
        let s = settings(&[]);
        let req = TokenRequest {
            scopes: Some(vec!["b a".into(), "a".into()]),
            audience: Some("https://api.example.com".into()),
            resources: Some(vec![
                "https://r2.example.com/".into(),
                "https://r1.example.com/".into(),
            ]),
            force_refresh: false,
        };
        let p = TokenParams::resolve(&req, &s).unwrap();
        assert_eq!(p.scopes, ["a", "b"]);
        let body = String::from_utf8(
            build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None)
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fapi.example.com\
             &resource=https%3A%2F%2Fr1.example.com%2F&resource=https%3A%2F%2Fr2.example.com%2F"
        );
    }

    #[test]
    fn request_overrides_and_empty_scope_list() {
        let s = settings(&[("scope", "read"), ("audience", "aud1")]);
        let p = TokenParams::resolve(
            &TokenRequest {
                scopes: Some(vec![]),
                ..Default::default()
            },
            &s,
        )
        .unwrap();
        assert!(p.scopes.is_empty());
        assert_eq!(p.audience.as_deref(), Some("aud1"));
        let body = String::from_utf8(
            build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None)
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(body, "grant_type=client_credentials&audience=aud1");
    }

    #[test]
    fn illegal_scope_and_resource_are_refused() {
        let s = settings(&[]);
        let bad_scope = TokenRequest {
            scopes: Some(vec!["a\"b".into()]),
            ..Default::default()
        };
        assert!(matches!(
            TokenParams::resolve(&bad_scope, &s),
            Err(crate::Error::Refused(_))
        ));
        let bad_res = TokenRequest {
            resources: Some(vec!["relative/path".into()]),
            ..Default::default()
        };
        assert!(matches!(
            TokenParams::resolve(&bad_res, &s),
            Err(crate::Error::Refused(_))
        ));
    }

    #[test]
    fn the_number_and_length_of_scopes_resources_and_audience_are_bounded() {
        let s = settings(&[]);
        let refused = |r: TokenRequest| match TokenParams::resolve(&r, &s) {
            Err(crate::Error::Refused(m)) => m,
            other => panic!("{other:?}"),
        };
        let scopes = |n: usize, len: usize| TokenRequest {
            scopes: Some((0..n).map(|i| format!("{i:0>len$}")).collect()),
            ..Default::default()
        };
        assert!(TokenParams::resolve(&scopes(MAX_SCOPES, MAX_SCOPE_LEN), &s).is_ok());
        assert_eq!(
            refused(scopes(MAX_SCOPES + 1, 4)),
            "65 scopes asked for; at most 64"
        );
        assert!(refused(scopes(1, MAX_SCOPE_LEN + 1)).contains("257 bytes long; at most 256"));
        let resources = |n: usize, len: usize| TokenRequest {
            resources: Some(
                (0..n)
                    .map(|i| format!("https://r.example/{i:0>len$}"))
                    .collect(),
            ),
            ..Default::default()
        };
        assert!(TokenParams::resolve(&resources(MAX_RESOURCES, 8), &s).is_ok());
        assert!(refused(resources(MAX_RESOURCES + 1, 8)).starts_with("17 resources"));
        assert!(refused(resources(1, MAX_RESOURCE_LEN)).contains("at most 2048"));
        let audience = |a: String| TokenRequest {
            audience: Some(a),
            ..Default::default()
        };
        assert!(TokenParams::resolve(&audience("a".repeat(MAX_AUDIENCE_LEN)), &s).is_ok());
        assert!(refused(audience("a".repeat(MAX_AUDIENCE_LEN + 1))).contains("at most 1024"));
        assert_eq!(
            refused(audience("api\r\nx".into())),
            "audience has control characters"
        );
    }

    #[test]
    fn client_secret_jwt_sends_an_assertion_and_never_the_secret() {
        let s = settings(&[
            ("auth_method", "client_secret_jwt"),
            ("client_secret", "jwt-secret-0123456789abcdef0123456789"),
            ("client_assertion_lifetime_secs", "90"),
        ]);
        let p = TokenParams::resolve(&Default::default(), &s).unwrap();
        let req = build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None).unwrap();
        assert!(!req.headers.iter().any(|(k, _)| k == "authorization"));
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert!(!body.contains("jwt-secret"), "{body}");
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "svc");
        assert_eq!(form["client_assertion_type"], client_auth::JWT_BEARER);
        assert!(!form.contains_key("client_secret"));
        // Verified by an independent implementation, against the token endpoint URL.
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["https://auth.example.com/oauth/token"]);
        v.validate_exp = false;
        let claims = decode::<serde_json::Value>(
            &form["client_assertion"],
            &DecodingKey::from_secret(b"jwt-secret-0123456789abcdef0123456789"),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["iss"], "svc");
        assert_eq!(claims["exp"], 1_800_000_090u64);
        // Another attempt, another jti: a new assertion.
        let again = build(
            &s,
            &s.static_endpoint().unwrap(),
            &p,
            Fresh {
                jti: [1; 16],
                ..FRESH
            },
            None,
        )
        .unwrap();
        assert_ne!(again.body, req.body);
    }

    /// `grant = jwt_bearer` (RFC 7523 §2.1, as Google's token endpoint takes it): the
    /// grant type, an assertion signed with the key (`iss` the client id, `sub` the
    /// subject only when set, `aud` the token endpoint, the scopes in `scope`, `kid`),
    /// the scopes in the form too, and no client authentication with `none`.
    #[test]
    fn the_jwt_bearer_grant_sends_a_signed_assertion_with_the_scopes_in_it() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = key.serialize_pem();
        let grant = |subject: &str, method: &str| {
            let s = settings(&[
                ("grant", "jwt_bearer"),
                ("auth_method", method),
                ("client_private_key", &pem),
                ("client_key_id", "k1"),
                ("scope", "b a"),
                ("jwt_bearer_subject", subject),
                ("client_assertion_lifetime_secs", "300"),
            ]);
            let p = TokenParams::resolve(&Default::default(), &s).unwrap();
            build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None).unwrap()
        };
        let form = |req: &HttpRequest| -> std::collections::HashMap<String, String> {
            form_urlencoded::parse(&req.body).into_owned().collect()
        };
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
        let verified = |assertion: &str| -> serde_json::Value {
            let mut v = Validation::new(Algorithm::ES256);
            v.set_audience(&["https://auth.example.com/oauth/token"]);
            v.validate_exp = false;
            let public = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).unwrap();
            decode::<serde_json::Value>(assertion, &public, &v)
                .unwrap()
                .claims
        };
        let req = grant("user@example.com", "none");
        assert!(header(&req, "authorization").is_none());
        let f = form(&req);
        assert_eq!(
            f["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        assert_eq!(f["scope"], "a b");
        assert_eq!(f.len(), 3, "no client authentication: {f:?}");
        let h = decode_header(&f["assertion"]).unwrap();
        assert_eq!(
            (h.kid.as_deref(), h.typ.as_deref()),
            (Some("k1"), Some("JWT"))
        );
        let claims = verified(&f["assertion"]);
        assert_eq!(claims["iss"], "svc");
        assert_eq!(claims["sub"], "user@example.com");
        assert_eq!(claims["scope"], "a b");
        assert_eq!(claims["iat"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_300u64);
        // No subject: no `sub`. A client that authenticates as well: Basic, and the
        // same assertion.
        let req = grant("", "client_secret_basic");
        assert!(header(&req, "authorization").unwrap().starts_with("Basic "));
        let claims = verified(&form(&req)["assertion"]);
        assert!(claims.get("sub").is_none(), "{claims}");
    }

    /// `client_certificate`: a private_key_jwt assertion's header names the certificate
    /// by its SHA-256 thumbprint (`x5t#S256`) beside `kid`, and the signature still
    /// verifies with the key; without the certificate there is no `x5t#S256`.
    #[cfg(feature = "rsa")]
    #[test]
    fn a_client_certificate_puts_its_thumbprint_in_the_assertion_header() {
        use sha2::Digest as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = key.serialize_pem();
        let cert_pem = cert.pem();
        let assertion = |with_cert: bool| {
            let s = settings(&[
                ("auth_method", "private_key_jwt"),
                ("client_private_key", &pem),
                ("client_key_id", "k1"),
                ("client_certificate", if with_cert { &cert_pem } else { "" }),
            ]);
            let p = TokenParams::resolve(&Default::default(), &s).unwrap();
            let req = build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None).unwrap();
            let form: std::collections::HashMap<String, String> =
                form_urlencoded::parse(&req.body).into_owned().collect();
            form["client_assertion"].clone()
        };
        let jwt = assertion(true);
        let h = jsonwebtoken::decode_header(&jwt).unwrap();
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(cert.der()));
        assert_eq!(h.x5t_s256.as_deref(), Some(thumbprint.as_str()));
        assert_eq!(h.kid.as_deref(), Some("k1"));
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["https://auth.example.com/oauth/token"]);
        v.validate_exp = false;
        let public = jsonwebtoken::DecodingKey::from_ec_pem(key.public_key_pem().as_bytes());
        jsonwebtoken::decode::<serde_json::Value>(&jwt, &public.unwrap(), &v).unwrap();
        let h = jsonwebtoken::decode_header(&assertion(false)).unwrap();
        assert_eq!(h.x5t_s256, None);
    }

    /// `grant = token_exchange` (RFC 8693 §2.1): the subject token and both types in
    /// the form with the audience and scopes, no client authentication with `none`; a
    /// JWT subject token that has expired is a `config` error, and nothing is built.
    #[test]
    fn a_token_exchange_sends_the_subject_token_and_its_types() {
        let jwt =
            |exp: u64| crate::testing::unsigned_jwt(&format!(r#"{{"sub":"app","exp":{exp}}}"#));
        let exchange = |token: &str, kind: &str| {
            let s = settings(&[
                ("grant", "token_exchange"),
                ("auth_method", "none"),
                ("kv_store", ""),
                ("subject_token", token),
                ("subject_token_type", kind),
                (
                    "audience",
                    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s",
                ),
                ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            ]);
            let p = TokenParams::resolve(&Default::default(), &s).unwrap();
            build(&s, &s.static_endpoint().unwrap(), &p, FRESH, None)
        };
        let valid = jwt(FRESH.now_secs + 600);
        let req = exchange(&valid, "urn:ietf:params:oauth:token-type:jwt").unwrap();
        assert!(header(&req, "authorization").is_none());
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:token-exchange"
        );
        assert_eq!(form["subject_token"], valid);
        assert_eq!(
            form["subject_token_type"],
            "urn:ietf:params:oauth:token-type:jwt"
        );
        assert_eq!(
            form["requested_token_type"],
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert!(form["audience"].starts_with("//iam.googleapis.com/"));
        assert_eq!(
            form["scope"],
            "https://www.googleapis.com/auth/cloud-platform"
        );
        assert_eq!(form.len(), 6, "no client authentication: {form:?}");
        let expired = jwt(FRESH.now_secs + 3);
        let e = exchange(&expired, "urn:ietf:params:oauth:token-type:jwt").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config: subject_token: expired at"),
            "{e}"
        );
        assert!(!e.to_string().contains(&expired));
        // Another kind of token is sent as it is, with no `exp` to read.
        let req = exchange(
            "opaque.value",
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .unwrap();
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        assert_eq!(form["subject_token"], "opaque.value");
    }
}
