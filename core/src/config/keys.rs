//! The one table of configuration keys: name, default, kind (with its range) and a
//! one-line meaning. `Settings::load` reads values through it, and the tests check the
//! configuration table (docs/configuration.md) and `spin.toml` against it.

/// One `wasi:config` key (a Spin variable: lower_snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The variable's name.
    pub name: &'static str,
    /// The value used when the key is unset or empty; `None`: the key is required.
    pub default: Option<&'static str>,
    /// How its value is read.
    pub kind: Kind,
    /// The one-line meaning (for the docs checks; the reader works from [`SPECS`], which
    /// leaves it out, so a component holds none of these texts).
    pub doc: &'static str,
    /// Which components read it (for the docs and manifest checks).
    pub used_by: UsedBy,
}

/// Which components a key matters to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedBy {
    /// The provider and the interceptor.
    Both,
    /// Only the token interceptor (`intercept_*`).
    Interceptor,
}

/// How a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text, checked by the setting that uses it (URLs, labels).
    Text,
    /// A credential: never echoed in errors or `Debug`.
    Secret,
    /// Whitespace-separated words.
    Words,
    /// Comma- or whitespace-separated items.
    List,
    /// One of these words, exactly.
    Choice(&'static [&'static str]),
    /// `true` or `false`, any case.
    Bool,
    /// A whole number in `min..=max`.
    Number {
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
}

/// What the reader needs of a key: [`KEYS`] without the docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) default: Option<&'static str>,
    pub(crate) kind: Kind,
}

/// [`KEYS`] as the reader sees it, made at compile time: the only table the code reads
/// at run time (the docs and `used_by` stay in `KEYS`, which only tests read).
static SPECS: [Spec; KEYS.len()] = {
    let mut specs = [Spec {
        name: "",
        default: None,
        kind: Kind::Text,
    }; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        specs[i] = Spec {
            name: KEYS[i].name,
            default: KEYS[i].default,
            kind: KEYS[i].kind,
        };
        i += 1;
    }
    specs
};

const fn key(
    name: &'static str,
    default: Option<&'static str>,
    kind: Kind,
    doc: &'static str,
) -> Key {
    Key {
        name,
        default,
        kind,
        doc,
        used_by: UsedBy::Both,
    }
}

/// A key only the token interceptor reads.
const fn intercept_key(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    doc: &'static str,
) -> Key {
    Key {
        used_by: UsedBy::Interceptor,
        ..key(name, Some(default), kind, doc)
    }
}

const fn number(
    name: &'static str,
    default: &'static str,
    min: u64,
    max: u64,
    doc: &'static str,
) -> Key {
    key(name, Some(default), Kind::Number { min, max }, doc)
}

pub(crate) const GRANTS: &[&str] = &["client_credentials", "jwt_bearer", "token_exchange"];
pub(crate) const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "client_assertion",
    "auto",
    "none",
];
pub(crate) const ASSERTION_ALGS: &[&str] = &["", "ES256", "RS256", "PS256", "EdDSA"];
pub(crate) const ASSERTION_AUDIENCES: &[&str] = &["token_endpoint", "issuer"];
pub(crate) const ENDPOINT_ORIGINS: &[&str] = &["issuer", "any"];
pub(crate) const ON_OFF: &[&str] = &["off", "on"];
pub(crate) const RENEW_ON_401: &[&str] = &["unexplained", "invalid_token"];
pub(crate) const ASSERTION_TYPS: &[&str] = &["JWT", "client-authentication+jwt"];
pub(crate) const AUDIT_LEVELS: &[&str] = &["changes", "all", "errors", "off"];
pub(crate) const UNMATCHED: &[&str] = &["pass", "refuse"];

