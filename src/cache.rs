//! Cache keys and entries. Entries at rest are encrypted and authenticated with
//! XChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the client credential,
//! with the full cache key as associated data: an entry written for another key, by
//! another client, or tampered with does not decrypt and counts as a miss.

use crate::config::Settings;
use crate::secret::{AccessToken, Secret, hex};
use crate::token_request::TokenParams;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Prefix of every key we write: a namespace (Spin's Redis store shares one keyspace
/// between all apps) and the entry format version.
pub const KEY_PREFIX: &str = "oauth2-token-provider:v1:";
const MAGIC: &[u8; 4] = b"TPC1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Everything that makes two tokens interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Canonical, unambiguous text of the key's parts (a JSON array).
    canonical: String,
}

impl CacheKey {
    pub fn new(settings: &Settings, params: &TokenParams) -> Self {
        let parts = serde_json::json!([
            "v1",
            settings.token_url_text,
            settings.client_id,
            settings.auth_method.as_str(),
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
        let parts = serde_json::json!([
            "v1",
            "cooldown",
            settings.token_url_text,
            settings.client_id,
            settings.auth_method.as_str(),
        ]);
        CacheKey {
            canonical: parts.to_string(),
        }
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

/// A cached token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "token_serde")]
    pub access_token: AccessToken,
    pub scopes: Vec<String>,
    /// Unix milliseconds (when the response arrived).
    pub issued_at_ms: u64,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
}

mod token_serde {
    use crate::secret::AccessToken;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &AccessToken, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.expose())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AccessToken, D::Error> {
        Ok(AccessToken::new(String::deserialize(d)?))
    }
}

impl Entry {
    pub fn lifetime_ms(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.issued_at_ms)
    }

    /// Serve until `expires_at - skew`, where skew is the configured one but never more
    /// than half the token's lifetime (a 60 s skew must not discard a 90 s token at once).
    pub fn usable_until_ms(&self, skew_secs: u64) -> u64 {
        let skew_ms = skew_secs.saturating_mul(1000).min(self.lifetime_ms() / 2);
        self.expires_at_ms.saturating_sub(skew_ms)
    }

    pub fn is_usable(&self, now_ms: u64, skew_secs: u64) -> bool {
        now_ms < self.usable_until_ms(skew_secs)
    }

    /// Start of the refresh-ahead window: the last `percent` % of the lifetime before
    /// `usable_until`. `jitter_permille` (0..1000) moves this instance's start later
    /// by up to half the window, so instances do not all try at the same moment.
    pub fn refresh_from_ms(&self, skew_secs: u64, percent: u64, jitter_permille: u64) -> u64 {
        let window = self.lifetime_ms() / 100 * percent.min(100)
            + self.lifetime_ms() % 100 * percent.min(100) / 100;
        let later = window / 2 * jitter_permille.min(999) / 1000;
        self.usable_until_ms(skew_secs)
            .saturating_sub(window)
            .saturating_add(later)
    }

    /// Usable, but inside this instance's refresh-ahead window.
    pub fn wants_refresh(
        &self,
        now_ms: u64,
        skew_secs: u64,
        percent: u64,
        jitter_permille: u64,
    ) -> bool {
        percent > 0 && now_ms >= self.refresh_from_ms(skew_secs, percent, jitter_permille)
    }

    /// `expires_at` in Unix seconds, as the WIT `access-token` carries it.
    pub fn expires_at_secs(&self) -> u64 {
        self.expires_at_ms / 1000
    }
}

/// Why a stored entry was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not ours or not this version (wrong magic, too short).
    Format,
    /// Does not authenticate: tampered, other key, other credential.
    Undecryptable,
    /// Decrypted but the payload does not parse.
    Corrupt,
}

impl Rejected {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Format => "unknown-format",
            Rejected::Undecryptable => "undecryptable",
            Rejected::Corrupt => "corrupt",
        }
    }
}

