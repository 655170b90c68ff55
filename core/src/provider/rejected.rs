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
//!   401 from another origin that has not dropped one moments ago still drops it. The
//!   recent drops (origin, fingerprint, time; the last [`MAX_DROPS`]) are a small
//!   sealed record beside the token, so every instance (a fresh one too) follows them;
//!   two origins that both refuse every token cost a token request each per
//!   `min_token_age_secs`, not one per request.

use super::{Lookup, Provider};
use crate::audit::{Event, Outcome};
use crate::oauth::request::TokenRequest;
use crate::origin::Origin;
use crate::platform::Platform;
use crate::secret::AccessToken;
use crate::store::keys::roles;
use crate::store::{Entry, ahead, record, seal};
use serde::Serialize;

/// A token dropped after a 401: from which origin, its fingerprint, and when (wall clock,
/// Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Dropped {
    pub(crate) origin: String,
    pub(crate) fingerprint: String,
    pub(crate) at_ms: u64,
}

impl Dropped {
    /// Its place in [`Drops`]: by time, then by the rest.
    fn key(&self) -> (u64, &str, &str) {
        (self.at_ms, &self.origin, &self.fingerprint)
    }
}

/// The recent drops of a cache key's tokens, oldest first (at most [`MAX_DROPS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Drops {
    pub(crate) drops: Vec<Dropped>,
}

/// How many drops a record keeps: origins that refuse every token take turns, and
/// each must be remembered for the young-token rule to hold against all of them.
pub(crate) const MAX_DROPS: usize = 8;

