//! One fetch at a time per cache key across every instance that shares the store: the
//! instance that takes the lease (`lease`) fetches, the others poll the store for its
//! token, bounded by `lease_ms`.

use super::lease::{self, Attempt, Lease};
use super::{IssuedToken, Lookup, Provider};
use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::platform::Platform;
use crate::store::Entry;

/// What a waiter saw.
enum Waited {
    /// Another instance stored a usable token.
    Token(Entry),
    /// The lease it watched is gone without a usable token (the holder failed).
    Released,
    /// The bound passed.
    TimedOut,
}

impl<P: Platform> Provider<'_, P> {
    /// The store that coordinates fetches, if there is one and the lease is enabled.
    pub(super) fn lease_store(&self) -> Option<&str> {
        match (&self.settings.cache.kv_store, self.settings.cache.lease_ms) {
            (Some(store), ms) if ms > 0 => Some(store),
            _ => None,
        }
    }

    /// No usable token anywhere: fetch, but only one instance at a time per cache key.
    pub(super) fn fetch_single_flight(&self, l: &Lookup) -> Result<IssuedToken, Error> {
        let Some(store) = self.lease_store() else {
            return self.fetch(l);
        };
        let lease_ms = self.settings.cache.lease_ms;
        let base = l.key.store_key();
        let started = self.platform.monotonic_ms();
        let deadline = self.platform.now_unix_ms().saturating_add(lease_ms);
        loop {
            if self.platform.now_unix_ms() >= deadline {
                self.log_lease(Outcome::LeaseTimeout, l, started, None);
                return self.fetch(l);
            }
            match lease::try_acquire(self.platform, store, &base, lease_ms) {
                Err(e) => {
                    self.store_error(&l.params, e);
                    return self.fetch(l);
                }
                Ok(Attempt::Held(own)) => return self.fetch_holding(store, l, own),
                Ok(Attempt::Queued {
                    own,
                    watch,
                    until_ms,
                }) => return self.fetch_queued(store, l, own, &watch, until_ms, started),
                Ok(Attempt::Busy { watch, until_ms }) => {
                    match self.wait_for(store, l, &watch, until_ms.min(deadline)) {
                        Waited::Token(e) => return Ok(self.served_after_wait(l, e, started)),
                        // The holder finished without a token: try to take over.
                        Waited::Released => continue,
                        Waited::TimedOut => {
                            self.log_lease(Outcome::LeaseTimeout, l, started, None);
                            return self.fetch(l);
                        }
                    }
                }
            }
        }
    }

    /// Holding this slot's lease while the previous slot's holder may still be
    /// fetching: wait for its token, then act as the holder.
    fn fetch_queued(
        &self,
        store: &str,
        l: &Lookup,
        own: Lease,
        watch: &str,
        until_ms: u64,
        started: u64,
    ) -> Result<IssuedToken, Error> {
        match self.wait_for(store, l, watch, until_ms) {
            Waited::Token(e) => {
                self.release(store, l, own);
                return Ok(self.served_after_wait(l, e, started));
            }
            Waited::Released => {}
            Waited::TimedOut => {
                // Its holder is gone: clear the stale lease and take over.
                self.log_lease(Outcome::LeaseStale, l, started, None);
                if let Err(e) = self.platform.kv_delete(store, watch) {
                    self.store_error(&l.params, e);
                }
            }
        }
        self.fetch_holding(store, l, own)
    }

    /// Holding the lease: re-read the store (another holder may have just finished),
    /// fetch if still needed, always release.
    pub(super) fn fetch_holding(
        &self,
        store: &str,
        l: &Lookup,
        lease: Lease,
    ) -> Result<IssuedToken, Error> {
        let now = self.platform.now_unix_ms();
        if let Some(e) = self.read_store(l, now, false) {
            self.release(store, l, lease);
            return Ok(self.store_hit(l, e));
        }
        let result = self.fetch(l);
        self.release(store, l, lease);
        result
    }

    /// Poll the store until a usable token appears, the lease at `watch` disappears, or
    /// `until_ms` passes.
    fn wait_for(&self, store: &str, l: &Lookup, watch: &str, until_ms: u64) -> Waited {
        let mut attempt = 0;
        loop {
            let now = self.platform.now_unix_ms();
            if now >= until_ms {
                return Waited::TimedOut;
            }
            let delay = lease::poll_delay_ms(self.platform, attempt).min(until_ms - now);
            attempt += 1;
            self.platform.sleep_ms(delay);
            let now = self.platform.now_unix_ms();
            if let Some(e) = self.read_store(l, now, false) {
                return Waited::Token(e);
            }
            match self.platform.kv_get(store, watch) {
                Ok(Some(_)) => {}
                Ok(None) => return Waited::Released,
                Err(e) => {
                    // Cannot watch: stop waiting, the caller fetches.
                    self.store_error(&l.params, e);
                    return Waited::TimedOut;
                }
            }
        }
    }

    fn served_after_wait(&self, l: &Lookup, entry: Entry, started: u64) -> IssuedToken {
        self.log_lease(Outcome::LeaseWaited, l, started, Some(&entry));
        self.remember_stored(l, entry)
    }

    pub(super) fn release(&self, store: &str, l: &Lookup, lease: Lease) {
        if let Err(e) = lease::release(self.platform, store, lease) {
            self.store_error(&l.params, e);
        }
    }

    fn log_lease(&self, outcome: Outcome, l: &Lookup, started: u64, entry: Option<&Entry>) {
        let mut ev = Event::new(outcome, self.settings, &l.params.scopes);
        ev.duration_ms = Some(self.platform.monotonic_ms().saturating_sub(started));
        ev.fingerprint = entry.map(|e| e.access_token.fingerprint());
        ev.expires_at = entry.map(Entry::expires_at_secs);
        self.platform.log(&ev.to_line());
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Lookup, Source};
    use super::*;
    use crate::provider::lease::Lease;
    use crate::testing::{Rig, T0};
    use crate::token_request::TokenRequest;

    #[test]
    fn a_cold_miss_takes_the_lease_fetches_once_and_releases_it() {
        let rig = Rig::new(&[]);
        rig.platform.respond_token("tok-1", 3600);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("tok-1", Source::Fresh));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.platform.kv_keys());
        assert!(rig.platform.kv_value(&rig.key().store_key()).is_some());
        assert_eq!(rig.platform.slept_ms.get(), 0, "the holder never waits");
        // The next call is a memory hit: no store write, no lease.
        let again = rig.get().unwrap();
        assert_eq!(again.source, Source::Memory);
        assert_eq!(rig.platform.sent.borrow().len(), 1);
    }

    #[test]
    fn a_waiter_uses_the_token_the_lease_holder_stores_and_never_fetches() {
        let rig = Rig::new(&[]);
        let lease_key = rig.lease_key(T0);
        rig.platform.kv_put(&lease_key, b"1");
        let sealed = rig.sealed("from-holder", T0, 3600);
        let store_key = rig.key().store_key();
        let mut sleeps = 0;
        rig.platform.on_sleep(move |p| {
            sleeps += 1;
            if sleeps == 3 {
                // The holder finishes: stores the token, then releases the lease.
                p.kv_put(&store_key, &sealed);
                p.kv_remove(&lease_key);
            }
        });
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("from-holder", Source::Store));
        assert!(
            rig.platform.sent.borrow().is_empty(),
            "a waiter does not fetch"
        );
        let waited = rig.platform.events("token.lease");
        assert_eq!(waited.len(), 1);
        assert_eq!(waited[0]["outcome"], "waited");
        assert!(
            rig.platform.slept_ms.get() < 100,
            "{}",
            rig.platform.slept_ms.get()
        );
    }

    #[test]
    fn a_dead_lease_holder_delays_a_waiter_by_at_most_the_lease() {
        let rig = Rig::new(&[("lease_ms", "2000")]);
        rig.platform.kv_put(&rig.lease_key(T0), b"1");
        rig.platform.respond_token("own", 3600);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("own", Source::Fresh));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        let slept = rig.platform.slept_ms.get();
        assert!((1900..=2000).contains(&slept), "waited {slept} ms");
        assert_eq!(rig.platform.events("token.lease")[0]["outcome"], "timeout");
    }

    #[test]
    fn a_holder_that_fails_releases_and_a_waiter_takes_over() {
        let rig = Rig::new(&[]);
        let lease_key = rig.lease_key(T0);
        rig.platform.kv_put(&lease_key, b"1");
        let mut sleeps = 0;
        rig.platform.on_sleep(move |p| {
            sleeps += 1;
            if sleeps == 2 {
                p.kv_remove(&lease_key); // the holder gave up without a token
            }
        });
        rig.platform.respond_token("second-try", 3600);
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "second-try");
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        assert!(rig.platform.slept_ms.get() < 100);
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.lease_keys());
    }

    #[test]
    fn the_first_of_a_new_slot_waits_for_the_previous_slots_holder() {
        let rig = Rig::new(&[("lease_ms", "10000")]);
        // The previous slot's holder started just before the boundary.
        let boundary = (T0 / 10_000 + 1) * 10_000;
        rig.platform.advance(boundary - T0 + 5);
        let prev = rig.lease_key(boundary - 1);
        rig.platform.kv_put(&prev, b"1");
        let sealed = rig.sealed("prev-holder", boundary, 3600);
        let store_key = rig.key().store_key();
        rig.platform.on_sleep(move |p| {
            p.kv_put(&store_key, &sealed);
            p.kv_remove(&prev);
        });
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "prev-holder");
        assert!(rig.platform.sent.borrow().is_empty());
        assert!(rig.lease_keys().is_empty(), "its own lease is released");
    }

    #[test]
    fn a_stale_previous_lease_is_cleared_at_the_end_of_the_slot() {
        let rig = Rig::new(&[("lease_ms", "1000")]);
        let boundary = (T0 / 1000 + 1) * 1000;
        rig.platform.advance(boundary - T0 + 100);
        let prev = rig.lease_key(boundary - 1);
        rig.platform.kv_put(&prev, b"1");
        rig.platform.respond_token("took-over", 3600);
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "took-over");
        let slept = rig.platform.slept_ms.get();
        assert!(
            (850..=900).contains(&slept),
            "waited {slept} ms until the slot ended"
        );
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.lease_keys());
        assert_eq!(rig.platform.events("token.lease")[0]["outcome"], "stale");
    }

    #[test]
    fn a_failed_fetch_releases_the_lease_and_returns_the_error() {
        let rig = Rig::new(&[]);
        rig.platform
            .respond(Err(Error::Transport("connection refused".into())));
        assert!(matches!(rig.get(), Err(Error::Transport(_))));
        assert!(rig.lease_keys().is_empty());
    }

    #[test]
    fn a_lease_holder_rereads_the_store_before_fetching() {
        // Between this instance's miss and its increment, another holder stored the
        // token and released: the re-read finds it.
        let rig = Rig::new(&[]);
        let p = rig.provider();
        let l = Lookup::new(&TokenRequest::default(), &rig.settings).unwrap();
        rig.store_token("just-stored", T0, 3600);
        let t = p
            .fetch_holding(
                "default",
                &l,
                Lease {
                    key: rig.lease_key(T0),
                },
            )
            .unwrap();
        assert_eq!((t.token.expose(), t.source), ("just-stored", Source::Store));
        assert!(rig.platform.sent.borrow().is_empty());
    }

    #[test]
    fn with_the_lease_disabled_a_miss_fetches_at_once_and_nobody_renews_early() {
        let rig = Rig::new(&[("lease_ms", "0")]);
        rig.platform.kv_put(&rig.lease_key(T0), b"1");
        rig.platform.respond_token("direct", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "direct");
        assert_eq!(rig.platform.slept_ms.get(), 0);
        rig.platform.advance(44_000);
        rig.memory.borrow_mut().remove(&rig.key());
        assert_eq!(rig.get().unwrap().token.expose(), "direct");
        assert_eq!(rig.platform.sent.borrow().len(), 1);
    }

    #[test]
    fn a_failing_store_degrades_to_fetching_and_says_so() {
        let rig = Rig::new(&[]);
        rig.platform.fail_store(true);
        rig.platform.respond_token("t", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "t");
        assert!(!rig.platform.events("store.error").is_empty());
    }
}
