//! The OAuth client as registered with the authorization server: where its token
//! endpoint is (or the issuer to discover it from), its `client_id`, how it
//! authenticates (`auth_method`, the credentials, how assertions are made) and what it
//! asks for by default. `config` reads these; the token request, discovery and the
//! store's names use them.

use crate::oauth::client_auth::{FederatedAssertion, PrivateKey};
use crate::oauth::dpop::DpopSettings;
use crate::origin::HttpUrl;
use crate::secret::Secret;

/// Where tokens are asked for and how the client authenticates there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: HttpUrl,
    /// The URL as configured or discovered (a signed assertion's default `aud`).
    pub url_text: String,
    pub method: AuthMethod,
}

/// Who asks the token endpoint, and for what by default.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `token_url`, when configured (else discovered from `issuer`).
    pub token_url: Option<HttpUrl>,
    /// `issuer`, when configured, and `discovery_ttl_secs`.
    pub discovery: Option<DiscoverySettings>,
    /// `token_url` exactly as configured, or else `issuer`: names the server in the
    /// cache key.
    pub server_text: String,
    /// The host of `token_url`, or else of `issuer` (for audit lines).
    pub server_host: String,
    /// `client_id`.
    pub id: String,
    /// `grant` (and `jwt_bearer_subject`).
    pub grant: Grant,
    /// `auth_method`.
    pub auth_method: MethodChoice,
    /// `client_secret`, `client_private_key`, `client_assertion`.
    pub credentials: Credentials,
    /// How assertions are made.
    pub assertion: AssertionSettings,
    /// `dpop` and its keys; `None`: off (Bearer tokens).
    pub dpop: Option<DpopSettings>,
    /// `scope`, split.
    pub scope: Vec<String>,
    /// `audience`.
    pub audience: Option<String>,
    /// `resource`, split.
    pub resource: Vec<String>,
}

/// Issuer discovery (RFC 8414, OpenID Connect Discovery).
#[derive(Debug, Clone)]
pub struct DiscoverySettings {
    /// `issuer` exactly as configured: the metadata's `issuer` must equal it.
    pub issuer: String,
    /// `issuer`, parsed (its scheme checked as `token_url`'s is).
    pub issuer_url: HttpUrl,
    /// `discovery_ttl_secs`.
    pub ttl_secs: u64,
    /// `token_endpoint_origin = issuer`: the discovered token endpoint must be on the
    /// issuer's origin.
    pub pin_origin: bool,
}

impl ClientSettings {
    /// The token endpoint and method when both are configured: no discovery needed.
    pub(crate) fn static_endpoint(&self) -> Option<Endpoint> {
        match (&self.token_url, self.auth_method) {
            (Some(url), MethodChoice::Fixed(method)) => Some(Endpoint {
                url: url.clone(),
                url_text: self.server_text.clone(),
                method,
            }),
            _ => None,
        }
    }
}

/// How a token is asked for (`grant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// RFC 6749 §4.4: the client's own credentials.
    ClientCredentials,
    /// RFC 7523 §2.1: an assertion signed with `client_private_key` (`iss` the client
    /// id, `sub` this subject if any, the scopes in its `scope` claim).
    JwtBearer {
        /// `jwt_bearer_subject`.
        subject: Option<String>,
    },
    /// RFC 8693: `subject_token` exchanged for an access token.
    TokenExchange(Box<TokenExchange>),
}

/// `grant = token_exchange`: what is presented and what is asked for.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    /// `subject_token`.
    pub subject_token: SubjectToken,
    /// Whom the subject token is about, for the cache key, worked out once when the
    /// settings are read (`SubjectToken::identity`).
    pub identity: String,
    /// `subject_token_type`.
    pub subject_token_type: String,
    /// `requested_token_type`.
    pub requested_token_type: String,
}

/// Two exchanges are the same when they ask for the same type about the same subject.
impl PartialEq for TokenExchange {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.identity,
            &self.subject_token_type,
            &self.requested_token_type,
        ) == (
            &other.identity,
            &other.subject_token_type,
            &other.requested_token_type,
        )
    }
}

impl Eq for TokenExchange {}

/// The subject token: a JWT (its `exp` checked before each use, its `iss` and `sub`
/// in the cache key), or another kind of token, sent as it is.
#[derive(Debug, Clone)]
pub enum SubjectToken {
    Jwt(FederatedAssertion),
    Opaque(Secret),
}

impl SubjectToken {
    /// Who the token is about, for the cache key: a JWT's `iss` and `sub`, else a
    /// SHA-256 prefix of the token (another token, another cache key).
    pub(crate) fn identity(&self) -> String {
        match self {
            SubjectToken::Jwt(jwt) => jwt.issuer_and_subject.clone(),
            SubjectToken::Opaque(token) => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(token.expose().as_bytes());
                digest[..16].iter().map(|b| format!("{b:02x}")).collect()
            }
        }
    }
}

