//! Cross-instance single flight on the shared key-value store, built on `increment`
//! alone (atomic in every host we target; `cas` is not trustworthy in all of them).
//!
//! Time is cut into slots of `lease_ms`. The lease for slot `s` of a cache key is the
//! counter at `<store key>:lease:<s>` (`store::keys::lease_slot`): whoever increments it to 1 holds it, everyone
//! else waits. A holder deletes its counter when done, so a waiter that arrives later
//! and counts 1 again becomes the holder, re-reads the store, and finds the token.
//!
//! A holder that dies never deletes its counter; its lease still ends, because nobody
//! consults the counter of an old slot. Around a slot boundary, the first instance of
//! the new slot also looks at the previous slot's counter: while it is present, that
//! holder may still be fetching (it started less than one slot ago), so the newcomer
//! waits for it until the end of its own slot, then removes it as stale.

use crate::platform::Platform;
use crate::store::keys::lease_slot;

/// A held lease: delete its counter when done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
}

/// The outcome of one attempt to take the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease: fetch, store, then [`release`].
    Held(Lease),
    /// Another instance holds the lease at `watch`; wait for its token until `until_ms`.
    Busy { watch: String, until_ms: u64 },
    /// We hold this slot's lease, but the previous slot's holder (`watch`) may still be
    /// fetching until `until_ms`: wait for it first, then act as the holder.
    Queued {
        own: Lease,
        watch: String,
        until_ms: u64,
    },
}

/// One attempt, never blocking. `base` is the cache entry's store key.
pub fn try_acquire<P: Platform>(
    platform: &P,
    store: &str,
    base: &str,
    lease_ms: u64,
) -> Result<Attempt, String> {
    let now = platform.now_unix_ms();
    let slot = now / lease_ms;
    let key = lease_slot(base, slot);
    let count = platform.kv_increment(store, &key)?;
    if count != 1 {
        return Ok(Attempt::Busy {
            watch: key,
            until_ms: now.saturating_add(lease_ms),
        });
    }
    let own = Lease { key };
    if slot == 0 {
        return Ok(Attempt::Held(own));
    }
    let previous = lease_slot(base, slot - 1);
    match platform.kv_get(store, &previous) {
        Ok(None) => Ok(Attempt::Held(own)),
        Ok(Some(_)) => Ok(Attempt::Queued {
            own,
            watch: previous,
            // The previous holder started before this slot began and holds at most
            // one slot's length.
            until_ms: (slot + 1).saturating_mul(lease_ms),
        }),
        Err(e) => {
            // Do not leave a counter behind that would make others wait for nothing.
            let _ = platform.kv_delete(store, &own.key);
            Err(e)
        }
    }
}

/// Give the lease back (delete its counter).
pub fn release<P: Platform>(platform: &P, store: &str, lease: Lease) -> Result<(), String> {
    platform.kv_delete(store, &lease.key)
}

/// Delay before the `attempt`-th poll of a waiter (0-based): 5 ms doubling to 200 ms,
/// each shortened by up to a quarter at random so waiters spread out.
pub fn poll_delay_ms<P: Platform>(platform: &P, attempt: u32) -> u64 {
    let base = (5u64 << attempt.min(6)).min(200);
    base - platform.random_below(base / 4 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakePlatform;

    #[test]
    fn first_increment_holds_the_lease_and_later_ones_wait() {
        let p = FakePlatform::at(1_000_000);
        let a = try_acquire(&p, "s", "k", 10_000).unwrap();
        assert_eq!(
            a,
            Attempt::Held(Lease {
                key: "k:lease:100".into()
            })
        );
        let b = try_acquire(&p, "s", "k", 10_000).unwrap();
        assert_eq!(
            b,
            Attempt::Busy {
                watch: "k:lease:100".into(),
                until_ms: 1_010_000
            }
        );
        let Attempt::Held(lease) = a else {
            unreachable!()
        };
        release(&p, "s", lease).unwrap();
        assert!(p.kv_keys().is_empty(), "release removes the counter");
        // After a release, the next instance holds it again.
        assert!(matches!(
            try_acquire(&p, "s", "k", 10_000).unwrap(),
            Attempt::Held(_)
        ));
    }

    #[test]
    fn a_live_lease_from_the_previous_slot_queues_the_newcomer() {
        let p = FakePlatform::at(1_000_500);
        p.kv_put("k:lease:99", b"1");
        assert_eq!(
            try_acquire(&p, "s", "k", 10_000).unwrap(),
            Attempt::Queued {
                own: Lease {
                    key: "k:lease:100".into()
                },
                watch: "k:lease:99".into(),
                until_ms: 1_010_000,
            }
        );
        // Leases older than one slot are ignored: a dead holder never wedges the key.
        let p = FakePlatform::at(1_000_500);
        p.kv_put("k:lease:98", b"1");
        assert!(matches!(
            try_acquire(&p, "s", "k", 10_000).unwrap(),
            Attempt::Held(_)
        ));
    }

    #[test]
    fn store_errors_surface_and_leave_no_counter() {
        let p = FakePlatform::at(1_000_500);
        p.fail_store(true);
        assert!(try_acquire(&p, "s", "k", 10_000).is_err());
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
