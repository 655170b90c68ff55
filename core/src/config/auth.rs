//! How the client asks and authenticates: `grant` (with `jwt_bearer_subject`, a token
//! exchange's `subject_token` and types, a service account's key file), `auth_method`
//! and the credentials they need (`client_secret`, `client_private_key`,
//! `client_assertion`), how assertions are made, and which credential keys the store's names and sealing
//! (`cache_secret` for a federated assertion, which rotates); the DPoP key (`dpop`).

use super::reader::Reader;
use crate::error::Error;
use crate::oauth::client::{
    AssertionSettings, AuthMethod, Credentials, Grant, MethodChoice, SubjectToken, TokenExchange,
};
use crate::oauth::client_auth::{Alg, FederatedAssertion, PrivateKey};
use crate::oauth::dpop::{DpopKey, DpopSettings};
use crate::oauth::service_account::ServiceAccount;
use crate::secret::Secret;

/// What `read_auth` gives the client settings.
pub(super) struct Auth {
    pub(crate) choice: MethodChoice,
    pub(crate) credentials: Credentials,
    /// What keys the store's names and sealing (`store::keys`, `store::seal`).
    pub(crate) store_credential: Secret,
    pub(crate) assertion: AssertionSettings,
}

/// `service_account_key`, parsed: a Google service account's key file.
pub(super) fn read_service_account(r: &Reader<'_>) -> Result<Option<ServiceAccount>, Error> {
    match r.read("service_account_key")? {
        Some(json) => ServiceAccount::parse(&json)
            .map(Some)
            .map_err(|e| Error::config("service_account_key", e)),
        None => Ok(None),
    }
}

/// `key`'s value, or `from_file`, the service account key file's `field` (then `key`
/// must be unset: one place says who the client is).
pub(super) fn or_from_file(
    r: &Reader<'_>,
    key: &'static str,
    from_file: Option<&str>,
    field: &str,
) -> Result<Option<String>, Error> {
    match (r.read(key)?, from_file) {
        (Some(_), Some(_)) => Err(Error::config(
            key,
            format!("is taken from service_account_key (its `{field}`): leave it unset"),
        )),
        (None, Some(value)) => Ok(Some(value.to_string())),
        (configured, None) => Ok(configured),
    }
}

/// `grant` and `jwt_bearer_subject` (which only `jwt_bearer` takes).
pub(super) fn read_grant(r: &Reader<'_>) -> Result<Grant, Error> {
    let grant = r.choice("grant")?;
    let subject = r.read("jwt_bearer_subject")?;
    let exchange = read_exchange(r, grant == "token_exchange")?;
    if subject.is_some() && grant != "jwt_bearer" {
        return Err(Error::config(
            "jwt_bearer_subject",
            "is used only with grant = jwt_bearer",
        ));
    }
    Ok(match (grant, exchange) {
        ("jwt_bearer", _) => Grant::JwtBearer { subject },
        (_, Some(x)) => Grant::TokenExchange(Box::new(x)),
        _ => Grant::ClientCredentials,
    })
}

/// `subject_token`, `subject_token_type` and `requested_token_type`, for
/// `grant = token_exchange` (`exchange`): the token is required then, and refused
/// otherwise; a JWT's `exp` is read (as a federated assertion's is).
fn read_exchange(r: &Reader<'_>, exchange: bool) -> Result<Option<TokenExchange>, Error> {
    let token = r.read("subject_token")?;
    let subject_token_type = r.text("subject_token_type")?;
    let requested_token_type = r.text("requested_token_type")?;
    for (key, uri) in [
        ("subject_token_type", &subject_token_type),
        ("requested_token_type", &requested_token_type),
    ] {
        if !token_type_uri(uri) {
            return Err(Error::config(
                key,
                "is not a token type URI (an absolute URI such as urn:ietf:params:oauth:token-type:jwt)",
            ));
        }
    }
    let token = match (token, exchange) {
        (None, false) => return Ok(None),
        (Some(_), false) => {
            return Err(Error::config(
                "subject_token",
                "is used only with grant = token_exchange",
            ));
        }
        (None, true) => {
            return Err(Error::config(
                "subject_token",
                "is required by grant token_exchange but not set",
            ));
        }
        (Some(token), true) => token,
    };
    let jwt = subject_token_type.ends_with(":jwt") || subject_token_type.ends_with(":id_token");
    let subject_token = if jwt {
        SubjectToken::Jwt(
            FederatedAssertion::parse(&token).map_err(|e| Error::config("subject_token", e))?,
        )
    } else {
        SubjectToken::Opaque(Secret::new(token))
    };
    Ok(Some(TokenExchange {
        identity: subject_token.identity(),
        subject_token,
        subject_token_type,
        requested_token_type,
    }))
}

