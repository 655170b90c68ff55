//! Values at rest are encrypted and authenticated with XChaCha20-Poly1305 under a key
//! derived (HKDF-SHA256) from the client credential, once per instance, with the full
//! cache key and the value's role as associated data (`CacheKey::context`): a value
//! written for another key or role, by another client, or tampered with does not open
//! and counts as absent. (A fresh random 24-byte nonce per value makes one key for
//! every value safe.)
//!
//! Format: `TPC1` ‖ 24-byte nonce ‖ ciphertext+tag of the value's JSON.

use crate::platform::Platform;
use crate::secret::Secret;
use crate::store::entry::Entry;
use crate::store::keys::{CacheKey, roles};
use crate::store::record::{Fields, Record};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"TPC1";
pub(crate) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a stored value was not used.
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejected::Format => "unknown-format",
            Rejected::Undecryptable => "undecryptable",
            Rejected::Corrupt => "corrupt",
        }
    }
}

/// 24 fresh random bytes from the host: one nonce per sealed value.
pub(crate) fn nonce(platform: &impl Platform) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    platform.random_bytes(&mut nonce);
    nonce
}

fn cipher(secret: &Secret) -> XChaCha20Poly1305 {
    let key = secret.sealing_key(|s| {
        let hk = hkdf::Hkdf::<Sha256>::new(
            Some(b"oauth2-token-provider store v2"),
            s.expose().as_bytes(),
        );
        let mut okm = [0u8; 32];
        hk.expand(b"seal", &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    });
    XChaCha20Poly1305::new(key.into())
}

/// Encrypt `entry` for the store. `nonce` must be 24 fresh random bytes.
pub fn seal(entry: &Entry, secret: &Secret, key: &CacheKey, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    seal_value(entry, secret, &key.context(roles::TOKEN), nonce)
}

/// Decrypt a stored entry; anything wrong is a `Rejected`, never a panic.
pub fn open(bytes: &[u8], secret: &Secret, key: &CacheKey) -> Result<Entry, Rejected> {
    let entry: Entry = open_value(bytes, secret, &key.context(roles::TOKEN))?;
    if entry.expires_at_ms < entry.issued_at_ms {
        return Err(Rejected::Corrupt);
    }
    Ok(entry)
}

/// Encrypt any value (as JSON) for the store in `context` (`CacheKey::context`).
pub fn seal_value<T: Serialize>(
    value: &T,
    secret: &Secret,
    context: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let plaintext =
        serde_json::to_vec(value).unwrap_or_else(|_| unreachable!("cache values serialise"));
    seal_bytes(&plaintext, secret, context, nonce)
}

/// The sealed form of `plaintext` (one copy of this code, whatever the value's type).
fn seal_bytes(
    plaintext: &[u8],
    secret: &Secret,
    context: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let ct = cipher(secret)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypt a value sealed by [`seal_value`] in `context`.
pub fn open_value<T: Record>(bytes: &[u8], secret: &Secret, context: &[u8]) -> Result<T, Rejected> {
    let value = open_json(bytes, secret, context)?;
    let fields = Fields::of(&value).ok_or(Rejected::Corrupt)?;
    T::from_fields(&fields).ok_or(Rejected::Corrupt)
}

/// The JSON inside a sealed value (one copy of this code, whatever the value's type).
fn open_json(bytes: &[u8], secret: &Secret, context: &[u8]) -> Result<Value, Rejected> {
    if bytes.len() < MAGIC.len() + NONCE_LEN + TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Rejected::Format);
    }
    let (nonce, ct) = bytes[MAGIC.len()..].split_at(NONCE_LEN);
    let plaintext = cipher(secret)
        .decrypt(
            &XNonce::try_from(nonce).expect("split at NONCE_LEN"),
            Payload {
                msg: ct,
                aad: context,
            },
        )
        .map_err(|_| Rejected::Undecryptable)?;
    serde_json::from_slice(&plaintext).map_err(|_| Rejected::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{entry, key_for, settings};

    #[test]
    fn sealed_entry_round_trips() {
        let s = settings(&[]);
        let k = key_for(&s, &["read"]);
        let sealed = seal(&entry(), &s.cache.secret, &k, [7; 24]);
        assert_eq!(open(&sealed, &s.cache.secret, &k).unwrap(), entry());
        // The token is not visible in the stored bytes.
        assert!(!sealed.windows(7).any(|w| w == b"tok-123"));
    }

    #[test]
    fn truncated_bitflipped_foreign_and_other_secret_entries_are_rejected() {
        let s = settings(&[]);
        let k = key_for(&s, &["read"]);
        let sealed = seal(&entry(), &s.cache.secret, &k, [9; 24]);
        for cut in [0, 3, 4, 27, 43, sealed.len() - 1] {
            assert!(
                open(&sealed[..cut], &s.cache.secret, &k).is_err(),
                "cut at {cut}"
            );
        }
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert!(open(&flipped, &s.cache.secret, &k).is_err(), "flip at {i}");
        }
        let other_key = key_for(&s, &["write"]);
        assert_eq!(
            open(&sealed, &s.cache.secret, &other_key),
            Err(Rejected::Undecryptable)
        );
        assert_eq!(
            open(&sealed, &Secret::new("rotated"), &k),
            Err(Rejected::Undecryptable)
        );
        let mut old_version = sealed.clone();
        old_version[3] = b'0';
        assert_eq!(
            open(&old_version, &s.cache.secret, &k),
            Err(Rejected::Format)
        );
        assert_eq!(open(b"", &s.cache.secret, &k), Err(Rejected::Format));
        // Sealed for another role of the same key: does not open as a token.
        let pause = seal_value(&entry(), &s.cache.secret, &k.context("pause"), [1; 24]);
        assert_eq!(
            open(&pause, &s.cache.secret, &k),
            Err(Rejected::Undecryptable)
        );
    }

    #[test]
    fn a_record_with_a_missing_or_mistyped_field_is_corrupt() {
        let s = settings(&[]);
        let k = key_for(&s, &["read"]);
        let ctx = k.context(roles::TOKEN);
        for json in [
            serde_json::json!({"access_token": "t", "scopes": [], "issued_at_ms": 1}),
            serde_json::json!({"access_token": "t", "scopes": [1], "issued_at_ms": 1, "expires_at_ms": 2}),
            serde_json::json!({"access_token": "t", "scopes": [], "issued_at_ms": 1.5, "expires_at_ms": 2}),
            serde_json::json!({"access_token": 7, "scopes": [], "issued_at_ms": 1, "expires_at_ms": 2}),
            serde_json::json!(["not", "an", "object"]),
        ] {
            let sealed = seal_value(&json, &s.cache.secret, &ctx, [2; 24]);
            assert_eq!(
                open(&sealed, &s.cache.secret, &k),
                Err(Rejected::Corrupt),
                "{json}"
            );
        }
        // Unknown fields are ignored, as before.
        let extra = serde_json::json!({"access_token": "t", "scopes": ["a"], "issued_at_ms": 1, "expires_at_ms": 2, "new": true});
        let sealed = seal_value(&extra, &s.cache.secret, &ctx, [2; 24]);
        assert_eq!(open(&sealed, &s.cache.secret, &k).unwrap().scopes, ["a"]);
    }

    #[test]
    fn settings_can_be_shared_between_threads() {
        fn sync<T: Sync + Send>() {}
        sync::<crate::config::Settings>();
    }
}