impl record::Record for Drops {
    fn from_fields(f: &record::Fields) -> Option<Self> {
        let drops = f
            .value("drops")?
            .as_array()?
            .iter()
            .map(|v| {
                let d = record::Fields::of(v)?;
                Some(Dropped {
                    origin: d.string("origin")?,
                    fingerprint: d.string("fingerprint")?,
                    at_ms: d.u64("at_ms")?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Drops { drops })
    }
}

impl Drops {
    /// Both lists in one, oldest first, the newest [`MAX_DROPS`] kept.
    fn merged(self, other: Drops) -> Drops {
        // By time, then by the rest, so equal times have one order on every instance.
        // Each put in its place (a few at most: a library sort is kilobytes in the
        // component), a duplicate once.
        let mut drops: Vec<Dropped> = Vec::with_capacity(self.drops.len() + other.drops.len());
        for d in self.drops.into_iter().chain(other.drops) {
            let at = drops.partition_point(|x| x.key() < d.key());
            if drops.get(at) != Some(&d) {
                drops.insert(at, d);
            }
        }
        let excess = drops.len().saturating_sub(MAX_DROPS);
        drops.drain(..excess);
        Drops { drops }
    }
}

/// Said when a young token is kept after a 401.
pub(crate) const KEPT_YOUNG: &str = "kept: younger than min_token_age_secs, and a 401 from this origin dropped a token moments ago; the origin refuses this client's tokens, not this one";

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
        let min_age = self.settings.cache.min_token_age_ms;
        // Only the current token's drop is remembered: a late 401 for a token already
        // replaced says nothing about its successor.
        let stored = self.stored_entry(&l);
        let current = self.issued_at(&l, rejected, stored.as_ref());
        if min_age > 0
            && let Some(issued) = current
        {
            let young = now.saturating_sub(issued) < min_age;
            let drops = self.recent_drops(&l);
            if young && self.keeps(&drops, &origin, &fingerprint, now) {
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
            let dropped = Dropped {
                origin,
                fingerprint,
                at_ms: now,
            };
            self.note_dropped(
                &l,
                drops.merged(Drops {
                    drops: vec![dropped],
                }),
            );
        }
        self.drop_rejected(&l, Some(rejected), stored);
        true
    }

    /// Whether a young token `fingerprint` is kept after a 401 from `origin`: a 401
    /// from `origin` dropped a token within `min_token_age_secs`, and not this very
    /// token (put back in the store after its drop, it is dropped again).
    fn keeps(&self, drops: &Drops, origin: &str, fingerprint: &str, now: u64) -> bool {
        let min_age = self.settings.cache.min_token_age_ms;
        let tolerance = self.settings.cache.clock_tolerance_ms();
        let recent_here = drops.drops.iter().any(|d| {
            d.origin == origin
                && now.saturating_sub(d.at_ms) < min_age
                && ahead::started(d.at_ms, now, tolerance).is_ok()
        });
        recent_here && !drops.drops.iter().any(|d| d.fingerprint == fingerprint)
    }

    /// When `token` was issued, if it is still the current token: the one the store
    /// holds (`stored`), or (the store holds none, or cannot be read, or there is none)
    /// the one in memory. A token the store has replaced is no current token.
    fn issued_at(
        &self,
        l: &Lookup,
        token: &AccessToken,
        stored: Option<&Result<Option<Entry>, String>>,
    ) -> Option<u64> {
        let fingerprint = token.fingerprint();
        if let Some(Ok(Some(e))) = stored {
            return (e.access_token.fingerprint() == fingerprint).then_some(e.issued_at_ms);
        }
        let memory = self.memory.borrow();
        let e = memory.get(&l.key)?;
        (e.access_token.fingerprint() == fingerprint).then_some(e.issued_at_ms)
    }

    /// The recent drops of `l`'s tokens: this instance's and the store's.
    fn recent_drops(&self, l: &Lookup) -> Drops {
        let here = self.memory.borrow().dropped.get(&l.key).cloned();
        let stored = self.settings.cache.kv_store.as_deref().and_then(|store| {
            match self.platform.kv_get(store, &l.key.dropped()) {
                Ok(bytes) => bytes.and_then(|b| {
                    seal::open_value::<Drops>(
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
        here.unwrap_or_default().merged(stored.unwrap_or_default())
    }

    fn note_dropped(&self, l: &Lookup, drops: Drops) {
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let sealed = seal::seal_value(
                &drops,
                &self.settings.cache.secret,
                &l.key.context(roles::DROPPED),
                seal::nonce(self.platform),
            );
            self.degrade(l, self.platform.kv_set(store, &l.key.dropped(), &sealed));
        }
        self.memory
            .borrow_mut()
            .dropped
            .insert(l.key.clone(), drops);
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
    fn merged_drops_are_ordered_by_time_then_origin_once_each_newest_kept() {
        let d = |at_ms: u64, origin: &str| Dropped {
            origin: format!("https://{origin}"),
            fingerprint: format!("fp{at_ms}"),
            at_ms,
        };
        let here = Drops {
            drops: vec![d(5, "b"), d(1, "a"), d(9, "a"), d(7, "c")],
        };
        let there = Drops {
            drops: (0..8).map(|i| d(i, "b")).chain([d(5, "b")]).collect(),
        };
        // 11 different drops: the newest 8, (5, b) once, at 7 "b" before "c".
        let want: Vec<Dropped> = [(2, "b"), (3, "b"), (4, "b"), (5, "b"), (6, "b")]
            .into_iter()
            .chain([(7, "b"), (7, "c"), (9, "a")])
            .map(|(at, o)| d(at, o))
            .collect();
        assert_eq!(here.clone().merged(there.clone()).drops, want);
        assert_eq!(there.merged(here).drops, want);
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
    fn two_origins_that_refuse_every_token_cannot_take_turns_to_churn_it() {
        let rig = Rig::new(&[]);
        let (a, b) = (
            origin("https://a.example.com"),
            origin("https://b.example.com"),
        );
        let request = TokenRequest::default();
        let mut fetched = 0;
        for i in 0..40 {
            let before = rig.platform.sent.borrow().len();
            rig.platform.respond_token(&format!("t{i}"), 3600);
            let t = rig.get().unwrap().token;
            fetched += rig.platform.sent.borrow().len() - before;
            rig.platform.clear_responses();
            let refusing = if i % 2 == 0 { &a } else { &b };
            rig.provider().rejected_by(&request, &t, refusing);
            rig.platform.advance(500);
        }
        // 20 s of A, B, A, B…: the first token, then one drop for each origin.
        assert_eq!(fetched, 3);
    }

    #[test]
    fn a_late_401_for_a_replaced_token_does_not_reset_the_rule() {
        let rig = Rig::new(&[]);
        let (a, b) = (
            origin("https://a.example.com"),
            origin("https://b.example.com"),
        );
        let request = TokenRequest::default();
        rig.platform.respond_token("t1", 3600);
        let t1 = rig.get().unwrap().token;
        assert!(rig.provider().rejected_by(&request, &t1, &a));
        rig.platform.respond_token("t2", 3600);
        let t2 = rig.get().unwrap().token;
        // B's late answer to t1: t2 is not touched, and A's drop is still remembered.
        assert!(rig.provider().rejected_by(&request, &t1, &b));
        assert_eq!(rig.get().unwrap().token, t2);
        assert!(!rig.provider().rejected_by(&request, &t2, &a));
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
