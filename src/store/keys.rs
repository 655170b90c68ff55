//! Every key the component writes to the shared store, each built by one function.
//!
//! | key | holds |
//! |---|---|
//! | `<prefix><sha256 of the cache key>` | the token entry, sealed ([`CacheKey::store_key`]) |
//! | `<entry key>:lease:<slot>` | a single-flight counter ([`lease_slot`]) |
//! | `<entry key>:refresh-paused` | end of a renewal pause, Unix ms as text ([`refresh_pause`]) |
//! | `<prefix><sha256 of the client's cooldown key>` | a failure cooldown, sealed ([`CacheKey::cooldown`]) |
//!
//! The prefix is a namespace (Spin's Redis store shares one keyspace between all apps)
//! and the format version. Changing any of these orphans every cached token.

use crate::config::Settings;
use crate::secret::hex;
use crate::token_request::TokenParams;
use sha2::{Digest, Sha256};

/// Prefix of every key we write.
pub const KEY_PREFIX: &str = "oauth2-token-provider:v1:";

/// Everything that makes two tokens interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Canonical, unambiguous text of the key's parts (a JSON array).
    canonical: String,
}

impl CacheKey {
    pub fn new(settings: &Settings, params: &TokenParams) -> Self {
        let c = &settings.client;
        let parts = serde_json::json!([
            "v1",
            c.token_url_text,
            c.id,
            c.auth_method.as_str(),
            params.scopes,
            params.audience,
            params.resources,
        ]);
        CacheKey {
            canonical: parts.to_string(),
        }
    }

    /// The key of the failure cooldown shared by every token of one client (token URL,
    /// client id, auth method): wrong credentials are wrong for every scope.
    pub fn cooldown(settings: &Settings) -> Self {
        let c = &settings.client;
        let parts = serde_json::json!([
            "v1",
            "cooldown",
            c.token_url_text,
            c.id,
            c.auth_method.as_str(),
        ]);
        CacheKey {
            canonical: parts.to_string(),
        }
    }

    /// The canonical text: the sealing key and associated data of this key's value.
    pub(crate) fn canonical(&self) -> &[u8] {
        self.canonical.as_bytes()
    }

    /// The key in the key-value store: prefix + SHA-256 of the canonical text, so
    /// scopes and client ids are not readable from the key names.
    pub fn store_key(&self) -> String {
        format!(
            "{KEY_PREFIX}{}",
            hex(&Sha256::digest(self.canonical.as_bytes()))
        )
    }
}

/// The single-flight counter of time slot `slot` for the entry at `entry_key`.
pub fn lease_slot(entry_key: &str, slot: u64) -> String {
    format!("{entry_key}:lease:{slot}")
}

/// The refresh pause of the entry of `key`.
pub fn refresh_pause(key: &CacheKey) -> String {
    format!("{}:refresh-paused", key.store_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{key_for, settings};

    #[test]
    fn scope_order_and_duplicates_share_a_key_but_other_parts_do_not() {
        let s = settings(&[]);
        assert_eq!(key_for(&s, &["b", "a", "a"]), key_for(&s, &["a b"]));
        assert_ne!(key_for(&s, &["a"]), key_for(&s, &["a", "b"]));
        assert_ne!(key_for(&s, &["ab"]), key_for(&s, &["a", "b"]));
        let post = settings(&[("auth_method", "client_secret_post")]);
        assert_ne!(key_for(&s, &["a"]), key_for(&post, &["a"]));
        let k = key_for(&s, &["a"]).store_key();
        assert!(
            k.starts_with(KEY_PREFIX) && k.len() == KEY_PREFIX.len() + 64,
            "{k}"
        );
    }

    #[test]
    fn the_store_layout_is_the_v1_format() {
        // These strings are the store format: a change here orphans every cached token.
        let s = settings(&[]);
        let key = key_for(&s, &["read"]);
        let entry = key.store_key();
        assert_eq!(lease_slot(&entry, 7), format!("{entry}:lease:7"));
        assert_eq!(refresh_pause(&key), format!("{entry}:refresh-paused"));
        let cooldown = CacheKey::cooldown(&s).store_key();
        assert!(cooldown.starts_with(KEY_PREFIX) && cooldown != entry);
    }
}
