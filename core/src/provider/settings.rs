//! The provider's settings, each group owned by the part that uses it: the OAuth
//! client (`oauth::client`), the cache and its sharing, retries, outgoing HTTP and the
//! audit log. `config` reads the keys and assembles them.

use crate::audit::AuditSettings;
use crate::oauth::client::ClientSettings;
use crate::oauth::request::TokenParams;
use crate::oauth::response::Lifetimes;
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::store::keys::{CacheKey, KeyNames};

/// Everything `get-token` and `invalidate` need.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub client: ClientSettings,
    pub cache: CacheSettings,
    pub retry: RetrySettings,
    pub http: HttpSettings,
    pub audit: AuditSettings,
}

/// How tokens are kept and shared between instances.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `kv_store`; `None`: no shared cache, memory only.
    pub kv_store: Option<String>,
    /// `expiry_skew_secs`.
    pub expiry_skew_secs: u64,
    /// `default_expires_in_secs` and `max_expires_in_secs`.
    pub lifetimes: Lifetimes,
    /// `refresh_ahead_percent`; 0: no refresh ahead.
    pub refresh_ahead_percent: u64,
    /// `lease_ms`; 0: no single-flight lease.
    pub lease_ms: u64,
    /// `memory_max_age_ms`: how long a token in memory is served without looking at
    /// the store again (with a store).
    pub memory_max_age_ms: u64,
    /// `min_token_age_secs` in ms: a token this young is kept after a 401 from the
    /// origin whose 401 dropped the one before it (`provider::rejected`).
    pub min_token_age_ms: u64,
    /// What keys the store's names and sealing: the private key's PEM, the client
    /// secret, or with a federated assertion `cache_secret` (`config::auth`).
    pub secret: Secret,
    /// The store's naming keys, derived from `secret` (`store::keys`).
    pub key_names: KeyNames,
}

/// How failed token requests are retried and remembered.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// `max_retries`, `retry_base_ms`, `retry_max_delay_ms`.
    pub policy: RetryPolicy,
    /// `token_deadline_ms`.
    pub token_deadline_ms: u64,
    /// `failure_cooldown_secs`; 0: no cooldown.
    pub failure_cooldown_secs: u64,
}

/// Every outgoing request, to the token endpoint and to APIs.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `http_timeout_ms`.
    pub timeout_ms: u64,
    /// `allow_insecure_http`.
    pub allow_insecure_http: bool,
}

impl CacheSettings {
    /// How far another instance's wall clock may run ahead of this one's for what it
    /// wrote to be believed (`store::ahead`): `expiry_skew_secs`, at least 1 s.
    pub(crate) fn clock_tolerance_ms(&self) -> u64 {
        self.expiry_skew_secs
            .saturating_mul(1000)
            .max(crate::store::ahead::MIN_TOLERANCE_MS)
    }
}

impl ProviderSettings {
    /// The cache key of a token for `params`.
    pub fn cache_key(&self, params: &TokenParams) -> CacheKey {
        CacheKey::new(&self.client, self.cache.key_names, params)
    }

    /// The key of everything this client shares whatever it asks for (failures).
    pub fn client_key(&self) -> CacheKey {
        CacheKey::client(&self.client, self.cache.key_names)
    }

    /// The key of `issuer`'s discovered metadata.
    pub(crate) fn discovery_key(&self, issuer: &str) -> CacheKey {
        CacheKey::discovery(self.cache.key_names, issuer)
    }
}
