//! A 401 from an API that blames the token (`send::challenge`): drop the token so the
//! next request gets another, once per token, and not again and again for an origin
//! that refuses every token.
//!
//! - **Once per token.** Only the rejected token is dropped: in memory if memory still
//!   holds it, in the store if the store still does (`Provider::drop_rejected`). A
//!   late 401 to a token already replaced leaves the successor alone.
//! - **Not twice in a row for one origin.** When a 401 from origin O dropped the last
//!   token, a token younger than `min_token_age_secs` is kept after another 401 from
//!   O: O refuses this client's tokens (a wrong scope, a broken service), and dropping
//!   each new one would cost the fleet a token request per request until the token
//!   endpoint answers 429, whose cooldown would then fail every other origin too. A
//!   401 from another origin still drops it. Which origin dropped the last token, and
//!   when, is a small sealed record beside the token, so every instance (a fresh one
//!   too) follows it.

use super::{Lookup, Provider};
use crate::audit::{Event, Outcome};
use crate::oauth::request::TokenRequest;
use crate::origin::Origin;
use crate::platform::Platform;
use crate::secret::AccessToken;
use crate::store::keys::roles;
use crate::store::{ahead, record, seal};
use serde::Serialize;

/// Which origin's 401 dropped a cache key's last token, that token's fingerprint, and
/// when (wall clock, Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Dropped {
    pub(crate) origin: String,
    pub(crate) fingerprint: String,
    pub(crate) at_ms: u64,
}

impl record::Record for Dropped {
    fn from_fields(f: &record::Fields) -> Option<Self> {
        Some(Dropped {
            origin: f.string("origin")?,
            fingerprint: f.string("fingerprint")?,
            at_ms: f.u64("at_ms")?,
        })
    }
}

/// Said when a young token is kept after a 401.
pub(crate) const KEPT_YOUNG: &str = "kept: younger than min_token_age_secs, and a 401 from this origin dropped the token before it; the origin refuses this client's tokens, not this one";