impl Grant {
    /// The `grant` value (audit lines name it).
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::JwtBearer { .. } => "jwt_bearer",
            Grant::TokenExchange(_) => "token_exchange",
        }
    }

    /// `grant_type` in the token request.
    pub(crate) fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::JwtBearer { .. } => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            Grant::TokenExchange(_) => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// What the grant adds to a cache key: nothing for `client_credentials` (so the
    /// keys of earlier versions stay as they were), the grant and whom the token is
    /// for else (tokens for another subject are another user's): the JWT-bearer
    /// subject, or the token types and the subject token's identity.
    pub(crate) fn cache_part(&self) -> Option<Vec<Option<&str>>> {
        match self {
            Grant::ClientCredentials => None,
            Grant::JwtBearer { subject } => Some(vec![Some(self.as_str()), subject.as_deref()]),
            Grant::TokenExchange(x) => Some(vec![
                Some(self.as_str()),
                Some(&x.subject_token_type),
                Some(&x.requested_token_type),
                Some(&x.identity),
            ]),
        }
    }
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic with the RFC 6749 §2.3.1 form-encoding of id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// An HS256 assertion keyed by the secret (`client_assertion`, RFC 7523 §2.2); the
    /// secret itself is never sent.
    ClientSecretJwt,
    /// An assertion signed with `client_private_key`: no shared secret.
    PrivateKeyJwt,
    /// A federated assertion (`client_assertion`), sent as it is.
    ClientAssertion,
    /// None: only with `grant = jwt_bearer`, whose assertion authenticates the client.
    None,
}

impl AuthMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::ClientAssertion => "client_assertion",
            AuthMethod::None => "none",
        }
    }

    /// The name servers list in `token_endpoint_auth_methods_supported` (RFC 8414): a
    /// federated assertion is a `private_key_jwt` to the server.
    pub(crate) fn server_name(self) -> &'static str {
        match self {
            AuthMethod::ClientAssertion => "private_key_jwt",
            m => m.as_str(),
        }
    }

    /// Strongest first: what `auth_method = auto` prefers among the configured ones.
    pub(crate) const PREFERENCE: [AuthMethod; 5] = [
        AuthMethod::PrivateKeyJwt,
        AuthMethod::ClientAssertion,
        AuthMethod::ClientSecretJwt,
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
    ];
}

/// `auth_method`: one method, or `auto` (chosen from the server's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodChoice {
    Fixed(AuthMethod),
    Auto,
}

impl MethodChoice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MethodChoice::Fixed(m) => m.as_str(),
            MethodChoice::Auto => "auto",
        }
    }
}

/// The credentials configured; `auth_method` says which one is used.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `client_secret`.
    pub client_secret: Option<Secret>,
    /// `client_private_key`, parsed once.
    pub private_key: Option<PrivateKey>,
    /// `client_assertion`, its `exp` read.
    pub federated: Option<FederatedAssertion>,
}

impl Credentials {
    /// Whether the credential `method` needs is configured.
    pub(crate) fn has(&self, method: AuthMethod) -> bool {
        match method {
            AuthMethod::PrivateKeyJwt => self.private_key.is_some(),
            AuthMethod::ClientAssertion => self.federated.is_some(),
            AuthMethod::None => true,
            _ => self.client_secret.is_some(),
        }
    }

    /// The `alg` of the assertion `method` signs (none: it signs nothing, or the
    /// assertion is not ours).
    pub(crate) fn alg(&self, method: AuthMethod) -> Option<&'static str> {
        match method {
            AuthMethod::PrivateKeyJwt => self.private_key.as_ref().map(|k| k.alg().as_str()),
            AuthMethod::ClientSecretJwt => Some("HS256"),
            _ => None,
        }
    }
}

/// How client assertions are made.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    /// `client_assertion_lifetime_secs`.
    pub lifetime_secs: u64,
    /// `client_assertion_typ`.
    pub typ: &'static str,
    /// `client_key_id`.
    pub key_id: Option<String>,
    /// `client_assertion_audience = issuer`: `aud` is the issuer, not the token
    /// endpoint.
    pub audience_is_issuer: bool,
    /// The `x5t#S256` of `client_certificate` (checked to certify the private key).
    pub x5t_s256: Option<String>,
}

impl AssertionSettings {
    /// What a signed assertion's header names its key by.
    pub(crate) fn key_ids(&self) -> super::client_auth::KeyIds<'_> {
        super::client_auth::KeyIds {
            kid: self.key_id.as_deref(),
            x5t_s256: self.x5t_s256.as_deref(),
        }
    }
}
