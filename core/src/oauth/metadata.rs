//! Issuer discovery (RFC 8414, with OpenID Connect Discovery 1.0 as the fallback):
//! where the metadata lives, what a document must say to be used, and which method
//! `auth_method = auto` picks from it. Pure: `provider::discovery` fetches, caches
//! and shares the document.

use crate::error::sanitize;
use crate::oauth::client::{
    AuthMethod, ClientSettings, Credentials, DiscoverySettings, Endpoint, MethodChoice,
};
use crate::origin::{HttpUrl, Origin, Scheme, parse_url};
use serde::Serialize;

/// Largest metadata document read (Keycloak's and Entra's are 2-8 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Most values read from one list (`…_supported`).
pub const MAX_LIST: usize = 64;
/// Longest value kept from a list.
const MAX_VALUE_LEN: usize = 128;

/// What is kept of a metadata document (and sealed in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub token_endpoint: String,
    /// `token_endpoint_auth_methods_supported`; RFC 8414 §2: absent means
    /// `client_secret_basic` only.
    pub auth_methods: Vec<String>,
    /// `token_endpoint_auth_signing_alg_values_supported`; absent: not said.
    pub signing_algs: Option<Vec<String>>,
}

/// Why a metadata document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no issuer")]
    NoIssuer,
    #[error("issuer `{found}` is not the configured `{expected}` (RFC 8414 §3.3)")]
    IssuerMismatch { expected: String, found: String },
    #[error("no token_endpoint")]
    NoTokenEndpoint,
    #[error("token_endpoint is not a usable URL: {0}")]
    BadTokenEndpoint(String),
    #[error("token_endpoint is plain http:// (accepted only with allow_insecure_http)")]
    InsecureTokenEndpoint,
    #[error(
        "token_endpoint `{endpoint}` is not on the issuer's origin {origin} (token_endpoint_origin = issuer; set it to any for an identity provider that serves its token endpoint from another host)"
    )]
    ForeignTokenEndpoint { endpoint: String, origin: String },
    #[error("{0} is not an array of at most {MAX_LIST} short strings")]
    BadList(&'static str),
    #[error("lists none of the configured methods ({configured}); it supports {supported}")]
    NoCommonMethod {
        configured: String,
        supported: String,
    },
}

/// The two places to look, in order: RFC 8414 §3.1 inserts the well-known segment
/// between the host and the issuer's path; OpenID Connect Discovery §4 appends it.
pub(crate) fn well_known_urls(issuer: &HttpUrl) -> [String; 2] {
    let scheme = match issuer.origin.scheme {
        Scheme::Https => "https",
        Scheme::Http => "http",
    };
    let path = issuer.path_and_query.trim_end_matches('/');
    [
        format!(
            "{scheme}://{}/.well-known/oauth-authorization-server{path}",
            issuer.authority
        ),
        format!(
            "{scheme}://{}{path}/.well-known/openid-configuration",
            issuer.authority
        ),
    ]
}

/// An issuer must be an https URL without query or fragment (RFC 8414 §2).
pub(crate) fn check_issuer(url: &HttpUrl) -> Result<(), String> {
    if url.path_and_query.contains('?') {
        return Err("an issuer has no query (RFC 8414 §2)".into());
    }
    Ok(())
}

/// Judge a metadata document for `issuer` (compared exactly, as configured).
pub fn parse(body: &[u8], issuer: &str, allow_insecure_http: bool) -> Result<Metadata, Problem> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Problem::TooLarge);
    }
    // The JSON reader the component already has (a `Value`), not a derived one.
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| Problem::NotAnObject)?;
    let doc = doc.as_object().ok_or(Problem::NotAnObject)?;
    let found = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .ok_or(Problem::NoIssuer)?;
    if found != issuer {
        return Err(Problem::IssuerMismatch {
            expected: sanitize(issuer, 200),
            found: sanitize(found, 200),
        });
    }
    let token_endpoint = doc
        .get("token_endpoint")
        .and_then(|v| v.as_str())
        .ok_or(Problem::NoTokenEndpoint)?;
    let methods = list(doc, "token_endpoint_auth_methods_supported")?;
    let metadata = Metadata {
        token_endpoint: token_endpoint.to_string(),
        auth_methods: methods.unwrap_or_else(|| vec!["client_secret_basic".into()]),
        signing_algs: list(doc, "token_endpoint_auth_signing_alg_values_supported")?,
    };
    metadata.check(allow_insecure_http, None)?;
    Ok(metadata)
}

