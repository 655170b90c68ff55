//! A cached token and the arithmetic of its windows: usable until `expires_at` minus
//! the skew, and renewed ahead inside the last part of that.

use crate::oauth::dpop::{DpopKey, TokenType};
use crate::secret::AccessToken;
use crate::store::record::{Fields, Record};
use serde::Serialize;

/// A cached token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    #[serde(with = "token_serde")]
    pub access_token: AccessToken,
    pub scopes: Vec<String>,
    /// Unix milliseconds (when the token request was sent).
    pub issued_at_ms: u64,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
    /// A DPoP token's binding (`token_type` `DPoP`); `None`: a Bearer token. Stored as
    /// `jkt` (no field for a Bearer token, as every earlier version wrote it).
    #[serde(
        rename = "jkt",
        skip_serializing_if = "Option::is_none",
        serialize_with = "binding_serde::serialize"
    )]
    pub dpop: Option<Binding>,
}

/// The key a DPoP token is bound to: its thumbprint (stored) and, once this instance
/// has it, the key itself (never stored with the token: a generated key has a record
/// of its own, `provider::dpop`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The key's JWK thumbprint, as the token request's proof carried it.
    pub jkt: String,
    /// The key, when this instance holds it.
    pub key: Option<DpopKey>,
}

mod binding_serde {
    use crate::store::entry::Binding;
    use serde::Serializer;
    pub(crate) fn serialize<S: Serializer>(b: &Option<Binding>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&b.jkt),
            None => s.serialize_none(),
        }
    }
}

mod token_serde {
    use crate::secret::AccessToken;
    use serde::Serializer;
    pub(crate) fn serialize<S: Serializer>(t: &AccessToken, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.expose())
    }
}

impl Record for Entry {
    fn from_fields(f: &Fields) -> Option<Self> {
        Some(Entry {
            access_token: AccessToken::new(f.string("access_token")?),
            scopes: f.strings("scopes")?,
            issued_at_ms: f.u64("issued_at_ms")?,
            expires_at_ms: f.u64("expires_at_ms")?,
            dpop: match f.value("jkt") {
                None => None,
                Some(_) => Some(Binding {
                    jkt: f.string("jkt")?,
                    key: None,
                }),
            },
        })
    }
}

impl Entry {
    /// `DPoP` for a bound token, else `Bearer`.
    pub fn token_type(&self) -> TokenType {
        match self.dpop {
            Some(_) => TokenType::DPoP,
            None => TokenType::Bearer,
        }
    }

    pub(crate) fn lifetime_ms(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.issued_at_ms)
    }

    /// Serve until `expires_at - skew`, where skew is the configured one but never more
    /// than half the token's lifetime (a 60 s skew must not discard a 90 s token at once).
    pub(crate) fn usable_until_ms(&self, skew_secs: u64) -> u64 {
        let skew_ms = skew_secs.saturating_mul(1000).min(self.lifetime_ms() / 2);
        self.expires_at_ms.saturating_sub(skew_ms)
    }

    /// How far (ms) this entry, read at `now_ms`, would be usable beyond its lifetime
    /// from now, if at all: its `issued_at` lies further ahead of this clock than the
    /// skew allows, so its writer's clock ran ahead and it may be served past its real
    /// expiry (`store::ahead`).
    pub(crate) fn ahead_ms(&self, now_ms: u64, skew_secs: u64) -> Option<u64> {
        let usable_for = self.usable_until_ms(skew_secs).saturating_sub(now_ms);
        usable_for
            .checked_sub(self.lifetime_ms())
            .filter(|&beyond| beyond > 0)
    }

    pub(crate) fn is_usable(&self, now_ms: u64, skew_secs: u64) -> bool {
        now_ms < self.usable_until_ms(skew_secs)
    }

    /// Start of the refresh-ahead window: the last `percent` % of the lifetime before
    /// `usable_until`. `jitter_permille` (0..1000) moves this instance's start later
    /// by up to half the window, so instances do not all try at the same moment.
    pub(crate) fn refresh_from_ms(
        &self,
        skew_secs: u64,
        percent: u64,
        jitter_permille: u64,
    ) -> u64 {
        let window = self.lifetime_ms() / 100 * percent.min(100)
            + self.lifetime_ms() % 100 * percent.min(100) / 100;
        let later = window / 2 * jitter_permille.min(999) / 1000;
        self.usable_until_ms(skew_secs)
            .saturating_sub(window)
            .saturating_add(later)
    }

    /// Usable, but inside this instance's refresh-ahead window.
    pub(crate) fn wants_refresh(
        &self,
        now_ms: u64,
        skew_secs: u64,
        percent: u64,
        jitter_permille: u64,
    ) -> bool {
        percent > 0 && now_ms >= self.refresh_from_ms(skew_secs, percent, jitter_permille)
    }

    /// `expires_at` in Unix seconds, as the WIT `access-token` carries it.
    pub(crate) fn expires_at_secs(&self) -> u64 {
        self.expires_at_ms / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::entry;

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
    fn an_entry_usable_longer_than_its_lifetime_from_now_is_ahead_of_this_clock() {
        let e = entry(); // issued at 1000 s, 3600 s lifetime, usable until 4540 s
        assert_eq!(e.ahead_ms(1_000_000, 60), None);
        // Read 60 s before its issue time (the writer's clock 60 s ahead): the skew
        // covers it, it is usable for exactly its lifetime.
        assert_eq!(e.ahead_ms(940_000, 60), None);
        assert_eq!(e.ahead_ms(939_999, 60), Some(1));
        // A day ahead.
        let later = Entry {
            issued_at_ms: 100_000_000,
            expires_at_ms: 103_600_000,
            ..entry()
        };
        assert_eq!(
            later.ahead_ms(100_000_000 - 86_400_000, 60),
            Some(86_340_000)
        );
        assert_eq!(e.ahead_ms(1_000_000, 0), None);
        assert_eq!(e.ahead_ms(999_000, 0), Some(1_000));
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
}