/// An absolute URI as RFC 8693's token types are: a scheme, then no space or control.
fn token_type_uri(text: &str) -> bool {
    text.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    }) && text.len() <= 256
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `auth_method` and the credentials for `grant`; every error names its key and
/// echoes no credential.
pub(super) fn read_auth(
    r: &Reader<'_>,
    kv_store: bool,
    grant: &Grant,
    account: Option<&ServiceAccount>,
) -> Result<Auth, Error> {
    let choice = match r.choice("auth_method")? {
        "auto" => MethodChoice::Auto,
        "client_secret_post" => MethodChoice::Fixed(AuthMethod::ClientSecretPost),
        "client_secret_jwt" => MethodChoice::Fixed(AuthMethod::ClientSecretJwt),
        "private_key_jwt" => MethodChoice::Fixed(AuthMethod::PrivateKeyJwt),
        "client_assertion" => MethodChoice::Fixed(AuthMethod::ClientAssertion),
        "none" => MethodChoice::Fixed(AuthMethod::None),
        _ => MethodChoice::Fixed(AuthMethod::ClientSecretBasic),
    };
    let jwt_bearer = matches!(grant, Grant::JwtBearer { .. });
    method_fits_grant(choice, grant)?;
    let (credentials, pem) = read_credentials(r, choice, jwt_bearer, account)?;
    if jwt_bearer && credentials.private_key.is_none() {
        return Err(Error::config(
            "client_private_key",
            "is required by grant jwt_bearer (it signs the assertion) but not set",
        ));
    }
    let used = method_in_use(choice, &credentials)?;
    // The grant's key is the strongest credential there is: it keys the store. A
    // subject token with no client authentication rotates, as a federated assertion
    // does: `cache_secret` keys it.
    let keyed_by = match (grant, used) {
        (Grant::JwtBearer { .. }, _) => AuthMethod::PrivateKeyJwt,
        (Grant::TokenExchange(_), AuthMethod::None) => AuthMethod::ClientAssertion,
        (_, used) => used,
    };
    let store_credential = store_credential(r, keyed_by, &credentials, pem, kv_store)?;
    let assertion = AssertionSettings {
        lifetime_secs: r.number("client_assertion_lifetime_secs")?,
        typ: r.choice("client_assertion_typ")?,
        key_id: or_from_file(
            r,
            "client_key_id",
            account.map(|a| a.private_key_id.as_str()),
            "private_key_id",
        )?,
        audience_is_issuer: r.choice("client_assertion_audience")? == "issuer",
        x5t_s256: read_certificate(r, credentials.private_key.as_ref())?,
    };
    Ok(Auth {
        choice,
        credentials,
        store_credential,
        assertion,
    })
}

/// `client_certificate`'s `x5t#S256`: the certificate must be the private key's (it
/// names the key that signs), and there must be one in use. Certificate credentials
/// (Microsoft Entra ID's) are RSA keys, so only the RSA build reads certificates.
#[cfg(feature = "rsa")]
fn read_certificate(r: &Reader<'_>, key: Option<&PrivateKey>) -> Result<Option<String>, Error> {
    let Some(pem) = r.read("client_certificate")? else {
        return Ok(None);
    };
    let key = key.ok_or_else(|| {
        Error::config(
            "client_certificate",
            "names the certificate of client_private_key, which is not set or not used (auth_method private_key_jwt or auto, or grant jwt_bearer)",
        )
    })?;
    crate::oauth::certificate::thumbprint(&pem, key)
        .map(Some)
        .map_err(|e| Error::config("client_certificate", e))
}

