//! Cross-instance single flight on the shared key-value store, built on `increment`
//! (atomic in every host we target; `cas` is not trustworthy in all of them) and one
//! sealed record.
//!
//! - **Counter.** The lease of a cache key for time slot `s` (`lease_ms` long) and
//!   generation `g` is the counter at `CacheKey::lease(s, g)`: whoever increments it to
//!   1 may hold it. Its name is an HMAC under the credential, so nobody without the
//!   credential can name a future counter, let alone bump it.
//! - **Holder record.** The holder then writes a sealed [`Holder`] (slot, generation,
//!   start) at `CacheKey::lease_holder`. Waiters trust only a record that opens: it
//!   says how long the holder may still be fetching (`started + lease_ms`, and
//!   `Settings` makes `lease_ms` longer than `token_deadline_ms`). A counter with no
//!   record (forged, or its holder died before writing one) is waited on for at most
//!   [`UNRECORDED_GRACE_MS`].
//! - **Release.** The holder deletes its counter, then its record (if still its own).
//!   A waiter sees the record go and finds the token in the store, or takes over.
//! - **Dead holder.** A waiter whose holder's time is up elects a new holder on the next
//!   generation of the same slot: one of the waiters wins the counter, deletes the dead
//!   counter and fetches; the others wait for it. So a holder killed mid-fetch costs its
//!   waiters one `lease_ms` and one fetch, not one fetch each, and leaves no counter
//!   behind (the next holder of this cache key deletes the one its record names).
//!
//! Waits are measured on the monotonic clock; the wall clock only names the slot and
//! dates the record (both shared between instances).

use crate::platform::Platform;
use crate::secret::Secret;
use crate::store::keys::{CacheKey, roles};
use crate::store::record;
use crate::store::{ahead, seal};
use serde::Serialize;

/// How long a waiter trusts a busy counter that no holder record backs.
pub(crate) const UNRECORDED_GRACE_MS: u64 = 500;
/// After this many generations in one slot, callers stop electing and fetch.
pub(crate) const MAX_GENERATION: u32 = 3;

/// The holder's record, sealed at `CacheKey::lease_holder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub slot: u64,
    pub generation: u32,
    /// Wall clock, Unix ms, when it took the lease.
    pub started_ms: u64,
}

impl record::Record for Holder {
    fn from_fields(f: &record::Fields) -> Option<Self> {
        Some(Holder {
            slot: f.u64("slot")?,
            generation: f.u32("generation")?,
            started_ms: f.u64("started_ms")?,
        })
    }
}

impl Holder {
    fn lease(&self) -> (u64, u32) {
        (self.slot, self.generation)
    }

    /// Until when (wall clock) this holder may still be fetching.
    pub(crate) fn until_ms(&self, lease_ms: u64) -> u64 {
        self.started_ms.saturating_add(lease_ms)
    }
}

/// A lease this instance holds: delete its counter (and record) when done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub holder: Holder,
}

/// A lease somebody else holds, being waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watch {
    pub slot: u64,
    pub generation: u32,
    /// The holder's record, if one opened (else the counter is unrecorded).
    pub recorded: bool,
    /// How long to wait for it at most, from now (monotonic).
    pub wait_ms: u64,
}

/// The outcome of one attempt to take the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// We hold the lease and wrote our record: fetch, store, then [`Leases::release`].
    Held(Lease),
    /// Another instance holds it: wait for its token.
    Busy(Watch),
    /// We won the counter, but a live holder of another slot or generation is still
    /// fetching: wait for it first, then act as the holder ([`Leases::record`]).
    Queued { own: Lease, watch: Watch },
}

/// What a waiter concludes after one look at the holder record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// The watched holder is (or may still be) at work.
    Wait,
    /// The watched lease was given back (or superseded by a newer holder).
    Released,
    /// Its time is up: elect a new holder.
    Dead,
}

/// Judge the holder record seen by a waiter of `watch` (pure). `left_ms` is what is
/// left of the watch's monotonic bound.
pub(crate) fn look(watch: &Watch, record: Option<Holder>, left_ms: u64) -> Look {
    match record {
        Some(h) if h.lease() == (watch.slot, watch.generation) => {
            if left_ms == 0 {
                Look::Dead
            } else {
                Look::Wait
            }
        }
        // It had a record and the record is gone or another's: given back.
        _ if watch.recorded => Look::Released,
        // Unrecorded: the holder may be about to write its record.
        _ if left_ms == 0 => Look::Dead,
        _ => Look::Wait,
    }
}

/// The lease operations of one cache key in one store.
pub(crate) struct Leases<'a, P: Platform> {
    pub platform: &'a P,
    pub store: &'a str,
    pub key: &'a CacheKey,
    pub secret: &'a Secret,
    pub lease_ms: u64,
    /// How far ahead of this clock a holder record may be dated (`store::ahead`).
    pub clock_tolerance_ms: u64,
    /// Told of a holder record dated further ahead (its start, how far ahead), which
    /// counts as absent.
    pub on_ahead: Option<Box<dyn Fn(u64, u64) + 'a>>,
}

