//! Settings read from `wasi:config` (Spin variables), validated once, and assembled
//! from the small settings types each part defines (`oauth::client`, the provider's
//! `cache`/`retry`/`http`, `audit`, `send`, the interceptor's routes). Every key is
//! described in [`keys::KEYS`]; every error names the key it is about. Nothing in the
//! core imports this module: it is the top layer, read by the adapters and the tests.

mod auth;
pub(crate) mod keys;
mod reader;

use reader::Reader;

use crate::audit::{AuditSettings, Level};
use crate::error::Error;
use crate::oauth::client::{ClientSettings, DiscoverySettings, Grant, MethodChoice};
use crate::oauth::request::{TokenParams, TokenRequest, parse_resource};
use crate::oauth::response::Lifetimes;
use crate::oauth::service_account::ServiceAccount;
use crate::origin::{HttpUrl, Origin, Scheme, parse_origin, parse_url};
use crate::provider::settings::{CacheSettings, HttpSettings, ProviderSettings, RetrySettings};
use crate::retry::RetryPolicy;
use crate::send::challenge::RenewOn401;
use crate::send::{InterceptSettings, SendSettings, Unmatched, parse_routes};
use crate::store::keys::KeyNames;

/// Validated settings: the provider's, and the authorized client's and interceptor's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: ProviderSettings,
    pub send: SendSettings,
}

/// Which component reads the settings: the provider reads no interceptor key (its
/// `.wasm` then holds none of the route table's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Every key (the interceptor, native tests, embedders).
    Everything,
    /// Every key but `intercept_routes` and `intercept_unmatched` (the provider).
    WithoutIntercept,
}

impl Settings {
    /// Read and validate every key through `get`, which answers `Ok(None)` for an
    /// unset key and `Err(message)` when the host's config store fails.
    pub fn load(get: impl Fn(&str) -> Result<Option<String>, String>) -> Result<Self, Error> {
        Settings::read(get, Reading::Everything)
    }

    /// As [`Settings::load`], reading the keys `reading` names.
    pub fn read(
        get: impl Fn(&str) -> Result<Option<String>, String>,
        reading: Reading,
    ) -> Result<Self, Error> {
        // Read in a fixed order (the test below pins it), so the first bad key is the
        // one reported.
        let r = Reader { get: &get };
        let allow_insecure_http = r.boolean("allow_insecure_http")?;
        let kv_store = r.or_none_if_empty("kv_store")?;
        let (client, auth) = read_client(&r, allow_insecure_http, kv_store.is_some())?;
        let (allowed_origins, origin_audiences) = read_origins(&r, allow_insecure_http)?;
        let expiry_skew_secs = r.number("expiry_skew_secs")?;
        let lifetimes = read_lifetimes(&r)?;
        let http = HttpSettings {
            timeout_ms: r.number("http_timeout_ms")?,
            allow_insecure_http,
        };
        let max_response_bytes = r.number("max_response_bytes")? as usize;
        let retry = read_retry(&r)?;
        let lease_ms = r.number("lease_ms")?;
        lease_outlasts_deadline(lease_ms, retry.token_deadline_ms)?;
        let audit = AuditSettings {
            level: Level::from_name(r.choice("audit")?),
            client_id: client.id.clone(),
            token_host: client.server_host.clone(),
        };
        let cache = CacheSettings {
            kv_store,
            expiry_skew_secs,
            lifetimes,
            refresh_ahead_percent: r.number("refresh_ahead_percent")?,
            lease_ms,
            memory_max_age_ms: r.number("memory_max_age_ms")?,
            min_token_age_ms: r.number("min_token_age_secs")? * 1000,
            key_names: KeyNames::new(&auth),
            secret: auth,
        };
        let renew_on_401 = RenewOn401::from_name(r.choice("renew_on_401")?);
        let intercept = read_intercept(&r, reading, allow_insecure_http)?;
        let settings = Settings {
            provider: ProviderSettings {
                client,
                cache,
                retry,
                http,
                audit,
            },
            send: SendSettings {
                allowed_origins,
                origin_audiences,
                max_response_bytes,
                renew_on_401,
                allow_insecure_http,
                intercept,
            },
        };
        check_requests(&settings)?;
        Ok(settings)
    }
}

/// `default_expires_in_secs`, `max_expires_in_secs`.
fn read_lifetimes(r: &Reader<'_>) -> Result<Lifetimes, Error> {
    Ok(Lifetimes {
        default_expires_in: r.number("default_expires_in_secs")?,
        max_expires_in: r.number("max_expires_in_secs")?,
    })
}

/// `max_retries`, `retry_base_ms`, `retry_max_delay_ms`, `token_deadline_ms`,
/// `failure_cooldown_secs`.
fn read_retry(r: &Reader<'_>) -> Result<RetrySettings, Error> {
    Ok(RetrySettings {
        policy: RetryPolicy {
            max_retries: r.number("max_retries")? as u32,
            base_ms: r.number("retry_base_ms")?,
            max_delay_ms: r.number("retry_max_delay_ms")?,
        },
        token_deadline_ms: r.number("token_deadline_ms")?,
        failure_cooldown_secs: r.number("failure_cooldown_secs")?,
    })
}

