//! token-provider-core: OAuth2 client-credentials tokens without I/O.
//!
//! The protocol (`oauth`), the store format (`store`), the lookup policy (`provider`),
//! sending with a token (`send`) and the settings that assemble them (`config`). Every
//! I/O goes through the [`Platform`] trait, which the component crates implement with
//! WASI calls and the unit tests fake. docs/architecture.md is the map; the layers and
//! the rule that no module imports one above it are checked by `tests/layers.rs`.
//!
//! What the crate promises is the list of re-exports below: what a component's
//! adapters need. [`internal`] opens the machinery to the fuzz targets, the fleet
//! tests and the benchmarks, and promises nothing.
#![deny(unreachable_pub)]

mod audit;
mod config;
mod error;
mod http_date;
mod http_types;
mod oauth;
mod origin;
mod platform;
mod provider;
mod retry;
mod secret;
mod send;
mod store;
/// The `http::Uri` cross-check of the URL parser (tests and the `url_origin` fuzz
/// target only: feature `uri-reference`).
#[cfg(any(test, feature = "uri-reference"))]
pub mod uri_reference;

#[cfg(test)]
mod testing;

// Settings: read once per instance from the host's configuration.
pub use config::keys::{KEYS, Key, Kind, UsedBy};
pub use config::{Reading, Settings};
// I/O: what an adapter implements, and what crosses it.
pub use http_types::{HttpOptions, HttpRequest, HttpResponse};
pub use platform::{Platform, ready};
// Errors, and the one way to shorten a foreign text for an error.
pub use error::{Error, OAuthError, sanitize};
// Tokens: asking for one, and what comes back.
pub use oauth::dpop::TokenType;
pub use oauth::request::TokenRequest;
pub use provider::instance::MemoryCache;
pub use provider::{IssuedToken, Provider, Renewal, Source};
pub use secret::AccessToken;
// Sending with a token: the authorized client and the interceptor's decisions.
pub use origin::{Origin, Scheme};
pub use send::authorized::{ApiRequest, RETRIED_AFTER_401, send};
pub use send::challenge::RenewOn401;
pub use send::intercept::{
    AfterAnswer, Body, BodyPlan, Decision, RETRIED_TWICE_AFTER_401, Sent, after_answer, body_plan,
    decide, retry_with_nonce,
};
pub use send::proof::{keep_nonce, nonce_asked, proof_for, token_headers};
/// The settings each part of the core defines, as [`Settings`] assembles them.
pub mod settings {
    pub use crate::audit::{AuditSettings, Level};
    pub use crate::oauth::client::{
        AssertionSettings, AuthMethod, ClientSettings, Credentials, DiscoverySettings, MethodChoice,
    };
    pub use crate::oauth::response::Lifetimes;
    pub use crate::provider::settings::{
        CacheSettings, HttpSettings, ProviderSettings, RetrySettings,
    };
    pub use crate::retry::RetryPolicy;
    pub use crate::send::authorized::SendSettings;
    pub use crate::send::routes::{InterceptSettings, Route, Unmatched};
}

// The audit log's vocabulary (adapters write their own lines with it).
pub use audit::{Event, Outcome};

/// The machinery, for the fuzz targets, the fleet tests, the hostile-input catalog and
/// the benchmarks: parsers, the sealed store format, cache keys, the lease record.
/// Not part of what the crate promises.
pub mod internal {
    pub use crate::oauth::client::Endpoint;
    pub use crate::oauth::client_auth::{self, Alg, Claims, FederatedAssertion, PrivateKey};
    pub use crate::oauth::dpop;
    pub use crate::oauth::metadata::{self, MAX_DOCUMENT_BYTES, MAX_LIST, Problem};
    pub use crate::oauth::metadata::{Fetched, Metadata};
    pub use crate::oauth::request::{TokenParams, parse_resource};
    pub use crate::oauth::response::{self, MAX_TOKEN_RESPONSE_BYTES};
    pub use crate::oauth::service_account::ServiceAccount;
    pub use crate::origin::{HttpUrl, parse_origin, parse_url};
    pub use crate::provider::failure::Cooldown;
    pub use crate::provider::lease::Holder;
    pub use crate::secret::Secret;
    pub use crate::send::authorized::{bound_to, prepare};
    pub use crate::send::intercept::{APP_AUTHORIZATION, NO_ORIGIN, NOT_ROUTED};
    pub use crate::store::entry::{Binding, Entry};
    pub use crate::store::keys::{CacheKey, KEY_PREFIX, KeyNames, roles};
    pub use crate::store::record::{Fields, Record};
    pub use crate::store::seal::{self, Rejected};
}
