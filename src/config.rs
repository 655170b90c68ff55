//! Settings read from `wasi:config` (Spin variables), validated once.
//! Every error names the key it is about.

use crate::error::Error;
use crate::origin::{HttpUrl, Origin, Scheme, parse_origin, parse_url};
use crate::secret::Secret;

/// Every configuration key, with its default (`None` = required or empty) and meaning.
/// The README's table is generated from the same facts; a test keeps them in step.
pub const KEYS: &[(&str, Option<&str>, &str)] = &[
    (
        "token_url",
        None,
        "Token endpoint URL (https; http only with allow_insecure_http)",
    ),
    ("client_id", None, "OAuth2 client identifier"),
    (
        "client_secret",
        None,
        "OAuth2 client secret (mark it secret in Spin)",
    ),
    (
        "auth_method",
        Some("client_secret_basic"),
        "client_secret_basic or client_secret_post",
    ),
    ("scope", Some(""), "Default scopes, space-separated"),
    ("audience", Some(""), "Default `audience` parameter"),
    (
        "resource",
        Some(""),
        "Default RFC 8707 resource indicators, space-separated",
    ),
    (
        "allowed_origins",
        Some(""),
        "Origins the authorized client may call, comma-separated",
    ),
    (
        "allow_insecure_http",
        Some("false"),
        "Allow plain http:// token endpoint and API URLs",
    ),
    (
        "expiry_skew_secs",
        Some("60"),
        "Stop serving a token this long before it expires",
    ),
    (
        "default_expires_in_secs",
        Some("300"),
        "Lifetime assumed when the response has no expires_in",
    ),
    (
        "max_expires_in_secs",
        Some("86400"),
        "Longer lifetimes are clamped to this",
    ),
    (
        "http_timeout_ms",
        Some("10000"),
        "Connect, first-byte and between-bytes timeout",
    ),
    (
        "max_response_bytes",
        Some("1048576"),
        "Largest API response body the authorized client returns",
    ),
    (
        "kv_store",
        Some("default"),
        "Key-value store label for the shared cache; empty disables it",
    ),
    (
        "max_retries",
        Some("2"),
        "Token requests retried after a transport fault, 5xx or 429 (0-10)",
    ),
    (
        "retry_base_ms",
        Some("200"),
        "Backoff ceiling before the first retry; doubles per retry; full jitter",
    ),
    (
        "retry_max_delay_ms",
        Some("5000"),
        "Longest wait between attempts; a longer Retry-After ends the retries",
    ),
    (
        "token_deadline_ms",
        Some("12000"),
        "Deadline for this instance's token requests in one get-token, retries and backoff included",
    ),
    (
        "failure_cooldown_secs",
        Some("60"),
        "After invalid_client or unauthorized_client, fail fast this long (shared through the store); 0 disables",
    ),
    (
        "lease_ms",
        Some("15000"),
        "Single-flight lease: the instance fetching a token holds it at most this long, others wait at most this long; 0 disables",
    ),
    (
        "refresh_ahead_percent",
        Some("15"),
        "Refresh window: the last N % of a token's lifetime, when one instance renews it while the rest keep using it; 0 disables",
    ),
];

/// Largest token endpoint response we read.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic with the RFC 6749 §2.3.1 form-encoding of id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token_url: HttpUrl,
    /// `token_url` exactly as configured (part of the cache key).
    pub token_url_text: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub auth_method: AuthMethod,
    pub scope: Vec<String>,
    pub audience: Option<String>,
    pub resource: Vec<String>,
    pub allowed_origins: Vec<Origin>,
    pub allow_insecure_http: bool,
    pub expiry_skew_secs: u64,
    pub default_expires_in_secs: u64,
    pub max_expires_in_secs: u64,
    pub http_timeout_ms: u64,
    pub max_response_bytes: usize,
    /// `None`: no shared cache, memory only.
    pub kv_store: Option<String>,
    pub max_retries: u32,
    pub retry_base_ms: u64,
    pub retry_max_delay_ms: u64,
    pub token_deadline_ms: u64,
    /// 0: no cooldown.
    pub failure_cooldown_secs: u64,
    /// 0: no single-flight lease.
    pub lease_ms: u64,
    /// 0: no refresh ahead.
    pub refresh_ahead_percent: u64,
}