/// The configured defaults, and each route, must make a request the provider accepts.
fn check_requests(settings: &Settings) -> Result<(), Error> {
    let resolve = |request: &TokenRequest| TokenParams::resolve(request, &settings.provider.client);
    resolve(&Default::default()).map_err(|e| match e {
        Error::Refused(why) => Error::config("scope, audience or resource", why),
        other => other,
    })?;
    let client = &settings.provider.client;
    for (i, route) in settings.send.intercept.routes.iter().enumerate() {
        let bad =
            |why: String| Error::config("intercept_routes", format!("route {}: {why}", i + 1));
        resolve(&route.token).map_err(|e| match e {
            Error::Refused(why) => bad(why),
            other => other,
        })?;
        // What it takes from the top level must be bound to its origin, as for an
        // allowed origin: the route binds only what it names itself.
        if let Some(inherited) = route.inherited(client)
            && let Err(Error::Refused(why)) =
                crate::send::authorized::bound_to(&settings.send, client, &inherited, &route.origin)
        {
            return Err(bad(format!(
                "{} takes the top-level audience or resource, and {why}; give the route its own \"audience\" or \"resource\" (\"\" for none), or add {} to allowed_origins and bind it in origin_audiences",
                route.origin, route.origin
            )));
        }
    }
    Ok(())
}

/// `intercept_routes` and `intercept_unmatched`, unless `reading` leaves them out (the
/// provider component: the interceptor's keys, and the code that parses them, stay out
/// of its `.wasm`).
fn read_intercept(
    r: &Reader<'_>,
    reading: Reading,
    allow_insecure_http: bool,
) -> Result<InterceptSettings, Error> {
    if reading == Reading::WithoutIntercept {
        return Ok(InterceptSettings {
            routes: Vec::new(),
            unmatched: Unmatched::Pass,
            retry_body_bytes: 0,
        });
    }
    Ok(InterceptSettings {
        routes: {
            let routes = parse_routes(&r.text("intercept_routes")?)?;
            for route in &routes {
                plain_http_allowed("intercept_routes", &route.origin, allow_insecure_http)?;
            }
            routes
        },
        unmatched: match r.choice("intercept_unmatched")? {
            "refuse" => Unmatched::Refuse,
            _ => Unmatched::Pass,
        },
        retry_body_bytes: r.number("retry_body_bytes")?,
    })
}

/// A token never goes over plain `http://` unless `allow_insecure_http`: an `http://`
/// origin under `key` is a `config` error then (the decisions refuse it too).
fn plain_http_allowed(key: &str, origin: &Origin, allow_insecure_http: bool) -> Result<(), Error> {
    if origin.scheme == Scheme::Http && !allow_insecure_http {
        return Err(Error::config(
            key,
            format!(
                "{origin}: plain http:// would expose the token; use https://, or set allow_insecure_http=true (local tests only)"
            ),
        ));
    }
    Ok(())
}

/// A holder fetches for up to `token_deadline_ms`; its waiters give up on it after
/// `lease_ms`, so the lease must be the longer.
fn lease_outlasts_deadline(lease_ms: u64, token_deadline_ms: u64) -> Result<(), Error> {
    if lease_ms > 0 && lease_ms <= token_deadline_ms {
        return Err(Error::config(
            "lease_ms",
            format!(
                "{lease_ms} is not longer than token_deadline_ms ({token_deadline_ms}): waiters would give up on a holder that is still fetching; make lease_ms longer, or 0 to disable the lease"
            ),
        ));
    }
    Ok(())
}

/// `allowed_origins`, then `origin_audiences` (bindings of those origins).
type Origins = (Vec<Origin>, Vec<(Origin, String)>);