impl<P: Platform> Provider<'_, P> {
    /// The API at `origin` answered 401 to `rejected`, blaming the token: drop it (see
    /// the module), and say whether the next request is to get another token (`false`:
    /// it was kept, and resending would only be refused again).
    pub fn rejected_by(
        &self,
        request: &TokenRequest,
        rejected: &AccessToken,
        origin: &Origin,
    ) -> bool {
        let Ok(l) = Lookup::new(request, self.settings) else {
            return false;
        };
        let origin = origin.to_string();
        let fingerprint = rejected.fingerprint();
        let now = self.platform.now_unix_ms();
        if self.keeps_young(&l, rejected, &origin, now) {
            let mut ev = Event::new(
                Outcome::InvalidateKept,
                &self.settings.audit,
                &l.params.scopes,
            )
            .with_detail(KEPT_YOUNG);
            ev.fingerprint = Some(fingerprint);
            ev.api_origin = Some(origin);
            self.audit(&ev);
            return false;
        }
        self.drop_rejected(&l, Some(rejected));
        let dropped = Dropped {
            origin,
            fingerprint,
            at_ms: now,
        };
        self.note_dropped(&l, dropped);
        true
    }

    /// Whether `rejected` is a young current token whose predecessor a 401 from
    /// `origin` dropped moments ago. The very token that was dropped (put back in the
    /// store, or a late 401) is never kept: it is dropped again.
    fn keeps_young(&self, l: &Lookup, rejected: &AccessToken, origin: &str, now: u64) -> bool {
        let min_age = self.settings.cache.min_token_age_ms;
        let young = min_age > 0
            && self
                .issued_at(l, rejected)
                .is_some_and(|issued| now.saturating_sub(issued) < min_age);
        young
            && self.last_dropped(l).is_some_and(|d| {
                d.origin == origin
                    && d.fingerprint != rejected.fingerprint()
                    && now.saturating_sub(d.at_ms) < min_age
                    && ahead::started(d.at_ms, now).is_ok()
            })
    }

    /// When `token` was issued, if it is still the current token: the one the store
    /// holds (with a store), else the one in memory. A token already replaced (the
    /// store holds its successor) is no current token: its late 401 says nothing about
    /// the successor, which the caller is to try.
    fn issued_at(&self, l: &Lookup, token: &AccessToken) -> Option<u64> {
        let fingerprint = token.fingerprint();
        if let Some(store) = self.settings.cache.kv_store.as_deref()
            && let Ok(bytes) = self.platform.kv_get(store, &l.key.store_key())
        {
            return bytes
                .and_then(|b| seal::open(&b, &self.settings.cache.secret, &l.key).ok())
                .filter(|e| e.access_token.fingerprint() == fingerprint)
                .map(|e| e.issued_at_ms);
        }
        let memory = self.memory.borrow();
        let e = memory.get(&l.key)?;
        (e.access_token.fingerprint() == fingerprint).then_some(e.issued_at_ms)
    }

    /// The last drop of `l`'s token: this instance's, or (newer) the store's.
    fn last_dropped(&self, l: &Lookup) -> Option<Dropped> {
        let here = self.memory.borrow().dropped.get(&l.key).cloned();
        let stored = self.settings.cache.kv_store.as_deref().and_then(|store| {
            match self.platform.kv_get(store, &l.key.dropped()) {
                Ok(bytes) => bytes.and_then(|b| {
                    seal::open_value::<Dropped>(
                        &b,
                        &self.settings.cache.secret,
                        &l.key.context(roles::DROPPED),
                    )
                    .ok()
                }),
                Err(e) => {
                    self.store_error(&l.params, e);
                    None
                }
            }
        });
        [here, stored].into_iter().flatten().max_by_key(|d| d.at_ms)
    }

    fn note_dropped(&self, l: &Lookup, dropped: Dropped) {
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let sealed = seal::seal_value(
                &dropped,
                &self.settings.cache.secret,
                &l.key.context(roles::DROPPED),
                seal::nonce(self.platform),
            );
            self.degrade(l, self.platform.kv_set(store, &l.key.dropped(), &sealed));
        }
        self.memory
            .borrow_mut()
            .dropped
            .insert(l.key.clone(), dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::parse_origin;
    use crate::provider::instance::MemoryCache;
    use crate::testing::Rig;
    use std::cell::RefCell;

    fn origin(text: &str) -> Origin {
        parse_origin(text).unwrap()
    }

    #[test]
    fn a_young_token_is_not_dropped_twice_in_a_row_for_one_origin() {
        let rig = Rig::new(&[]);
        let (a, b) = (
            origin("https://a.example.com"),
            origin("https://b.example.com"),
        );
        let request = TokenRequest::default();
        rig.platform.respond_token("t1", 3600);
        let t1 = rig.get().unwrap().token;
        // t1 is young too, but nothing was dropped before it: dropped.
        assert!(rig.provider().rejected_by(&request, &t1, &a));
        rig.platform.respond_token("t2", 3600);
        let t2 = rig.get().unwrap().token;
        assert_eq!(t2.expose(), "t2");
        // A refuses t2 too, 10 s later: kept, and said so.
        rig.platform.advance(10_000);
        assert!(!rig.provider().rejected_by(&request, &t2, &a));
        assert_eq!(rig.get().unwrap().token.expose(), "t2");
        let kept = rig.platform.events("token.invalidate");
        let last = kept.last().unwrap();
        assert_eq!(last["outcome"], "kept");
        assert!(
            last["detail"]
                .as_str()
                .unwrap()
                .contains("min_token_age_secs"),
            "{last}"
        );
        assert_eq!(last["api_origin"], "https://a.example.com:443");
        // Another origin's 401 still drops it.
        assert!(rig.provider().rejected_by(&request, &t2, &b));
        rig.platform.respond_token("t3", 3600);
        let t3 = rig.get().unwrap().token;
        // And once t3 is 30 s old, a 401 from A drops it again.
        rig.platform.advance(29_999);
        assert!(!rig.provider().rejected_by(&request, &t3, &b));
        rig.platform.advance(1);
        assert!(rig.provider().rejected_by(&request, &t3, &b));
        assert_eq!(rig.platform.sent.borrow().len(), 3);
    }

    #[test]
    fn every_instance_follows_the_drop_record_a_fresh_one_too() {
        let rig = Rig::new(&[]);
        let a = origin("https://a.example.com");
        let request = TokenRequest::default();
        rig.platform.respond_token("t1", 3600);
        let t1 = rig.get().unwrap().token;
        rig.platform.advance(60_000);
        assert!(rig.provider().rejected_by(&request, &t1, &a));
        rig.platform.respond_token("t2", 3600);
        let t2 = rig.get().unwrap().token;
        // Fresh instances (their own memory, the same store) get t2 from the store
        // and keep it after A's 401s.
        for _ in 0..5 {
            let memory = RefCell::new(MemoryCache::default());
            let p = Provider {
                settings: &rig.settings,
                platform: &rig.platform,
                memory: &memory,
            };
            let t = crate::platform::ready(p.get_token(&request)).unwrap();
            assert_eq!(t.token, t2);
            assert!(!p.rejected_by(&request, &t.token, &a));
        }
        assert_eq!(rig.platform.sent.borrow().len(), 2);
    }

    #[test]
    fn min_token_age_secs_zero_drops_every_blamed_token() {
        let rig = Rig::new(&[("min_token_age_secs", "0")]);
        let a = origin("https://a.example.com");
        let request = TokenRequest::default();
        for i in 1..=3 {
            rig.platform.respond_token(&format!("t{i}"), 3600);
            let t = rig.get().unwrap().token;
            assert!(rig.provider().rejected_by(&request, &t, &a));
        }
        assert_eq!(rig.platform.sent.borrow().len(), 3);
    }
}