impl Settings {
    pub fn retry_policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy {
            max_retries: self.max_retries,
            base_ms: self.retry_base_ms,
            max_delay_ms: self.retry_max_delay_ms,
        }
    }

    /// Read and validate every key through `get`, which answers `Ok(None)` for an
    /// unset key and `Err(message)` when the host's config store fails.
    pub fn load(get: impl Fn(&str) -> Result<Option<String>, String>) -> Result<Self, Error> {
        let read = |key: &str| -> Result<Option<String>, Error> {
            let value =
                get(key).map_err(|e| Error::config(key, format!("could not be read: {e}")))?;
            Ok(value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()))
        };
        let default_of = |key: &str| {
            KEYS.iter()
                .find(|(k, _, _)| *k == key)
                .and_then(|(_, d, _)| *d)
                .unwrap_or("")
        };
        let or_default = |key: &str| -> Result<String, Error> {
            Ok(read(key)?.unwrap_or_else(|| default_of(key).to_string()))
        };
        let required = |key: &str| -> Result<String, Error> {
            read(key)?.ok_or_else(|| Error::config(key, "is required but not set"))
        };
        let number = |key: &str, min: u64, max: u64| -> Result<u64, Error> {
            let text = or_default(key)?;
            let n: u64 = text
                .parse()
                .map_err(|_| Error::config(key, format!("`{text}` is not a whole number")))?;
            if n < min || n > max {
                return Err(Error::config(key, format!("{n} is outside {min}..={max}")));
            }
            Ok(n)
        };
        let boolean = |key: &str| -> Result<bool, Error> {
            let text = or_default(key)?;
            match text.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Error::config(key, format!("`{text}` is not true or false"))),
            }
        };

        let allow_insecure_http = boolean("allow_insecure_http")?;
        let token_url_text = required("token_url")?;
        let token_url = parse_url(&token_url_text).map_err(|e| Error::config("token_url", e))?;
        if token_url.origin.scheme == Scheme::Http && !allow_insecure_http {
            return Err(Error::config(
                "token_url",
                "plain http:// is refused; use https:// or set allow_insecure_http=true",
            ));
        }
        let client_id = required("client_id")?;
        let client_secret = Secret::new(required("client_secret")?);
        let auth_method = match or_default("auth_method")?.as_str() {
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            other => {
                return Err(Error::config(
                    "auth_method",
                    format!("`{other}` is not client_secret_basic or client_secret_post"),
                ));
            }
        };
        let words = |key: &str| -> Result<Vec<String>, Error> {
            Ok(or_default(key)?
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect())
        };
        let scope = words("scope")?;
        let audience = read("audience")?;
        let resource = words("resource")?;
        for r in &resource {
            parse_resource(r).map_err(|e| Error::config("resource", e))?;
        }
        let allowed_origins = or_default("allowed_origins")?
            .split([',', ' ', '\n', '\t'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_origin(s).map_err(|e| Error::config("allowed_origins", format!("`{s}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Settings {
            token_url,
            token_url_text,
            client_id,
            client_secret,
            auth_method,
            scope,
            audience,
            resource,
            allowed_origins,
            allow_insecure_http,
            expiry_skew_secs: number("expiry_skew_secs", 0, 3600)?,
            default_expires_in_secs: number("default_expires_in_secs", 1, 86_400 * 365)?,
            max_expires_in_secs: number("max_expires_in_secs", 1, 86_400 * 365)?,
            http_timeout_ms: number("http_timeout_ms", 1, 600_000)?,
            max_response_bytes: number("max_response_bytes", 0, 256 * 1024 * 1024)? as usize,
            max_retries: number("max_retries", 0, 10)? as u32,
            retry_base_ms: number("retry_base_ms", 1, 60_000)?,
            retry_max_delay_ms: number("retry_max_delay_ms", 0, 300_000)?,
            token_deadline_ms: number("token_deadline_ms", 1, 600_000)?,
            failure_cooldown_secs: number("failure_cooldown_secs", 0, 86_400)?,
            lease_ms: number("lease_ms", 0, 600_000)?,
            refresh_ahead_percent: number("refresh_ahead_percent", 0, 50)?,
            kv_store: read("kv_store")?.or_else(|| {
                // An explicitly empty value disables the store; unset means the default.
                match get("kv_store") {
                    Ok(Some(v)) if v.trim().is_empty() => None,
                    _ => Some(default_of("kv_store").to_string()),
                }
            }),
        })
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
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(|k| Ok(map.get(k).cloned()))
    }

    const BASE: &[(&str, &str)] = &[
        ("token_url", "https://auth.example.com/oauth/token"),
        ("client_id", "svc"),
        ("client_secret", "s3cret"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = BASE.to_vec();
        v.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn defaults_apply_when_only_required_keys_are_set() {
        let s = load(BASE).unwrap();
        assert_eq!(s.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(s.expiry_skew_secs, 60);
        assert_eq!(s.default_expires_in_secs, 300);
        assert_eq!(s.max_expires_in_secs, 86_400);
        assert_eq!(s.http_timeout_ms, 10_000);
        assert_eq!(s.max_response_bytes, 1_048_576);
        assert_eq!(s.kv_store.as_deref(), Some("default"));
        assert!(s.scope.is_empty() && s.resource.is_empty() && s.audience.is_none());
        assert!(!s.allow_insecure_http);
    }

    #[test]
    fn missing_required_keys_are_named() {
        for key in ["token_url", "client_id", "client_secret"] {
            let pairs: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != key).collect();
            let err = load(&pairs).unwrap_err();
            assert_eq!(
                err,
                Error::Config(format!("{key}: is required but not set"))
            );
        }
    }

    #[test]
    fn plain_http_token_url_needs_the_opt_in() {
        let err = load(&with(&[("token_url", "http://127.0.0.1:9/token")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config: token_url: plain http://"),
            "{err}"
        );
        let s = load(&with(&[
            ("token_url", "http://127.0.0.1:9/token"),
            ("allow_insecure_http", "TRUE"),
        ]))
        .unwrap();
        assert!(s.allow_insecure_http);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("auth_method", "private_key_jwt_typo"),
            ("expiry_skew_secs", "-1"),
            ("expiry_skew_secs", "99999"),
            ("http_timeout_ms", "fast"),
            ("allow_insecure_http", "yes"),
            ("allowed_origins", "https://api.example.com/path"),
            ("resource", "not-a-uri"),
            ("token_url", "https://user:pw@auth.example.com/token"),
            ("default_expires_in_secs", "0"),
        ];
        for (key, value) in cases {
            let err = load(&with(&[(key, value)])).unwrap_err();
            match &err {
                Error::Config(m) => assert!(m.starts_with(&format!("{key}: ")), "{m}"),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_never_echo_the_secret() {
        let err = load(&with(&[
            ("client_secret", "TOPSECRET"),
            ("auth_method", "x"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("TOPSECRET"));
        let s = load(&with(&[("client_secret", "TOPSECRET")])).unwrap();
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }

    #[test]
    fn lists_are_split_and_origins_normalised() {
        let s = load(&with(&[
            ("scope", " read  write "),
            ("resource", "https://api.example.com/ urn:example:res"),
            (
                "allowed_origins",
                "https://API.example.com, http://127.0.0.1:8080/",
            ),
            ("audience", "https://api.example.com"),
        ]))
        .unwrap();
        assert_eq!(s.scope, ["read", "write"]);
        assert_eq!(s.resource, ["https://api.example.com/", "urn:example:res"]);
        assert_eq!(s.audience.as_deref(), Some("https://api.example.com"));
        let origins: Vec<_> = s.allowed_origins.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            origins,
            ["https://api.example.com:443", "http://127.0.0.1:8080"]
        );
    }

    #[test]
    fn empty_kv_store_disables_the_shared_cache() {
        assert_eq!(load(&with(&[("kv_store", "")])).unwrap().kv_store, None);
        assert_eq!(
            load(&with(&[("kv_store", "tokens")]))
                .unwrap()
                .kv_store
                .as_deref(),
            Some("tokens")
        );
    }

    #[test]
    fn a_failing_config_store_is_a_config_error() {
        let err = Settings::load(|_| Err("upstream down".into())).unwrap_err();
        assert!(matches!(err, Error::Config(m) if m.contains("could not be read: upstream down")));
    }
}