fn read_origins(r: &Reader<'_>, allow_insecure_http: bool) -> Result<Origins, Error> {
    let allowed = r
        .list("allowed_origins")?
        .iter()
        .map(|s| {
            let origin = parse_origin(s)
                .map_err(|e| Error::config("allowed_origins", format!("`{s}`: {e}")))?;
            plain_http_allowed("allowed_origins", &origin, allow_insecure_http)?;
            Ok(origin)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let bindings = read_bindings(r, &allowed)?;
    Ok((allowed, bindings))
}

impl Settings {
    /// Settings from `key = value` pairs (a later pair wins), as a host's variables
    /// would give them: for embedders, tests and fuzz targets.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, Error> {
        let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
        Settings::load(|k| Ok(map.get(k).map(|v| v.to_string())))
    }
}

/// `client_id` (or the key file's `client_email`) and the grant, which a key file
/// must be for.
fn read_identity(
    r: &Reader<'_>,
    account: Option<&ServiceAccount>,
) -> Result<(String, Grant), Error> {
    let from_file = account.map(|a| a.client_email.as_str());
    let id = auth::or_from_file(r, "client_id", from_file, "client_email")?
        .ok_or_else(|| Error::config("client_id", "is required but not set"))?;
    let grant = auth::read_grant(r)?;
    if account.is_some() && grant == Grant::ClientCredentials {
        return Err(Error::config(
            "service_account_key",
            "needs grant = jwt_bearer (and auth_method = none for Google): a service account's key signs the grant's assertion",
        ));
    }
    Ok((id, grant))
}

fn read_client(
    r: &Reader<'_>,
    allow_insecure_http: bool,
    kv_store: bool,
) -> Result<(ClientSettings, crate::secret::Secret), Error> {
    let account = auth::read_service_account(r)?;
    let (token_url, token_url_text, discovery) =
        read_server(r, allow_insecure_http, account.as_ref())?;
    let (id, grant) = read_identity(r, account.as_ref())?;
    let auth = auth::read_auth(r, kv_store, &grant, account.as_ref())?;
    if discovery.is_none() {
        if auth.choice == MethodChoice::Auto {
            return Err(Error::config(
                "auth_method",
                "auto needs issuer: the methods come from the server's metadata",
            ));
        }
        if auth.assertion.audience_is_issuer {
            return Err(Error::config(
                "client_assertion_audience",
                "issuer needs issuer to be set",
            ));
        }
    }
    let dpop = auth::read_dpop(r)?;
    let scope = r.words("scope")?;
    let audience = r.read("audience")?;
    let resource = r.words("resource")?;
    for res in &resource {
        parse_resource(res).map_err(|e| Error::config("resource", e))?;
    }
    let (server_text, server_host) = match (&token_url, &discovery) {
        (Some(u), _) => (token_url_text.unwrap_or_default(), u.origin.host.clone()),
        (None, Some(d)) => (d.issuer.clone(), d.issuer_url.origin.host.clone()),
        (None, None) => unreachable!("one of them is required above"),
    };
    let client = ClientSettings {
        token_url,
        discovery,
        server_text,
        server_host,
        id,
        grant,
        auth_method: auth.choice,
        credentials: auth.credentials,
        assertion: auth.assertion,
        dpop,
        scope,
        audience,
        resource,
    };
    Ok((client, auth.store_credential))
}

/// Where tokens come from: `token_url` (parsed, and as written) and the discovery
/// settings.
type Server = (Option<HttpUrl>, Option<String>, Option<DiscoverySettings>);

/// `token_url` and `issuer` with `discovery_ttl_secs` and `token_endpoint_origin`: at least one of the two, each
/// `https://` unless `allow_insecure_http`.
fn read_server(
    r: &Reader<'_>,
    allow_insecure_http: bool,
    account: Option<&ServiceAccount>,
) -> Result<Server, Error> {
    let url = |key: &str, text: &str| -> Result<HttpUrl, Error> {
        // A `token_uri` from the key file is that key's to answer for.
        let (key, why) = match account {
            Some(_) if key == "token_url" => ("service_account_key", "`token_uri`: "),
            _ => (key, ""),
        };
        let url = parse_url(text).map_err(|e| Error::config(key, format!("{why}{e}")))?;
        if url.origin.scheme == Scheme::Http && !allow_insecure_http {
            return Err(Error::config(
                key,
                format!(
                    "{why}plain http:// is refused; use https:// or set allow_insecure_http=true"
                ),
            ));
        }
        Ok(url)
    };
    let from_file = account.map(|a| a.token_uri.as_str());
    let token_url_text = auth::or_from_file(r, "token_url", from_file, "token_uri")?;
    let issuer = r.read("issuer")?;
    let ttl_secs = r.number("discovery_ttl_secs")?;
    let pin_origin = r.choice("token_endpoint_origin")? == "issuer";
    let discovery = match issuer {
        Some(issuer) => {
            let issuer_url = url("issuer", &issuer)?;
            crate::oauth::metadata::check_issuer(&issuer_url)
                .map_err(|e| Error::config("issuer", e))?;
            Some(DiscoverySettings {
                issuer_url,
                issuer,
                ttl_secs,
                pin_origin,
            })
        }
        None => None,
    };
    let token_url = match &token_url_text {
        Some(text) => Some(url("token_url", text)?),
        None if discovery.is_none() => {
            return Err(Error::config(
                "token_url",
                "is required but not set (or set issuer to discover it)",
            ));
        }
        None => None,
    };
    Ok((token_url, token_url_text, discovery))
}

/// `origin_audiences`: `origin=value` pairs, each origin one of `allowed`.
fn read_bindings(r: &Reader<'_>, allowed: &[Origin]) -> Result<Vec<(Origin, String)>, Error> {
    let bad = |item: &str, why: &str| {
        Error::config(
            "origin_audiences",
            format!("`{}`: {why}", crate::error::sanitize(item, 100)),
        )
    };
    r.list("origin_audiences")?
        .iter()
        .map(|item| {
            let (origin, value) = item
                .split_once('=')
                .ok_or_else(|| bad(item, "expected origin=audience"))?;
            let origin = parse_origin(origin.trim()).map_err(|e| bad(item, &e))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad(item, "the audience is empty"));
            }
            if !allowed.contains(&origin) {
                return Err(bad(item, "the origin is not in allowed_origins"));
            }
            Ok((origin, value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::{KEYS, Kind};
    use crate::oauth::client::{AuthMethod, SubjectToken};

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        Settings::from_pairs(pairs)
    }

    const BASE: &[(&str, &str)] = &[
        ("token_url", "https://auth.example.com/oauth/token"),
        ("client_id", "svc"),
        ("client_secret", "s3cret"),
    ];

    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        [BASE, extra].concat()
    }

    #[test]
    fn defaults_apply_when_only_required_keys_are_set() {
        let s = load(BASE).unwrap();
        assert_eq!(
            s.provider.client.auth_method,
            MethodChoice::Fixed(AuthMethod::ClientSecretBasic)
        );
        assert_eq!(s.provider.cache.expiry_skew_secs, 60);
        assert_eq!(s.provider.cache.lifetimes.default_expires_in, 300);
        assert_eq!(s.provider.cache.lifetimes.max_expires_in, 86_400);
        assert_eq!(s.provider.http.timeout_ms, 10_000);
        assert_eq!(s.send.max_response_bytes, 1_048_576);
        assert_eq!(s.provider.cache.kv_store.as_deref(), Some("default"));
        assert!(
            s.provider.client.scope.is_empty()
                && s.provider.client.resource.is_empty()
                && s.provider.client.audience.is_none()
        );
        assert!(!s.provider.http.allow_insecure_http);
    }

    #[test]
    fn missing_required_keys_are_named() {
        for (key, message) in [
            (
                "token_url",
                "is required but not set (or set issuer to discover it)",
            ),
            ("client_id", "is required but not set"),
            (
                "client_secret",
                "is required by auth_method client_secret_basic but not set",
            ),
        ] {
            let pairs: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != key).collect();
            let err = load(&pairs).unwrap_err();
            assert_eq!(err, Error::Config(format!("{key}: {message}")));
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
        assert!(s.provider.http.allow_insecure_http);
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
    fn configured_scopes_and_audience_are_held_to_the_request_bounds() {
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        let e = load(&with(&[("scope", &many.join(" "))]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config: scope, audience or resource: 65 scopes asked for; at most 64"
        );
        assert!(load(&with(&[("audience", &"a".repeat(1025))])).is_err());
        assert!(load(&with(&[("scope", "a\"b")])).is_err());
    }

    #[test]
    fn origin_audiences_are_origin_value_pairs_of_allowed_origins() {
        let s = load(&with(&[
            ("allowed_origins", "https://a.example,https://b.example:8443"),
            (
                "origin_audiences",
                "https://a.example=orders, https://a.example/=https://a.example/v2,https://b.example:8443=x=y",
            ),
        ]))
        .unwrap();
        let shown: Vec<String> = s
            .send
            .origin_audiences
            .iter()
            .map(|(o, v)| format!("{o} {v}"))
            .collect();
        assert_eq!(
            shown,
            [
                "https://a.example:443 orders",
                "https://a.example:443 https://a.example/v2",
                "https://b.example:8443 x=y"
            ]
        );
        for (value, why) in [
            ("https://a.example", "expected origin=audience"),
            ("https://a.example=", "the audience is empty"),
            ("https://c.example=x", "not in allowed_origins"),
            ("ftp://a.example=x", "`ftp://a.example=x`"),
        ] {
            let e = load(&with(&[
                ("allowed_origins", "https://a.example"),
                ("origin_audiences", value),
            ]))
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with("config: origin_audiences: ") && e.contains(why),
                "{e}"
            );
        }
    }

    #[test]
    fn private_key_jwt_needs_a_p256_key_and_no_secret() {
        let pairs = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
            let mut v: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != "client_secret")
                .collect();
            v.push(("auth_method", "private_key_jwt"));
            v.extend_from_slice(extra);
            v
        };
        let err = load(&pairs(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config: client_private_key: is required by auth_method private_key_jwt but not set"
        );
        let junk = "-----BEGIN PRIVATE KEY-----\nTUlJQ0lqQU5CZ2txaGtpRzl3MEJBUUVG\n-----END PRIVATE KEY-----";
        let err = load(&pairs(&[("client_private_key", junk)])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("config: client_private_key: not a P-256"),
            "{text}"
        );
        assert!(!text.contains("TUlJQ0lq"), "{text}");
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let pem: &'static str = Box::leak(pem.into_boxed_str());
        let s = load(&pairs(&[
            ("client_private_key", pem),
            ("client_key_id", "k1"),
        ]))
        .unwrap();
        assert_eq!(
            s.provider.client.auth_method,
            MethodChoice::Fixed(AuthMethod::PrivateKeyJwt)
        );
        assert!(s.provider.client.credentials.private_key.is_some());
        assert_eq!(s.provider.client.assertion.key_id.as_deref(), Some("k1"));
        assert!(
            !format!("{s:?}").contains("PRIVATE KEY"),
            "Debug shows no key"
        );
    }

    /// `client_certificate` needs a private key in use and must certify it; what is
    /// wrong is said without the text.
    #[cfg(feature = "rsa")]
    #[test]
    fn a_client_certificate_is_the_private_keys_or_a_config_error() {
        let cert_of = |key: &rcgen::KeyPair| {
            rcgen::CertificateParams::new(vec!["client.example".into()])
                .unwrap()
                .self_signed(key)
                .unwrap()
                .pem()
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = key.serialize_pem();
        let pairs = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
            BASE.iter()
                .filter(|(k, _)| *k != "client_secret")
                .chain(&[("auth_method", "private_key_jwt")])
                .chain(extra)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let load = |extra: &[(&'static str, &str)]| {
            let all = pairs(extra);
            let refs: Vec<(&str, &str)> =
                all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            load(&refs)
        };
        let error = |extra: &[(&'static str, &str)]| match load(extra) {
            Err(Error::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        let cert = cert_of(&key);
        let s = load(&[("client_private_key", &pem), ("client_certificate", &cert)]).unwrap();
        assert_eq!(
            s.provider
                .client
                .assertion
                .x5t_s256
                .as_ref()
                .map(String::len),
            Some(43)
        );
        // A secret in use, not the key: the certificate names nothing.
        let m = match Settings::from_pairs(&with(&[("client_certificate", &cert)])) {
            Err(Error::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            m.starts_with("client_certificate: names the certificate of client_private_key"),
            "{m}"
        );
        let m = error(&[
            ("client_private_key", &pem),
            ("client_certificate", &cert_of(&other)),
        ]);
        assert!(m.contains("another public key"), "{m}");
        let m = error(&[("client_private_key", &pem), ("client_certificate", &pem)]);
        assert!(m.contains("expected an X.509 certificate in PEM"), "{m}");
        assert!(!m.contains("MI"), "{m}");
    }

    /// Without the RSA build a certificate is refused, and the error names that build.
    #[cfg(not(feature = "rsa"))]
    #[test]
    fn a_client_certificate_needs_the_rsa_build() {
        let e = load(&with(&[(
            "client_certificate",
            "-----BEGIN CERTIFICATE-----",
        )]));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.starts_with("client_certificate: is read by the RSA build only (token_provider_rsa.wasm)")),
            "{e:?}"
        );
    }

    /// `grant = jwt_bearer`: the key is required (it signs the grant's assertion),
    /// `auth_method = none` is for it only, `auto` is not for it, the subject only
    /// with it; the key keys the store whatever the client authentication.
    #[test]
    fn the_jwt_bearer_grant_needs_a_key_and_may_send_no_client_authentication() {
        let pem = crate::testing::p256_pem();
        let no_secret: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "client_secret")
            .collect();
        let bearer = |extra: &[(&'static str, &'static str)]| {
            let mut v = no_secret.clone();
            v.push(("grant", "jwt_bearer"));
            v.extend_from_slice(extra);
            load(&v)
        };
        let error = |r: Result<Settings, Error>| r.unwrap_err().to_string();
        assert_eq!(
            error(bearer(&[("auth_method", "none")])),
            "config: client_private_key: is required by grant jwt_bearer (it signs the assertion) but not set"
        );
        let s = bearer(&[
            ("auth_method", "none"),
            ("client_private_key", pem),
            ("jwt_bearer_subject", "user@example.com"),
        ])
        .unwrap();
        let c = &s.provider.client;
        assert_eq!(c.auth_method, MethodChoice::Fixed(AuthMethod::None));
        assert_eq!(
            c.grant,
            Grant::JwtBearer {
                subject: Some("user@example.com".into())
            }
        );
        // The default method still needs its secret: the error says what to set.
        assert_eq!(
            error(bearer(&[("client_private_key", pem)])),
            "config: client_secret: is required by auth_method client_secret_basic but not set"
        );
        assert!(
            error(bearer(&[
                ("auth_method", "auto"),
                ("client_private_key", pem)
            ]))
            .starts_with("config: auth_method: auto is for grant = client_credentials")
        );
        let mut v = no_secret.clone();
        v.push(("auth_method", "none"));
        assert!(
            error(load(&v)).starts_with("config: auth_method: none is only for grant = jwt_bearer")
        );
        assert_eq!(
            error(load(&with(&[("jwt_bearer_subject", "someone")]))),
            "config: jwt_bearer_subject: is used only with grant = jwt_bearer"
        );
        // The key keys the store, with client_secret_basic as with none.
        let with_secret = load(&with(&[
            ("grant", "jwt_bearer"),
            ("client_private_key", pem),
        ]))
        .unwrap();
        assert_eq!(
            with_secret.provider.cache.secret.expose(),
            s.provider.cache.secret.expose()
        );
        assert_eq!(with_secret.provider.cache.secret.expose(), pem.trim());
    }

    /// A JWT as a platform issues one (payload `iss`, `sub`, `exp`), unsigned here.
    fn platform_jwt(sub: &str, exp: u64) -> String {
        let payload = serde_json::json!({"iss": "https://k8s.example", "sub": sub, "exp": exp});
        crate::testing::unsigned_jwt(&payload.to_string())
    }

    /// `grant = token_exchange`: `subject_token` is required with it and refused
    /// without, a JWT one must have an `exp`, the token types are URIs; with no
    /// client authentication `cache_secret` seals a shared store (the token rotates),
    /// with a client secret the secret does.
    #[test]
    fn token_exchange_needs_a_subject_token_and_seals_the_store_as_a_rotating_one() {
        let jwt = platform_jwt("system:serviceaccount:ns:app", 4_102_444_800);
        let error = |r: Result<Settings, Error>| r.unwrap_err().to_string();
        let exchange = |extra: &[(&'static str, &str)]| {
            let mut v = vec![("grant", "token_exchange")];
            v.extend_from_slice(extra);
            load(&with(&v))
        };
        assert_eq!(
            error(exchange(&[])),
            "config: subject_token: is required by grant token_exchange but not set"
        );
        assert_eq!(
            error(load(&with(&[("subject_token", jwt.as_str())]))),
            "config: subject_token: is used only with grant = token_exchange"
        );
        assert!(
            error(exchange(&[("subject_token", "not-a-jwt")]))
                .starts_with("config: subject_token: expected a JWT")
        );
        assert!(
            error(exchange(&[
                ("subject_token", jwt.as_str()),
                ("subject_token_type", "not a uri")
            ]))
            .starts_with("config: subject_token_type: is not a token type URI")
        );
        // Over 256 bytes: not a token type either (257 here).
        let long = format!("urn:ietf:params:oauth:token-type:{}", "x".repeat(224));
        assert_eq!(long.len(), 257);
        assert!(
            error(exchange(&[
                ("subject_token", jwt.as_str()),
                ("requested_token_type", long.as_str())
            ]))
            .starts_with("config: requested_token_type: is not a token type URI")
        );
        // An opaque token is not read as a JWT.
        let opaque = exchange(&[
            ("subject_token", "opaque-token-value"),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ])
        .unwrap();
        assert!(matches!(
            &opaque.provider.client.grant,
            Grant::TokenExchange(x) if matches!(x.subject_token, SubjectToken::Opaque(_))
        ));
        // No client authentication: the shared store needs cache_secret.
        let no_secret: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "client_secret")
            .collect();
        let none = |extra: &[(&'static str, &str)]| {
            let mut v = no_secret.clone();
            v.extend([
                ("grant", "token_exchange"),
                ("auth_method", "none"),
                ("subject_token", jwt.as_str()),
            ]);
            v.extend_from_slice(extra);
            load(&v)
        };
        assert!(error(none(&[])).starts_with(
            "config: cache_secret: is required with a client_assertion, or a subject_token"
        ));
        let sealed = none(&[("cache_secret", FLEET)]).unwrap();
        assert_eq!(sealed.provider.cache.secret.expose(), FLEET);
        assert!(none(&[("kv_store", "")]).is_ok(), "memory only");
        // A client secret as well: the secret seals, and cache_secret is refused.
        let with_secret = exchange(&[("subject_token", jwt.as_str())]).unwrap();
        assert_eq!(with_secret.provider.cache.secret.expose(), "s3cret");
        assert!(
            !format!("{with_secret:?}").contains(&jwt),
            "Debug shows no token"
        );
    }

    /// `service_account_key`: a Google key file gives the client id, key, key id and
    /// token endpoint, which are then not set apart; it needs `grant = jwt_bearer`, and
    /// a wrong file is an error that names the field and shows none of it.
    #[test]
    fn a_service_account_key_file_configures_the_jwt_bearer_grant() {
        let pem = crate::testing::p256_pem();
        let file = |token_uri: &str| {
            serde_json::json!({
                "type": "service_account",
                "private_key_id": "kid-7",
                "private_key": pem,
                "client_email": "reporter@acme.iam.gserviceaccount.com",
                "token_uri": token_uri,
            })
            .to_string()
        };
        let json = file("https://oauth2.googleapis.com/token");
        let pairs = |extra: &[(&'static str, &str)]| -> Result<Settings, Error> {
            let mut v: Vec<(&str, &str)> = vec![
                ("service_account_key", json.as_str()),
                ("grant", "jwt_bearer"),
                ("auth_method", "none"),
            ];
            v.extend_from_slice(extra);
            load(&v)
        };
        let s = pairs(&[]).unwrap();
        let c = &s.provider.client;
        assert_eq!(c.id, "reporter@acme.iam.gserviceaccount.com");
        assert_eq!(c.server_text, "https://oauth2.googleapis.com/token");
        assert_eq!(c.assertion.key_id.as_deref(), Some("kid-7"));
        assert!(c.credentials.private_key.is_some());
        assert_eq!(s.provider.cache.secret.expose(), pem.trim());
        assert!(
            !format!("{s:?}").contains("PRIVATE KEY"),
            "Debug shows no key"
        );
        let error = |r: Result<Settings, Error>| r.unwrap_err().to_string();
        for (key, field) in [
            ("client_id", "client_email"),
            ("client_private_key", "private_key"),
            ("client_key_id", "private_key_id"),
            ("token_url", "token_uri"),
        ] {
            assert_eq!(
                error(pairs(&[(key, "also-set")])),
                format!(
                    "config: {key}: is taken from service_account_key (its `{field}`): leave it unset"
                )
            );
        }
        assert!(
            error(pairs(&[("grant", "client_credentials")]))
                .starts_with("config: service_account_key: needs grant = jwt_bearer")
        );
        let e = error(load(&[(
            "service_account_key",
            "{\"type\": \"service_account\"}",
        )]));
        assert_eq!(
            e,
            "config: service_account_key: `client_email` is missing, empty or not a string"
        );
        let pkcs1 = file("https://oauth2.googleapis.com/token")
            .replace("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY")
            .replace("END PRIVATE KEY", "END RSA PRIVATE KEY");
        let e = error(load(&[
            ("service_account_key", pkcs1.as_str()),
            ("grant", "jwt_bearer"),
            ("auth_method", "none"),
        ]));
        assert!(
            e.starts_with("config: service_account_key: `private_key`: expected a PKCS#8 PEM"),
            "{e}"
        );
        let e = error(load(&[("service_account_key", pem)]));
        assert!(
            e.starts_with("config: service_account_key: not JSON"),
            "{e}"
        );
        assert!(!e.contains("PRIVATE"), "{e}");
        let http = file("http://127.0.0.1:9/token");
        let e = error(load(&[
            ("service_account_key", http.as_str()),
            ("grant", "jwt_bearer"),
        ]));
        assert!(
            e.starts_with("config: service_account_key: `token_uri`: plain http:// is refused"),
            "{e}"
        );
    }

    /// 32 bytes or more, as `openssl rand -base64 32` makes them.
    const FLEET: &str = "hQ3vZ9kWc1rYb7Tn2LxP8sJd5GmEa0Fu";
    const OTHER_FLEET: &str = "Kp4wX1zNq6Vh8Rt3Jb9Lc2Ms7Dg5Fy0A";

    #[test]
    fn a_federated_assertion_needs_a_cache_secret_to_share_the_store() {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"system:serviceaccount:ns:app","exp":1800000600}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        let federated = |extra: &[(&str, &str)]| {
            let mut v: Vec<(&str, &str)> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != "client_secret")
                .collect();
            v.push(("auth_method", "client_assertion"));
            v.push(("client_assertion", &jwt));
            v.extend_from_slice(extra);
            load(&v)
        };
        let e = federated(&[]).unwrap_err().to_string();
        assert!(
            e.starts_with("config: cache_secret: is required with a client_assertion"),
            "{e}"
        );
        // The whole sealing key: short or repetitive values are refused, and the error
        // says how to make one without echoing the value.
        for (weak, why) in [
            ("fleet-secret", "is 12 bytes"),
            ("0123456789012345678901234567890", "is 31 bytes"),
            (
                "abababababababababababababababababab",
                "has only 2 distinct characters",
            ),
        ] {
            let e = federated(&[("cache_secret", weak)])
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("config: cache_secret: {why}: ")),
                "{e}"
            );
            assert!(e.contains("openssl rand -base64 32"), "{e}");
            assert!(!e.contains(weak), "{e}");
        }
        let shared = federated(&[("cache_secret", FLEET)]).unwrap();
        assert_eq!(shared.provider.cache.secret.expose(), FLEET);
        assert_eq!(
            shared
                .provider
                .client
                .credentials
                .federated
                .as_ref()
                .unwrap()
                .expires_at_secs,
            1_800_000_600
        );
        // Another assertion (rotated) with the same cache secret: the same store names.
        let rotated_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"system:serviceaccount:ns:app","exp":1800004200}"#);
        let rotated = format!("eyJhbGciOiJSUzI1NiJ9.{rotated_payload}.c2ln");
        let next = federated(&[("cache_secret", FLEET), ("client_assertion", &rotated)]).unwrap();
        assert_eq!(
            next.provider.cache.key_names,
            shared.provider.cache.key_names
        );
        let other_fleet = federated(&[("cache_secret", OTHER_FLEET)]).unwrap();
        assert_ne!(
            other_fleet.provider.cache.key_names,
            shared.provider.cache.key_names
        );
        let memory_only = federated(&[("kv_store", "")]).unwrap();
        assert_eq!(memory_only.provider.cache.kv_store, None);
        let e = federated(&[("client_assertion", "not-a-jwt")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config: client_assertion: expected a JWT"),
            "{e}"
        );
        let e = load(&with(&[("cache_secret", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config: cache_secret: is used only with a client_assertion"),
            "{e}"
        );
    }

    #[test]
    fn issuer_discovery_and_auto_are_configured_together() {
        let e = load(&with(&[("auth_method", "auto")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config: auth_method: auto needs issuer: the methods come from the server's metadata"
        );
        let e = load(&with(&[("client_assertion_audience", "issuer")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config: client_assertion_audience: issuer needs issuer to be set"
        );
        let e = load(&with(&[("token_url", "")])).unwrap_err().to_string();
        assert_eq!(
            e,
            "config: token_url: is required but not set (or set issuer to discover it)"
        );
        let e = load(&with(&[("issuer", "http://idp.example")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config: issuer: plain http:// is refused"),
            "{e}"
        );
        let e = load(&with(&[("issuer", "https://idp.example/?x=1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config: issuer: an issuer has no query"),
            "{e}"
        );
        let s = load(&with(&[
            ("token_url", ""),
            ("issuer", "https://idp.example/t"),
            ("auth_method", "auto"),
        ]))
        .unwrap();
        assert!(
            s.provider.client.token_url.is_none() && s.provider.client.static_endpoint().is_none()
        );
        assert_eq!(
            (
                s.provider.client.server_text.as_str(),
                s.provider.client.server_host.as_str()
            ),
            ("https://idp.example/t", "idp.example")
        );
        assert_eq!(
            s.provider.client.discovery.as_ref().unwrap().ttl_secs,
            86_400
        );
        // auto keys the store with the strongest configured credential.
        assert_eq!(s.provider.cache.secret.expose(), "s3cret");
        let e = load(&[
            ("client_id", "svc"),
            ("issuer", "https://idp.example/t"),
            ("auth_method", "auto"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("config: auth_method: auto needs a credential"),
            "{e}"
        );
    }

    #[test]
    fn routes_are_held_to_the_request_bounds_and_unmatched_defaults_to_pass() {
        let s = load(BASE).unwrap();
        assert!(s.send.intercept.routes.is_empty());
        assert_eq!(s.send.intercept.unmatched, Unmatched::Pass);
        let long = format!(
            r#"[{{"origin":"https://a.example","audience":"{}"}}]"#,
            "x".repeat(2000)
        );
        let err = load(&with(&[("intercept_routes", &long)])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config: intercept_routes: route 1: audience"),
            "{err}"
        );
        let s = load(&with(&[
            ("intercept_routes", r#"[{"origin":"https://a.example"}]"#),
            ("intercept_unmatched", "refuse"),
        ]))
        .unwrap();
        assert_eq!(s.send.intercept.routes.len(), 1);
        assert_eq!(s.send.intercept.unmatched, Unmatched::Refuse);
    }

    #[test]
    fn a_lease_no_longer_than_the_token_deadline_is_refused_naming_both() {
        let e = load(&with(&[("lease_ms", "12000")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lease_ms: 12000") && e.contains("token_deadline_ms (12000)"),
            "{e}"
        );
        assert!(load(&with(&[("lease_ms", "12001")])).is_ok());
        assert!(load(&with(&[("lease_ms", "0"), ("token_deadline_ms", "60000")])).is_ok());
        let e = load(&with(&[("token_deadline_ms", "20000")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lease_ms: 15000") && e.contains("(20000)"),
            "{e}"
        );
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

    /// A token never goes over plain http:// unless allow_insecure_http: an http://
    /// origin in allowed_origins or a route is a config error naming the key.
    #[test]
    fn plain_http_origins_and_routes_need_allow_insecure_http() {
        for (key, value) in [
            (
                "allowed_origins",
                "https://api.example.com,http://127.0.0.1:8080",
            ),
            (
                "intercept_routes",
                r#"[{"origin":"http://127.0.0.1:8080"}]"#,
            ),
        ] {
            match load(&with(&[(key, value)])) {
                Err(Error::Config(m)) => {
                    assert!(
                        m.starts_with(&format!("{key}: http://127.0.0.1:8080: ")),
                        "{m}"
                    );
                    assert!(m.contains("allow_insecure_http=true"), "{m}");
                }
                other => panic!("{key}: {other:?}"),
            }
            assert!(load(&with(&[(key, value), ("allow_insecure_http", "true")])).is_ok());
        }
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
            ("allow_insecure_http", "true"),
        ]))
        .unwrap();
        assert_eq!(s.provider.client.scope, ["read", "write"]);
        assert_eq!(
            s.provider.client.resource,
            ["https://api.example.com/", "urn:example:res"]
        );
        assert_eq!(
            s.provider.client.audience.as_deref(),
            Some("https://api.example.com")
        );
        let origins: Vec<_> = s
            .send
            .allowed_origins
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            origins,
            ["https://api.example.com:443", "http://127.0.0.1:8080"]
        );
    }

    #[test]
    fn empty_kv_store_disables_the_shared_cache() {
        assert_eq!(
            load(&with(&[("kv_store", "")]))
                .unwrap()
                .provider
                .cache
                .kv_store,
            None
        );
        assert_eq!(
            load(&with(&[("kv_store", "tokens")]))
                .unwrap()
                .provider
                .cache
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

    #[test]
    fn every_key_in_the_table_is_read_and_checked_against_its_kind() {
        for key in KEYS {
            let bad = match key.kind {
                Kind::Number { max, .. } => (max + 1).to_string(),
                Kind::Bool => "maybe".into(),
                Kind::Choice(_) => "none_of_these".into(),
                Kind::Text | Kind::Secret | Kind::Words | Kind::List => continue,
            };
            let err = load(&with(&[(key.name, &bad)])).unwrap_err();
            match &err {
                Error::Config(m) => assert!(m.starts_with(&format!("{}: ", key.name)), "{m}"),
                other => panic!("{}: {other:?}", key.name),
            }
        }
        for key in KEYS.iter().filter(|k| k.default.is_none()) {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != key.name)
                .collect();
            assert!(load(&pairs).is_err(), "{} is required", key.name);
        }
    }

    #[test]
    fn each_key_is_read_once_in_a_fixed_order_and_an_unset_kv_store_twice() {
        // A host's config store is I/O: the reads are part of the behaviour.
        let reads = std::cell::RefCell::new(Vec::new());
        let map: std::collections::HashMap<&str, &str> = BASE.iter().copied().collect();
        Settings::load(|k| {
            reads.borrow_mut().push(k.to_string());
            Ok(map.get(k).map(|v| v.to_string()))
        })
        .unwrap();
        assert_eq!(
            reads.into_inner(),
            [
                "allow_insecure_http",
                "kv_store",
                "kv_store",
                "service_account_key",
                "token_url",
                "issuer",
                "discovery_ttl_secs",
                "token_endpoint_origin",
                "client_id",
                "grant",
                "jwt_bearer_subject",
                "subject_token",
                "subject_token_type",
                "requested_token_type",
                "auth_method",
                "client_private_key",
                "client_assertion_alg",
                "client_secret",
                "client_assertion",
                "cache_secret",
                "client_assertion_lifetime_secs",
                "client_assertion_typ",
                "client_key_id",
                "client_assertion_audience",
                "client_certificate",
                "dpop",
                "dpop_private_key",
                "dpop_require_binding",
                "scope",
                "audience",
                "resource",
                "allowed_origins",
                "origin_audiences",
                "expiry_skew_secs",
                "default_expires_in_secs",
                "max_expires_in_secs",
                "http_timeout_ms",
                "max_response_bytes",
                "max_retries",
                "retry_base_ms",
                "retry_max_delay_ms",
                "token_deadline_ms",
                "failure_cooldown_secs",
                "lease_ms",
                "audit",
                "refresh_ahead_percent",
                "memory_max_age_ms",
                "min_token_age_secs",
                "renew_on_401",
                "intercept_routes",
                "intercept_unmatched",
                "retry_body_bytes",
            ]
        );
    }
}