#[cfg(not(feature = "rsa"))]
fn read_certificate(r: &Reader<'_>, _key: Option<&PrivateKey>) -> Result<Option<String>, Error> {
    match r.read("client_certificate")? {
        Some(_) => Err(Error::config(
            "client_certificate",
            "is read by the RSA build only (token_provider_rsa.wasm): certificate credentials are RSA keys",
        )),
        None => Ok(None),
    }
}

/// `none` is for `grant = jwt_bearer` and `token_exchange` only (the assertion or the
/// subject token authenticates the client), and `auto` is for `client_credentials`.
fn method_fits_grant(choice: MethodChoice, grant: &Grant) -> Result<(), Error> {
    let client_credentials = *grant == Grant::ClientCredentials;
    let why = match choice {
        MethodChoice::Fixed(AuthMethod::None) if client_credentials => {
            "none is only for grant = jwt_bearer or token_exchange: with client_credentials the client authenticates"
        }
        MethodChoice::Auto if !client_credentials => {
            "auto is for grant = client_credentials; with another grant set none (the grant authenticates the client) or the method the server asks for as well"
        }
        _ => return Ok(()),
    };
    Err(Error::config("auth_method", why))
}

/// `client_secret`, `client_private_key` (parsed, for `client_assertion_alg`) and
/// `client_assertion` (its `exp` read); also the key's PEM, which may key the store.
/// A key or assertion that neither the configured method nor the grant uses is not
/// read (`auto` may use any; `jwt_bearer` signs with the key).
fn read_credentials(
    r: &Reader<'_>,
    choice: MethodChoice,
    jwt_bearer: bool,
    account: Option<&ServiceAccount>,
) -> Result<(Credentials, Option<String>), Error> {
    let may_use =
        |m: AuthMethod| matches!(choice, MethodChoice::Auto) || choice == MethodChoice::Fixed(m);
    let from_file = account.map(|a| a.private_key.expose());
    let pem = or_from_file(r, "client_private_key", from_file, "private_key")?
        .filter(|_| jwt_bearer || may_use(AuthMethod::PrivateKeyJwt));
    let alg = match r.choice("client_assertion_alg")? {
        "ES256" => Some(Alg::Es256),
        "RS256" => Some(Alg::Rs256),
        "PS256" => Some(Alg::Ps256),
        "EdDSA" => Some(Alg::EdDsa),
        _ => None,
    };
    let credentials = Credentials {
        client_secret: r.read("client_secret")?.map(Secret::new),
        private_key: match &pem {
            Some(pem) => Some(PrivateKey::from_pem(pem, alg).map_err(|e| match account {
                // The key file's key is that file's to answer for.
                Some(_) => Error::config("service_account_key", format!("`private_key`: {e}")),
                None => Error::config("client_private_key", e),
            })?),
            None => None,
        },
        federated: match r
            .read("client_assertion")?
            .filter(|_| may_use(AuthMethod::ClientAssertion))
        {
            Some(jwt) => Some(
                FederatedAssertion::parse(&jwt)
                    .map_err(|e| Error::config("client_assertion", e))?,
            ),
            None => None,
        },
    };
    Ok((credentials, pem))
}

/// `dpop`, `dpop_private_key` and `dpop_require_binding`: `None` when `dpop = off`
/// (the other two are read, not used).
pub(super) fn read_dpop(r: &Reader<'_>) -> Result<Option<DpopSettings>, Error> {
    let on = r.choice("dpop")? == "on";
    let pem = r.read("dpop_private_key")?;
    let require_binding = r.boolean("dpop_require_binding")?;
    if !on {
        return Ok(None);
    }
    let configured = match pem {
        Some(pem) => Some(DpopKey::new(
            PrivateKey::from_pem(&pem, None).map_err(|e| Error::config("dpop_private_key", e))?,
        )),
        None => None,
    };
    Ok(Some(DpopSettings {
        configured,
        require_binding,
    }))
}