impl<P: Platform> Leases<'_, P> {
    /// The slot the wall clock is in now.
    pub(crate) fn current_slot(&self) -> u64 {
        self.platform.now_unix_ms() / self.lease_ms
    }

    /// One attempt at lease (`slot`, `generation`), never blocking.
    pub(crate) fn try_acquire(&self, slot: u64, generation: u32) -> Result<Attempt, String> {
        let count = self
            .platform
            .kv_increment(self.store, &self.key.lease(slot, generation))?;
        let record = self.holder_record()?;
        let now = self.platform.now_unix_ms();
        let live = record.filter(|h| now < h.until_ms(self.lease_ms));
        if count != 1 {
            return Ok(Attempt::Busy(match live {
                Some(h) => self.watch(h, now),
                None => Watch {
                    slot,
                    generation,
                    recorded: false,
                    wait_ms: UNRECORDED_GRACE_MS.min(self.lease_ms),
                },
            }));
        }
        let own = Lease {
            holder: Holder {
                slot,
                generation,
                started_ms: now,
            },
        };
        match live {
            Some(h) if h.lease() != (slot, generation) => Ok(Attempt::Queued {
                own,
                watch: self.watch(h, now),
            }),
            _ => {
                if let Some(dead) = record.filter(|h| h.lease() != (slot, generation)) {
                    self.delete_counter(dead.slot, dead.generation)?;
                }
                if let Err(e) = self.record(&own) {
                    let _ = self.delete_counter(slot, generation);
                    return Err(e);
                }
                Ok(Attempt::Held(own))
            }
        }
    }

    fn watch(&self, h: Holder, now: u64) -> Watch {
        Watch {
            slot: h.slot,
            generation: h.generation,
            recorded: true,
            wait_ms: h
                .until_ms(self.lease_ms)
                .saturating_sub(now)
                .min(self.lease_ms),
        }
    }

    /// The holder record, if one is stored, opens, and is not dated ahead of this
    /// clock by more than the tolerance (a holder whose clock runs a day ahead must not
    /// hold the lease for a day).
    pub(crate) fn holder_record(&self) -> Result<Option<Holder>, String> {
        let bytes = self.platform.kv_get(self.store, &self.key.lease_holder())?;
        let record = bytes.and_then(|b| {
            seal::open_value::<Holder>(&b, self.secret, &self.key.context(roles::HOLDER)).ok()
        });
        let now = self.platform.now_unix_ms();
        Ok(record.filter(
            |h| match ahead::started(h.started_ms, now, self.clock_tolerance_ms) {
                Ok(_) => true,
                Err(by) => {
                    if let Some(tell) = &self.on_ahead {
                        tell(h.started_ms, by);
                    }
                    false
                }
            },
        ))
    }

    /// Write our record: from now on waiters wait for us.
    pub(crate) fn record(&self, own: &Lease) -> Result<(), String> {
        let sealed = seal::seal_value(
            &own.holder,
            self.secret,
            &self.key.context(roles::HOLDER),
            seal::nonce(self.platform),
        );
        self.platform
            .kv_set(self.store, &self.key.lease_holder(), &sealed)
    }

    /// Delete a counter (a dead or finished holder's).
    pub(crate) fn delete_counter(&self, slot: u64, generation: u32) -> Result<(), String> {
        self.platform
            .kv_delete(self.store, &self.key.lease(slot, generation))
    }

    /// Give the lease back: its counter, then its record if that is still ours.
    pub(crate) fn release(&self, lease: &Lease) -> Result<(), String> {
        self.delete_counter(lease.holder.slot, lease.holder.generation)?;
        if self.holder_record()? == Some(lease.holder) {
            self.platform
                .kv_delete(self.store, &self.key.lease_holder())?;
        }
        Ok(())
    }

    /// Give back a counter won while queued, without having written a record.
    pub(crate) fn release_queued(&self, lease: &Lease) -> Result<(), String> {
        self.delete_counter(lease.holder.slot, lease.holder.generation)
    }
}