/// Every configuration key.
pub const KEYS: &[Key] = &[
    key(
        "token_url",
        Some(""),
        Kind::Text,
        "Token endpoint URL (https; http only with allow_insecure_http); required unless issuer is set, and then it wins over the discovered one",
    ),
    key(
        "issuer",
        Some(""),
        Kind::Text,
        "Issuer URL: the token endpoint and the supported methods are discovered from its metadata (RFC 8414, then OpenID Connect Discovery), whose issuer must equal this exactly",
    ),
    number(
        "discovery_ttl_secs",
        "86400",
        60,
        7 * 86_400,
        "How long discovered metadata is kept (in memory and, sealed, in the store) before it is fetched again",
    ),
    key(
        "token_endpoint_origin",
        Some("issuer"),
        Kind::Choice(ENDPOINT_ORIGINS),
        "With issuer: where the discovered token endpoint may be. issuer: on the issuer's own origin (scheme, host and port), so a tampered or stale document cannot send the credentials elsewhere; any: anywhere (Google and Amazon Cognito serve their token endpoint from another host)",
    ),
    key("client_id", None, Kind::Text, "OAuth2 client identifier"),
    key(
        "grant",
        Some("client_credentials"),
        Kind::Choice(GRANTS),
        "How a token is asked for: client_credentials (RFC 6749 §4.4), jwt_bearer (RFC 7523 §2.1: an assertion signed with client_private_key, iss client_id, the scopes in its scope claim, as Google's service accounts use), or token_exchange (RFC 8693: subject_token exchanged at a security token service, as workload identity federation does)",
    ),
    key(
        "jwt_bearer_subject",
        Some(""),
        Kind::Text,
        "grant = jwt_bearer: the assertion's sub claim (the user a Google service account acts for, with domain-wide delegation); empty: no sub",
    ),
    key(
        "subject_token",
        Some(""),
        Kind::Secret,
        "grant = token_exchange: the token the workload presents (a projected Kubernetes service-account token, a SPIFFE JWT-SVID, a CI OIDC token), read when the instance starts; a JWT's exp is checked before each use (mark it secret in Spin)",
    ),
    key(
        "subject_token_type",
        Some("urn:ietf:params:oauth:token-type:jwt"),
        Kind::Text,
        "grant = token_exchange: the subject_token's type (RFC 8693 §3), an absolute URI",
    ),
    key(
        "requested_token_type",
        Some("urn:ietf:params:oauth:token-type:access_token"),
        Kind::Text,
        "grant = token_exchange: the type of token asked for (RFC 8693 §3), an absolute URI; the answer's issued_token_type must be an access token or a JWT",
    ),
    key(
        "service_account_key",
        Some(""),
        Kind::Secret,
        "grant = jwt_bearer: a Google service account's JSON key file, as it is; it gives client_id (client_email), client_private_key (private_key), client_key_id (private_key_id) and token_url (token_uri), which are then left unset (mark it secret in Spin)",
    ),
    key(
        "client_secret",
        Some(""),
        Kind::Secret,
        "OAuth2 client secret, required by the client_secret_* methods (mark it secret in Spin)",
    ),
    key(
        "auth_method",
        Some("client_secret_basic"),
        Kind::Choice(AUTH_METHODS),
        "client_secret_basic, client_secret_post, client_secret_jwt (an HS256 assertion signed with the secret; RFC 7523), private_key_jwt (an assertion signed with client_private_key), client_assertion (a federated assertion sent as it is), auto (the strongest configured one the issuer's metadata lists; needs issuer), or none (no client authentication: only with grant = jwt_bearer, whose assertion authenticates the client, and token_exchange, whose subject token does)",
    ),
    number(
        "client_assertion_lifetime_secs",
        "60",
        1,
        600,
        "Lifetime of a client assertion, and of grant = jwt_bearer's (exp - iat); a new assertion is signed for every token request",
    ),
    key(
        "client_assertion_typ",
        Some("JWT"),
        Kind::Choice(ASSERTION_TYPS),
        "The typ header of a client assertion: JWT, or client-authentication+jwt (the explicit type of the RFC 7523 update)",
    ),
    key(
        "client_private_key",
        Some(""),
        Kind::Secret,
        "private_key_jwt and grant = jwt_bearer: the client's private key, PKCS#8 PEM: P-256 (ES256), Ed25519 (EdDSA) or RSA of 2048 bits or more (RS256, PS256) (mark it secret in Spin); it also keys the store's names and sealing",
    ),
    key(
        "client_assertion_audience",
        Some("token_endpoint"),
        Kind::Choice(ASSERTION_AUDIENCES),
        "The aud claim of a signed assertion (grant = jwt_bearer's too): the token endpoint URL, or the issuer (needs issuer)",
    ),
    key(
        "client_assertion",
        Some(""),
        Kind::Secret,
        "client_assertion: a JWT the platform issues and rotates (a projected service-account token, a SPIFFE JWT-SVID), sent as it is; its exp is checked before each use; read when the instance starts (mark it secret in Spin)",
    ),
    key(
        "cache_secret",
        Some(""),
        Kind::Secret,
        "client_assertion: a secret the fleet shares that seals the shared cache and keys its names (an assertion rotates, so it cannot); required with a client_assertion unless kv_store is empty; at least 32 bytes and not repetitive (openssl rand -base64 32)",
    ),
    key(
        "client_assertion_alg",
        Some(""),
        Kind::Choice(ASSERTION_ALGS),
        "private_key_jwt: the signing algorithm; empty: ES256 for a P-256 key, EdDSA for an Ed25519 key, RS256 for an RSA key; PS256 signs with an RSA key too",
    ),
    key(
        "client_key_id",
        Some(""),
        Kind::Text,
        "private_key_jwt and grant = jwt_bearer: the kid header (the key's id in the JWKS registered for the client, a Google key file's private_key_id); empty: no kid",
    ),
    key(
        "client_certificate",
        Some(""),
        Kind::Secret,
        "private_key_jwt and grant = jwt_bearer: the X.509 certificate (PEM; a chain's leaf first) registered for client_private_key, as Microsoft Entra ID takes certificate credentials: its SHA-256 thumbprint is sent as the x5t#S256 header, and a certificate for another key is a config error; empty: no x5t#S256",
    ),
    key(
        "dpop",
        Some("off"),
        Kind::Choice(ON_OFF),
        "on: tokens bound to a key with DPoP (RFC 9449): every token request and every request that uses the token carries a proof signed with dpop_private_key, or else with a P-256 key generated for each cache key and sealed in the store beside its token",
    ),
    key(
        "dpop_private_key",
        Some(""),
        Kind::Secret,
        "dpop = on: the proof key, PKCS#8 PEM: P-256 (ES256), Ed25519 (EdDSA, where built) or RSA of 2048 bits or more (RS256); empty: generated (mark it secret in Spin); its thumbprint is part of the cache key, so a new key is a new cache",
    ),
    key(
        "dpop_require_binding",
        Some("true"),
        Kind::Bool,
        "dpop = on: a token_type Bearer answer (the server ignored the proof) is an error; false: such a token is used as a Bearer token",
    ),
    key(
        "scope",
        Some(""),
        Kind::Words,
        "Default scopes, space-separated",
    ),
    key(
        "audience",
        Some(""),
        Kind::Text,
        "Default `audience` parameter",
    ),
    key(
        "resource",
        Some(""),
        Kind::Words,
        "Default RFC 8707 resource indicators, space-separated",
    ),
    key(
        "allowed_origins",
        Some(""),
        Kind::List,
        "Origins the authorized client may call, comma-separated",
    ),
    key(
        "origin_audiences",
        Some(""),
        Kind::List,
        "Which audience or resource each allowed origin may receive tokens for: origin=value pairs, comma-separated; a token with an audience or resource goes only to an origin bound to it (a resource is bound to its own origin too)",
    ),
    key(
        "allow_insecure_http",
        Some("false"),
        Kind::Bool,
        "Allow plain http:// token endpoint and API URLs",
    ),
    number(
        "expiry_skew_secs",
        "60",
        0,
        3600,
        "Stop serving a token this long before it expires",
    ),
    number(
        "default_expires_in_secs",
        "300",
        1,
        86_400 * 365,
        "Lifetime assumed when the response has no usable expires_in (absent, 0, negative, not a whole number); at most max_expires_in_secs",
    ),
    number(
        "max_expires_in_secs",
        "86400",
        1,
        86_400 * 365,
        "Longer lifetimes are clamped to this",
    ),
    number(
        "http_timeout_ms",
        "10000",
        1,
        600_000,
        "Connect, first-byte and between-bytes timeout, and the deadline of the whole exchange",
    ),
    number(
        "max_response_bytes",
        "1048576",
        0,
        256 * 1024 * 1024,
        "Largest API response body the authorized client returns",
    ),
    key(
        "kv_store",
        Some("default"),
        Kind::Text,
        "Key-value store label for the shared cache; empty disables it",
    ),
    number(
        "max_retries",
        "2",
        0,
        10,
        "Token requests retried after a transport fault, 5xx or 429 (0-10)",
    ),
    number(
        "retry_base_ms",
        "200",
        1,
        60_000,
        "Backoff ceiling before the first retry; doubles per retry; full jitter",
    ),
    number(
        "retry_max_delay_ms",
        "5000",
        0,
        300_000,
        "Longest wait between attempts; a longer Retry-After ends the retries",
    ),
    number(
        "token_deadline_ms",
        "12000",
        1,
        600_000,
        "Deadline for this instance's token requests in one get-token, retries and backoff included",
    ),
    number(
        "failure_cooldown_secs",
        "60",
        0,
        86_400,
        "After invalid_client or unauthorized_client, fail fast this long; after the token endpoint failed (5xx, 429, unreachable, timeout) past its retries, fail fast for retry_max_delay_ms or its Retry-After, at most this long; shared through the store; 0 disables both",
    ),
    number(
        "lease_ms",
        "15000",
        0,
        600_000,
        "Single-flight lease: the instance fetching a token holds it at most this long and its waiters wait for it at most this long, then elect a successor; longer than token_deadline_ms; 0 disables",
    ),
    key(
        "audit",
        Some("changes"),
        Kind::Choice(AUDIT_LEVELS),
        "Audit lines on stderr: changes (all but the routine cache hits and API answers), all, errors (failures and warnings only) or off",
    ),
    number(
        "refresh_ahead_percent",
        "15",
        0,
        50,
        "Refresh window: the last N % of a token's lifetime, when one instance renews it while the rest keep using it; 0 disables",
    ),
    number(
        "memory_max_age_ms",
        "1000",
        0,
        3_600_000,
        "With kv_store: a token is served from an instance's memory at most this long after it was last checked against the store, so a token another instance dropped (a 401) leaves every instance within this bound; 0 reads the store on every request",
    ),
    key(
        "renew_on_401",
        Some("unexplained"),
        Kind::Choice(RENEW_ON_401),
        "Which 401 from an API drops the token and tries another: invalid_token: only one whose WWW-Authenticate says Bearer error=\"invalid_token\"; unexplained: that, and one that gives no reason (no WWW-Authenticate, or a Bearer challenge without error). Another error (insufficient_scope, …) or another scheme never does",
    ),
    number(
        "min_token_age_secs",
        "30",
        0,
        3600,
        "After a 401 from an origin dropped a token, the next one is not dropped for a 401 from that same origin until it is this old: an API that refuses every token costs the fleet one token request per this long, not one per request; 0 disables",
    ),
    intercept_key(
        "intercept_routes",
        "",
        Kind::Text,
        "Interceptor: which token goes to which origin, a JSON array such as [{\"origin\":\"https://api.example.com\",\"scope\":\"read\"}]; fields origin, scope, audience, resource (a field left out takes the top-level key); origins in allowed_origins without a route get the default token",
    ),
    intercept_key(
        "intercept_unmatched",
        "pass",
        Kind::Choice(UNMATCHED),
        "Interceptor: requests to origins that get no token are sent on untouched (pass) or answered with HTTP-request-denied (refuse)",
    ),
    intercept_key(
        "retry_body_bytes",
        "65536",
        Kind::Number {
            min: 0,
            max: 8_388_608,
        },
        "Interceptor: a request body up to this many bytes is kept while it streams, so a 401 to it is retried with another token like a request without a body; a larger body streams through and its 401 goes back to the app; 0 disables",
    ),
];

/// The table row of `name`. Every name the code reads is in the table (a test reads
/// them all), so a miss is a programming error.
pub(crate) fn key_of(name: &str) -> &'static Spec {
    SPECS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("`{name}` is not in config::KEYS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lower_snake_case_and_defaults_fit_their_kind() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(
                k.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                k.name
            );
            assert!(!KEYS[..i].iter().any(|o| o.name == k.name), "{}", k.name);
            match (k.kind, k.default) {
                (Kind::Number { min, max }, Some(d)) => {
                    let n: u64 = d.parse().unwrap();
                    assert!(min <= n && n <= max, "{}", k.name);
                }
                (Kind::Choice(words), Some(d)) => assert!(words.contains(&d), "{}", k.name),
                (Kind::Bool, Some(d)) => assert!(d == "true" || d == "false", "{}", k.name),
                (Kind::Number { .. } | Kind::Choice(_) | Kind::Bool, None) => {
                    panic!("{} needs a default", k.name)
                }
                _ => {}
            }
        }
    }
}