/// The configured method, if its credential is there; with `auto`, the strongest
/// configured credential's (what keys the store; the server may pick another).
fn method_in_use(choice: MethodChoice, credentials: &Credentials) -> Result<AuthMethod, Error> {
    match choice {
        MethodChoice::Fixed(m) if !credentials.has(m) => Err(Error::config(
            credential_key(m),
            format!("is required by auth_method {} but not set", m.as_str()),
        )),
        MethodChoice::Fixed(m) => Ok(m),
        MethodChoice::Auto => AuthMethod::PREFERENCE
            .into_iter()
            .find(|m| credentials.has(*m))
            .ok_or_else(|| {
                Error::config(
                    "auth_method",
                    "auto needs a credential: client_private_key, client_assertion or client_secret",
                )
            }),
    }
}

/// The key holding the credential `method` needs.
fn credential_key(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::PrivateKeyJwt => "client_private_key",
        AuthMethod::ClientAssertion => "client_assertion",
        _ => "client_secret",
    }
}

/// The least `cache_secret` may be: it is the whole sealing key of the shared cache,
/// and every key name carries a 64-bit id derived from it, so a short or repetitive
/// value could be guessed offline from the names alone.
const MIN_CACHE_SECRET_BYTES: usize = 32;

/// `cache_secret` is at least [`MIN_CACHE_SECRET_BYTES`] long and not obviously
/// low-entropy (fewer than 8 distinct characters); the error says how to make one and
/// echoes nothing of the value.
fn strong_enough(secret: &str) -> Result<(), Error> {
    // Up to 8 distinct characters are all the check needs (no sort: it is code).
    let mut distinct: Vec<char> = Vec::with_capacity(8);
    for c in secret.chars() {
        if distinct.len() == 8 {
            break;
        }
        if !distinct.contains(&c) {
            distinct.push(c);
        }
    }
    let why = if secret.len() < MIN_CACHE_SECRET_BYTES {
        format!("is {} bytes", secret.len())
    } else if distinct.len() < 8 {
        format!("has only {} distinct characters", distinct.len())
    } else {
        return Ok(());
    };
    Err(Error::config(
        "cache_secret",
        format!(
            "{why}: it seals the shared cache and names its keys, so it must be at least {MIN_CACHE_SECRET_BYTES} random bytes; make one with `openssl rand -base64 32`"
        ),
    ))
}

/// The credential of the strongest method in use keys the store: the private key's
/// PEM or the client secret. A federated assertion rotates (and differs per
/// instance), so it cannot: `cache_secret`, shared by the fleet, does, and a shared
/// store without it is a configuration error.
fn store_credential(
    r: &Reader<'_>,
    used: AuthMethod,
    credentials: &Credentials,
    pem: Option<String>,
    kv_store: bool,
) -> Result<Secret, Error> {
    let cache_secret = r.read("cache_secret")?;
    match (used, cache_secret) {
        (AuthMethod::ClientAssertion, Some(s)) => {
            strong_enough(&s)?;
            Ok(Secret::new(s))
        }
        (AuthMethod::ClientAssertion, None) if kv_store => Err(Error::config(
            "cache_secret",
            "is required with a client_assertion, or a subject_token without client authentication, while kv_store is set: it rotates, so a secret shared by the fleet must seal the cache (or set kv_store empty)",
        )),
        (AuthMethod::ClientAssertion, None) => Ok(Secret::new("memory-only client_assertion")),
        (_, Some(_)) if credentials.federated.is_none() => Err(Error::config(
            "cache_secret",
            "is used only with a client_assertion, or a subject_token without client authentication; other credentials seal the cache themselves",
        )),
        // With `auto`, a key or the secret outranks a configured assertion (and its
        // `cache_secret`): the strongest credential keys the store.
        (AuthMethod::PrivateKeyJwt, _) => Ok(Secret::new(pem.unwrap_or_default())),
        (_, _) => Ok(credentials
            .client_secret
            .clone()
            .unwrap_or_else(|| Secret::new(""))),
    }
}