/// Delay before the `attempt`-th poll of a waiter (0-based): 5 ms doubling to 200 ms,
/// each shortened by up to a quarter at random so waiters spread out.
pub(crate) fn poll_delay_ms<P: Platform>(platform: &P, attempt: u32) -> u64 {
    let base = (5u64 << attempt.min(6)).min(200);
    base - platform.random_below(base / 4 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakePlatform, key_for, settings};

    fn leases<'a>(
        p: &'a FakePlatform,
        key: &'a CacheKey,
        secret: &'a Secret,
    ) -> Leases<'a, FakePlatform> {
        Leases {
            platform: p,
            store: "s",
            key,
            secret,
            lease_ms: 10_000,
            clock_tolerance_ms: 60_000,
            on_ahead: None,
        }
    }

    #[test]
    fn first_increment_holds_the_lease_and_later_ones_wait_for_its_record() {
        let s = settings(&[]);
        let key = key_for(&s, &[]);
        let p = FakePlatform::at(1_000_000);
        let l = leases(&p, &key, &s.cache.secret);
        let Attempt::Held(own) = l.try_acquire(100, 0).unwrap() else {
            panic!()
        };
        assert_eq!(
            own.holder,
            Holder {
                slot: 100,
                generation: 0,
                started_ms: 1_000_000
            }
        );
        p.advance(2_000);
        assert_eq!(
            l.try_acquire(100, 0).unwrap(),
            Attempt::Busy(Watch {
                slot: 100,
                generation: 0,
                recorded: true,
                wait_ms: 8_000
            })
        );
        l.release(&own).unwrap();
        assert!(p.kv_keys().is_empty(), "{:?}", p.kv_keys());
        // After a release, the next instance holds it again.
        assert!(matches!(l.try_acquire(100, 0).unwrap(), Attempt::Held(_)));
    }

    #[test]
    fn a_counter_without_a_record_is_trusted_for_the_grace_only() {
        let s = settings(&[]);
        let key = key_for(&s, &[]);
        let p = FakePlatform::at(1_000_000);
        let l = leases(&p, &key, &s.cache.secret);
        p.kv_put(&key.lease(100, 0), b"1");
        let Attempt::Busy(w) = l.try_acquire(100, 0).unwrap() else {
            panic!()
        };
        assert_eq!((w.recorded, w.wait_ms), (false, UNRECORDED_GRACE_MS));
        assert_eq!(look(&w, None, 10), Look::Wait);
        assert_eq!(look(&w, None, 0), Look::Dead);
        // Its record appears: now it is a real holder.
        let h = Holder {
            slot: 100,
            generation: 0,
            started_ms: 1_000_000,
        };
        assert_eq!(look(&w, Some(h), 10), Look::Wait);
    }

    #[test]
    fn a_recorded_watch_ends_when_the_record_goes_or_changes() {
        let w = Watch {
            slot: 5,
            generation: 0,
            recorded: true,
            wait_ms: 100,
        };
        let h = |generation| Holder {
            slot: 5,
            generation,
            started_ms: 0,
        };
        assert_eq!(look(&w, Some(h(0)), 50), Look::Wait);
        assert_eq!(look(&w, Some(h(0)), 0), Look::Dead);
        assert_eq!(look(&w, None, 50), Look::Released);
        assert_eq!(look(&w, Some(h(1)), 50), Look::Released);
    }

    #[test]
    fn a_live_holder_of_another_slot_queues_the_winner_and_a_dead_one_is_cleared() {
        let s = settings(&[]);
        let key = key_for(&s, &[]);
        let p = FakePlatform::at(1_000_500);
        let l = leases(&p, &key, &s.cache.secret);
        // A holder of slot 99 that started 3 s ago is live.
        let prev = Lease {
            holder: Holder {
                slot: 99,
                generation: 0,
                started_ms: 997_500,
            },
        };
        p.kv_put(&key.lease(99, 0), b"1");
        l.record(&prev).unwrap();
        let Attempt::Queued { own, watch } = l.try_acquire(100, 0).unwrap() else {
            panic!()
        };
        assert_eq!(
            (own.holder.slot, watch.slot, watch.wait_ms),
            (100, 99, 7_000)
        );
        l.release_queued(&own).unwrap();
        // 7 s later it is dead: the next winner deletes its counter and records itself.
        p.advance(7_000);
        let Attempt::Held(own) = l.try_acquire(100, 0).unwrap() else {
            panic!()
        };
        assert_eq!(l.holder_record().unwrap(), Some(own.holder));
        assert_eq!(
            p.kv_value(&key.lease(99, 0)),
            None,
            "the dead counter is gone"
        );
        l.release(&own).unwrap();
        assert!(p.kv_keys().is_empty(), "{:?}", p.kv_keys());
    }

    #[test]
    fn a_record_that_does_not_open_is_no_record() {
        let s = settings(&[]);
        let key = key_for(&s, &[]);
        let p = FakePlatform::at(1_000_000);
        let l = leases(&p, &key, &s.cache.secret);
        p.kv_put(&key.lease_holder(), b"forged");
        assert_eq!(l.holder_record().unwrap(), None);
        assert!(matches!(l.try_acquire(100, 0).unwrap(), Attempt::Held(_)));
    }

    #[test]
    fn store_errors_surface_and_leave_no_counter() {
        let s = settings(&[]);
        let key = key_for(&s, &[]);
        let p = FakePlatform::at(1_000_500);
        let l = leases(&p, &key, &s.cache.secret);
        p.fail_store(true);
        assert!(l.try_acquire(100, 0).is_err());
        p.fail_store(false);
        assert!(p.kv_keys().is_empty());
    }

    #[test]
    fn poll_delays_grow_and_stay_bounded() {
        let p = FakePlatform::at(0);
        let delays: Vec<u64> = (0..12).map(|i| poll_delay_ms(&p, i)).collect();
        assert!((4..=5).contains(&delays[0]), "{delays:?}");
        assert!(delays.iter().all(|d| (1..=200).contains(d)), "{delays:?}");
        assert!(delays[11] >= 150, "{delays:?}");
    }
}
