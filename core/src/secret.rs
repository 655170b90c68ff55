//! Secret values that cannot be printed by accident.

use std::fmt;

/// A client secret (or any other credential). `Debug` prints `Secret(***)`; there is no
/// `Display`, so it cannot end up in a format string without an explicit `expose()`.
#[derive(Clone)]
pub struct Secret {
    value: String,
    /// The key that seals store values, derived on first use (`store::seal`): once per
    /// instance, not once per value.
    sealing: std::sync::OnceLock<[u8; 32]>,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            sealing: std::sync::OnceLock::new(),
        }
    }

    /// The secret itself, for the few places that must send it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `derive(self)`, computed once and kept with the secret.
    pub(crate) fn sealing_key(&self, derive: impl FnOnce(&Secret) -> [u8; 32]) -> &[u8; 32] {
        self.sealing.get_or_init(|| derive(self))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An access token. `Debug` shows only its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short one-way fingerprint for logs: the first 12 hex digits of SHA-256.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(sha256:{})", self.fingerprint())
    }
}

/// First 12 hex digits of SHA-256 of `bytes`: enough to tell tokens apart in logs,
/// far too little to recover or forge one.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    hex(&digest[..6])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
    }

    #[test]
    fn token_debug_shows_only_fingerprint() {
        let t = AccessToken::new("eyJhbGciOi.secret-token");
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert_eq!(shown, format!("AccessToken(sha256:{})", t.fingerprint()));
        assert_eq!(t.fingerprint().len(), 12);
    }

    #[test]
    fn fingerprint_is_sha256_prefix() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(fingerprint(b"abc"), "ba7816bf8f01");
    }
}