/// An optional array of short strings, bounded.
fn list(
    doc: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<Option<Vec<String>>, Problem> {
    let Some(value) = doc.get(name) else {
        return Ok(None);
    };
    let items = value.as_array().ok_or(Problem::BadList(name))?;
    if items.len() > MAX_LIST {
        return Err(Problem::BadList(name));
    }
    items
        .iter()
        .map(|v| match v.as_str() {
            Some(s) if s.len() <= MAX_VALUE_LEN => Ok(s.to_string()),
            _ => Err(Problem::BadList(name)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl DiscoverySettings {
    /// Whether this instance would use `m` (fetched, or read back from the store, where
    /// an instance with other settings may have put it): the same judgment on both.
    pub(crate) fn accepts(&self, m: &Metadata, allow_insecure_http: bool) -> Result<(), Problem> {
        let pinned = self.pin_origin.then_some(&self.issuer_url.origin);
        m.check(allow_insecure_http, pinned)
    }
}

impl Metadata {
    /// What is kept of a document, judged again (on every read from the store too): a
    /// usable token endpoint, `https://` unless `allow_insecure_http`, on the `pinned`
    /// origin if one is given, and lists within bounds.
    pub fn check(&self, allow_insecure_http: bool, pinned: Option<&Origin>) -> Result<(), Problem> {
        let url = parse_url(&self.token_endpoint).map_err(Problem::BadTokenEndpoint)?;
        if url.origin.scheme == Scheme::Http && !allow_insecure_http {
            return Err(Problem::InsecureTokenEndpoint);
        }
        if let Some(origin) = pinned
            && url.origin != *origin
        {
            return Err(Problem::ForeignTokenEndpoint {
                endpoint: sanitize(&self.token_endpoint, 200),
                origin: origin.to_string(),
            });
        }
        let bounded =
            |l: &[String]| l.len() <= MAX_LIST && l.iter().all(|v| v.len() <= MAX_VALUE_LEN);
        if !bounded(&self.auth_methods) {
            return Err(Problem::BadList("token_endpoint_auth_methods_supported"));
        }
        if !self.signing_algs.as_deref().is_none_or(bounded) {
            return Err(Problem::BadList(
                "token_endpoint_auth_signing_alg_values_supported",
            ));
        }
        Ok(())
    }

    /// Whether the server lists `method` and, when it lists signing algorithms, the
    /// one this client's assertion would use.
    pub(crate) fn supports(&self, method: AuthMethod, credentials: &Credentials) -> bool {
        let alg_ok = match (&self.signing_algs, credentials.alg(method)) {
            (Some(algs), Some(alg)) => algs.iter().any(|a| a == alg),
            _ => true,
        };
        alg_ok && self.auth_methods.iter().any(|m| m == method.server_name())
    }

    /// `auth_method = auto`: the strongest method whose credential is configured and
    /// which the server lists.
    pub(crate) fn choose(&self, credentials: &Credentials) -> Result<AuthMethod, Problem> {
        AuthMethod::PREFERENCE
            .into_iter()
            .find(|m| credentials.has(*m) && self.supports(*m, credentials))
            .ok_or_else(|| Problem::NoCommonMethod {
                configured: AuthMethod::PREFERENCE
                    .into_iter()
                    .filter(|m| credentials.has(*m))
                    .map(AuthMethod::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                supported: sanitize(&self.auth_methods.join(", "), 300),
            })
    }

    /// The endpoint for `settings`: `token_url` if configured, else the discovered
    /// one; the configured method, or the one `auto` picks.
    pub(crate) fn endpoint(&self, client: &ClientSettings) -> Result<Endpoint, Problem> {
        let c = client;
        let method = match c.auth_method {
            MethodChoice::Fixed(m) => m,
            MethodChoice::Auto => self.choose(&c.credentials)?,
        };
        let (url, url_text) = match &c.token_url {
            Some(url) => (url.clone(), c.server_text.clone()),
            None => (
                parse_url(&self.token_endpoint).map_err(Problem::BadTokenEndpoint)?,
                self.token_endpoint.clone(),
            ),
        };
        Ok(Endpoint {
            url,
            url_text,
            method,
        })
    }
}

/// Metadata with the time it was fetched: what memory and the store keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    pub metadata: Metadata,
    /// Unix ms.
    pub fetched_at_ms: u64,
}

impl Fetched {
    /// Whether it may still be used at `now_ms` with `ttl_secs` (a fetch time dated
    /// ahead of this clock is judged first: `store::ahead`).
    pub(crate) fn fresh(&self, now_ms: u64, ttl_secs: u64) -> bool {
        now_ms
            < self
                .fetched_at_ms
                .saturating_add(ttl_secs.saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::settings;

    const ISSUER: &str = "https://login.example.com/tenant-1";

    fn doc(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"issuer":"{ISSUER}","token_endpoint":"https://login.example.com/tenant-1/token"{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn the_well_known_urls_follow_rfc_8414_then_openid() {
        let url = parse_url(ISSUER).unwrap();
        assert_eq!(
            well_known_urls(&url),
            [
                "https://login.example.com/.well-known/oauth-authorization-server/tenant-1",
                "https://login.example.com/tenant-1/.well-known/openid-configuration",
            ]
        );
        let root = parse_url("https://login.example.com:8443/").unwrap();
        assert_eq!(
            well_known_urls(&root),
            [
                "https://login.example.com:8443/.well-known/oauth-authorization-server",
                "https://login.example.com:8443/.well-known/openid-configuration",
            ]
        );
        assert!(check_issuer(&parse_url("https://a.example/?tenant=1").unwrap()).is_err());
    }

    #[test]
    fn a_document_gives_the_endpoint_and_the_lists() {
        let m = parse(
            &doc(r#","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic"],"token_endpoint_auth_signing_alg_values_supported":["ES256","RS256"],"other":{"deep":[1,2,3]}"#),
            ISSUER,
            false,
        )
        .unwrap();
        assert_eq!(m.token_endpoint, "https://login.example.com/tenant-1/token");
        assert_eq!(m.auth_methods, ["private_key_jwt", "client_secret_basic"]);
        assert_eq!(
            m.signing_algs.as_deref(),
            Some(&["ES256".to_string(), "RS256".to_string()][..])
        );
        // Without the list, RFC 8414 §2's default.
        let m = parse(&doc(""), ISSUER, false).unwrap();
        assert_eq!(m.auth_methods, ["client_secret_basic"]);
        assert_eq!(m.signing_algs, None);
    }

    /// The hostile catalog of discovery documents: each a typed problem, none a panic.
    #[test]
    fn every_unusable_document_is_a_typed_problem() {
        let mismatch = |found: &str| Problem::IssuerMismatch {
            expected: ISSUER.into(),
            found: found.into(),
        };
        let big = format!(
            r#"{{"issuer":"{ISSUER}","x":"{}"}}"#,
            "a".repeat(MAX_DOCUMENT_BYTES)
        );
        let many = format!(
            r#","token_endpoint_auth_methods_supported":[{}]"#,
            vec!["\"m\""; MAX_LIST + 1].join(",")
        );
        let cases: Vec<(Vec<u8>, Problem)> = vec![
            (big.into_bytes(), Problem::TooLarge),
            (b"<html>login</html>".to_vec(), Problem::NotAnObject),
            (b"[1]".to_vec(), Problem::NotAnObject),
            (b"{\"issuer\":".to_vec(), Problem::NotAnObject),
            (br#"{"token_endpoint":"https://a/t"}"#.to_vec(), Problem::NoIssuer),
            (br#"{"issuer":7}"#.to_vec(), Problem::NoIssuer),
            // Exactly equal: a trailing slash, another case, another host all differ.
            (doc("").replace_issuer(&format!("{ISSUER}/")), mismatch(&format!("{ISSUER}/"))),
            (doc("").replace_issuer("https://LOGIN.example.com/tenant-1"), mismatch("https://LOGIN.example.com/tenant-1")),
            (doc("").replace_issuer("https://evil.example/tenant-1"), mismatch("https://evil.example/tenant-1")),
            (doc("").replace_issuer("https://evil.example/\u{1b}[31m"), mismatch("https://evil.example/ [31m")),
            (format!(r#"{{"issuer":"{ISSUER}"}}"#).into_bytes(), Problem::NoTokenEndpoint),
            (format!(r#"{{"issuer":"{ISSUER}","token_endpoint":["x"]}}"#).into_bytes(), Problem::NoTokenEndpoint),
            (
                format!(r#"{{"issuer":"{ISSUER}","token_endpoint":"http://login.example.com/token"}}"#).into_bytes(),
                Problem::InsecureTokenEndpoint,
            ),
            (
                format!(r#"{{"issuer":"{ISSUER}","token_endpoint":"https://u:p@login.example.com/token"}}"#).into_bytes(),
                Problem::BadTokenEndpoint("URL must not contain userinfo (user:password@)".into()),
            ),
            (doc(r#","token_endpoint_auth_methods_supported":"private_key_jwt""#), Problem::BadList("token_endpoint_auth_methods_supported")),
            (doc(r#","token_endpoint_auth_methods_supported":[1]"#), Problem::BadList("token_endpoint_auth_methods_supported")),
            (doc(&many), Problem::BadList("token_endpoint_auth_methods_supported")),
            (
                doc(&format!(r#","token_endpoint_auth_signing_alg_values_supported":["{}"]"#, "A".repeat(200))),
                Problem::BadList("token_endpoint_auth_signing_alg_values_supported"),
            ),
        ];
        for (body, problem) in cases {
            assert_eq!(
                parse(&body, ISSUER, false),
                Err(problem),
                "{}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        // http:// is fine with the opt-in.
        let http =
            format!(r#"{{"issuer":"{ISSUER}","token_endpoint":"http://login.example.com/token"}}"#);
        assert!(parse(http.as_bytes(), ISSUER, true).is_ok());
    }

    trait ReplaceIssuer {
        fn replace_issuer(&self, with: &str) -> Vec<u8>;
    }

    impl ReplaceIssuer for Vec<u8> {
        fn replace_issuer(&self, with: &str) -> Vec<u8> {
            let text = String::from_utf8(self.clone()).unwrap();
            let json_with = serde_json::to_string(with).unwrap();
            text.replacen(&format!("\"{ISSUER}\""), &json_with, 1)
                .into_bytes()
        }
    }

    fn metadata(methods: &[&str], algs: Option<&[&str]>) -> Metadata {
        Metadata {
            token_endpoint: "https://login.example.com/token".into(),
            auth_methods: methods.iter().map(|m| m.to_string()).collect(),
            signing_algs: algs.map(|a| a.iter().map(|m| m.to_string()).collect()),
        }
    }

    #[test]
    fn auto_picks_the_strongest_configured_method_the_server_lists() {
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let auto = [("issuer", ISSUER), ("auth_method", "auto")];
        let both = settings(&[&auto[..], &[("client_private_key", &pem)]].concat())
            .client
            .credentials;
        let secret_only = settings(&auto).client.credentials;
        let all = [
            "private_key_jwt",
            "client_secret_jwt",
            "client_secret_basic",
            "client_secret_post",
        ];
        assert_eq!(
            metadata(&all, None).choose(&both),
            Ok(AuthMethod::PrivateKeyJwt)
        );
        assert_eq!(
            metadata(&all, None).choose(&secret_only),
            Ok(AuthMethod::ClientSecretJwt)
        );
        // The key's algorithm is not listed: the next method.
        assert_eq!(
            metadata(&all, Some(&["RS256", "HS256"])).choose(&both),
            Ok(AuthMethod::ClientSecretJwt)
        );
        assert_eq!(
            metadata(&all, Some(&["RS256"])).choose(&both),
            Ok(AuthMethod::ClientSecretBasic)
        );
        assert_eq!(
            metadata(&["client_secret_post"], None).choose(&both),
            Ok(AuthMethod::ClientSecretPost)
        );
        assert_eq!(
            metadata(&["tls_client_auth"], None).choose(&both),
            Err(Problem::NoCommonMethod {
                configured:
                    "private_key_jwt, client_secret_jwt, client_secret_basic, client_secret_post"
                        .into(),
                supported: "tls_client_auth".into(),
            })
        );
    }

    #[test]
    fn the_configured_token_url_wins_over_the_discovered_one() {
        let s = settings(&[("issuer", ISSUER), ("auth_method", "auto")]);
        let e = metadata(&["client_secret_post"], None)
            .endpoint(&s.client)
            .unwrap();
        assert_eq!(e.url_text, "https://auth.example.com/token");
        assert_eq!(e.method, AuthMethod::ClientSecretPost);
        let s = settings(&[("issuer", ISSUER), ("token_url", "")]);
        let e = metadata(&["client_secret_post"], None)
            .endpoint(&s.client)
            .unwrap();
        assert_eq!(e.url_text, "https://login.example.com/token");
        assert_eq!(
            e.method,
            AuthMethod::ClientSecretBasic,
            "a fixed method is kept"
        );
    }

    #[test]
    fn fetched_metadata_is_fresh_for_its_lifetime_only() {
        let f = Fetched {
            metadata: metadata(&[], None),
            fetched_at_ms: 1_000_000,
        };
        assert!(f.fresh(1_000_000, 60));
        assert!(f.fresh(1_059_999, 60));
        assert!(!f.fresh(1_060_000, 60));
    }
}