fn cipher(secret: &Secret, key: &CacheKey) -> XChaCha20Poly1305 {
    let hk = hkdf::Hkdf::<Sha256>::new(
        Some(b"oauth2-token-provider cache v1"),
        secret.expose().as_bytes(),
    );
    let mut okm = [0u8; 32];
    hk.expand(key.canonical.as_bytes(), &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    XChaCha20Poly1305::new(&okm.into())
}

/// Encrypt `entry` for the store. `nonce` must be 24 fresh random bytes.
pub fn seal(entry: &Entry, secret: &Secret, key: &CacheKey, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    seal_value(entry, secret, key, nonce)
}

/// Decrypt a stored entry; anything wrong is a `Rejected`, never a panic.
pub fn open(bytes: &[u8], secret: &Secret, key: &CacheKey) -> Result<Entry, Rejected> {
    let entry: Entry = open_value(bytes, secret, key)?;
    if entry.expires_at_ms < entry.issued_at_ms {
        return Err(Rejected::Corrupt);
    }
    Ok(entry)
}

/// Encrypt any value (as JSON) for the store under `key`.
pub fn seal_value<T: Serialize>(
    value: &T,
    secret: &Secret,
    key: &CacheKey,
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let plaintext = serde_json::to_vec(value).expect("cache values serialise");
    let ct = cipher(secret, key)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: key.canonical.as_bytes(),
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypt a value sealed by [`seal_value`] under `key`.
pub fn open_value<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    secret: &Secret,
    key: &CacheKey,
) -> Result<T, Rejected> {
    if bytes.len() < MAGIC.len() + NONCE_LEN + TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Rejected::Format);
    }
    let (nonce, ct) = bytes[MAGIC.len()..].split_at(NONCE_LEN);
    let plaintext = cipher(secret, key)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: key.canonical.as_bytes(),
            },
        )
        .map_err(|_| Rejected::Undecryptable)?;
    serde_json::from_slice(&plaintext).map_err(|_| Rejected::Corrupt)
}

/// The token endpoint rejected the credentials: fail fast until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    pub error: String,
    pub description: Option<String>,
    pub status: u16,
    pub until_ms: u64,
}

/// This instance's own cache. In Spin every request gets a fresh instance, so it helps
/// only hosts that reuse instances; the key-value store is what carries across.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: HashMap<CacheKey, Entry>,
    /// The last credential rejection seen by this instance.
    pub cooldown: Option<Cooldown>,
    /// Renewals that failed: no new attempt before this time (Unix ms).
    pub refresh_paused: HashMap<CacheKey, u64>,
}

impl MemoryCache {
    pub fn get(&self, key: &CacheKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn put(&mut self, key: CacheKey, entry: Entry) {
        // Bound memory: drop what has expired before adding.
        if self.entries.len() >= 256 {
            let now = entry.issued_at_ms;
            self.entries.retain(|_, e| e.expires_at_ms > now);
            if self.entries.len() >= 256 {
                self.entries.clear();
            }
        }
        self.entries.insert(key, entry);
    }

    pub fn remove(&mut self, key: &CacheKey) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_request::TokenRequest;

    fn settings(secret: &str) -> Settings {
        let map = std::collections::HashMap::from([
            ("token_url", "https://auth.example.com/token"),
            ("client_id", "svc"),
            ("client_secret", secret),
        ]);
        Settings::load(|k| Ok(map.get(k).map(|v| v.to_string()))).unwrap()
    }

    fn key_for(s: &Settings, scopes: &[&str]) -> CacheKey {
        let req = TokenRequest {
            scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        CacheKey::new(s, &TokenParams::resolve(&req, s).unwrap())
    }

    fn entry() -> Entry {
        Entry {
            access_token: AccessToken::new("tok-123"),
            scopes: vec!["read".into()],
            issued_at_ms: 1_000_000,
            expires_at_ms: 4_600_000,
        }
    }

    #[test]
    fn sealed_entry_round_trips() {
        let s = settings("secret");
        let k = key_for(&s, &["read"]);
        let sealed = seal(&entry(), &s.client_secret, &k, [7; 24]);
        assert_eq!(open(&sealed, &s.client_secret, &k).unwrap(), entry());
        // The token is not visible in the stored bytes.
        assert!(!sealed.windows(7).any(|w| w == b"tok-123"));
    }

    #[test]
    fn scope_order_and_duplicates_share_a_key_but_other_parts_do_not() {
        let s = settings("secret");
        assert_eq!(key_for(&s, &["b", "a", "a"]), key_for(&s, &["a b"]));
        assert_ne!(key_for(&s, &["a"]), key_for(&s, &["a", "b"]));
        assert_ne!(key_for(&s, &["ab"]), key_for(&s, &["a", "b"]));
        let post = {
            let map = std::collections::HashMap::from([
                ("token_url", "https://auth.example.com/token"),
                ("client_id", "svc"),
                ("client_secret", "secret"),
                ("auth_method", "client_secret_post"),
            ]);
            Settings::load(|k| Ok(map.get(k).map(|v| v.to_string()))).unwrap()
        };
        assert_ne!(key_for(&s, &["a"]), key_for(&post, &["a"]));
        let k = key_for(&s, &["a"]).store_key();
        assert!(
            k.starts_with(KEY_PREFIX) && k.len() == KEY_PREFIX.len() + 64,
            "{k}"
        );
    }

    #[test]
    fn truncated_bitflipped_foreign_and_other_secret_entries_are_rejected() {
        let s = settings("secret");
        let k = key_for(&s, &["read"]);
        let sealed = seal(&entry(), &s.client_secret, &k, [9; 24]);
        for cut in [0, 3, 4, 27, 43, sealed.len() - 1] {
            assert!(
                open(&sealed[..cut], &s.client_secret, &k).is_err(),
                "cut at {cut}"
            );
        }
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert!(open(&flipped, &s.client_secret, &k).is_err(), "flip at {i}");
        }
        let other_key = key_for(&s, &["write"]);
        assert_eq!(
            open(&sealed, &s.client_secret, &other_key),
            Err(Rejected::Undecryptable)
        );
        assert_eq!(
            open(&sealed, &Secret::new("rotated"), &k),
            Err(Rejected::Undecryptable)
        );
        let mut old_version = sealed.clone();
        old_version[3] = b'0';
        assert_eq!(
            open(&old_version, &s.client_secret, &k),
            Err(Rejected::Format)
        );
        assert_eq!(open(b"", &s.client_secret, &k), Err(Rejected::Format));
    }

    #[test]
    fn skew_is_capped_at_half_the_lifetime() {
        let e = entry(); // 3600 s lifetime
        assert_eq!(e.usable_until_ms(60), 4_540_000);
        assert!(e.is_usable(4_539_999, 60));
        assert!(!e.is_usable(4_540_000, 60));
        let short = Entry {
            issued_at_ms: 1_000_000,
            expires_at_ms: 1_090_000,
            ..entry()
        };
        assert_eq!(short.usable_until_ms(60), 1_045_000);
        let zero = Entry {
            issued_at_ms: 1_000_000,
            expires_at_ms: 1_000_000,
            ..entry()
        };
        assert!(!zero.is_usable(1_000_000, 60));
    }

    #[test]
    fn refresh_window_is_the_last_percent_of_the_lifetime_with_jitter_inside_it() {
        let e = entry(); // 3600 s lifetime, usable until 4540 s
        // 10 % of 3600 s = 360 s before usable_until.
        assert_eq!(e.refresh_from_ms(60, 10, 0), 4_180_000);
        // The most jitter moves the start by (almost) half the window, never past it.
        assert_eq!(e.refresh_from_ms(60, 10, 999), 4_180_000 + 179_820);
        assert!(!e.wants_refresh(4_179_999, 60, 10, 0));
        assert!(e.wants_refresh(4_180_000, 60, 10, 0));
        assert!(!e.wants_refresh(4_300_000, 60, 0, 0), "0 % disables");
        // Short tokens: 3 s lifetime, no skew, 20 % → window starts at 2.4 s.
        let short = Entry {
            issued_at_ms: 10_000,
            expires_at_ms: 13_000,
            ..entry()
        };
        assert_eq!(short.refresh_from_ms(0, 20, 0), 12_400);
        assert_eq!(short.expires_at_secs(), 13);
    }

    #[test]
    fn memory_cache_stays_bounded() {
        let s = settings("secret");
        let mut m = MemoryCache::default();
        for i in 0..1000 {
            m.put(
                key_for(&s, &[&format!("s{i}")]),
                Entry {
                    issued_at_ms: i,
                    expires_at_ms: i + 10,
                    ..entry()
                },
            );
        }
        assert!(m.entries.len() <= 256);
        assert!(m.get(&key_for(&s, &["s999"])).is_some());
    }
}
