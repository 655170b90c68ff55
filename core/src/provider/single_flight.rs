//! One fetch at a time per cache key across every instance that shares the store: the
//! instance that takes the lease (`lease`) fetches, the others poll the store for its
//! token; a dead holder is replaced by one elected waiter. Bounded by `lease_ms` per
//! holder and twice that in all.

use super::flight::{Boarded, Flight, Landing};
use super::lease::{Attempt, Lease, Leases, Look, MAX_GENERATION, Watch, look, poll_delay_ms};
use super::{IssuedToken, Lookup, Provider};
use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::platform::Platform;
use crate::store::{CacheKey, Entry};
use std::rc::Rc;

/// A lease this instance holds, given back when dropped: when its holder is done, and
/// also when the request holding it is cancelled mid-fetch (the future dropped, as
/// wit-bindgen does with a cancelled export task and everything it spawned), so no
/// instance waits for a holder that went away. The store calls are synchronous, so a
/// drop can make them.
pub(super) struct Held<'g, 'a, P: Platform> {
    provider: &'g Provider<'a, P>,
    l: &'g Lookup,
    lease: Lease,
}

impl<'g, 'a, P: Platform> Held<'g, 'a, P> {
    pub(super) fn new(provider: &'g Provider<'a, P>, l: &'g Lookup, lease: Lease) -> Self {
        Held { provider, l, lease }
    }
}

impl<P: Platform> Drop for Held<'_, '_, P> {
    fn drop(&mut self) {
        if let Some(leases) = self.provider.leases(self.l) {
            self.provider.degrade(self.l, leases.release(&self.lease));
        }
    }
}

/// What a waiter saw.
enum Waited {
    /// Another instance stored a usable token.
    Token(Entry),
    /// The lease was given back without a usable token (the holder failed).
    Released,
    /// The holder's time is up: elect a new one.
    Dead,
    /// The store could not be read: stop waiting.
    Broken,
}

impl<P: Platform> Provider<'_, P> {
    /// The fetch or renewal in progress for `key` in this instance, if any.
    pub(super) fn in_flight(&self, key: &CacheKey) -> Option<Landing> {
        let mut memory = self.memory.borrow_mut();
        match memory.flights.get(key) {
            Some(f) if !f.landed() => Some(Landing(f.clone())),
            Some(_) => {
                memory.flights.remove(key);
                None
            }
            None => None,
        }
    }

    /// Start this request's flight for `key` (none may be in progress): the other
    /// requests of the instance wait for it (`in_flight`).
    pub(super) fn board(&self, key: &CacheKey) -> Boarded {
        let flight = Rc::new(Flight::default());
        self.memory
            .borrow_mut()
            .flights
            .insert(key.clone(), flight.clone());
        Boarded(flight)
    }

    /// The lease operations of `l`'s key, if there is a store and the lease is on.
    pub(super) fn leases<'k>(&'k self, l: &'k Lookup) -> Option<Leases<'k, P>> {
        let store = self.settings.cache.kv_store.as_deref()?;
        self.leases_of(store, &l.key, &l.params.scopes)
    }

    /// The lease operations of `key` in `store` (a token's, or an issuer's discovery),
    /// if the lease is on; a holder record dated ahead is audited for `scopes`.
    pub(super) fn leases_of<'k>(
        &'k self,
        store: &'k str,
        key: &'k CacheKey,
        scopes: &'k [String],
    ) -> Option<Leases<'k, P>> {
        let lease_ms = self.settings.cache.lease_ms;
        (lease_ms > 0).then(|| Leases {
            platform: self.platform,
            store,
            key,
            secret: &self.settings.cache.secret,
            lease_ms,
            clock_tolerance_ms: self.settings.cache.clock_tolerance_ms(),
            on_ahead: Some(Box::new(move |started, by| {
                self.ahead_of_clock(scopes, "lease", started, by);
            })),
        })
    }

    /// No usable token anywhere: fetch, but only one instance at a time per cache key.
    pub(super) async fn fetch_single_flight(&self, l: &Lookup) -> Result<IssuedToken, Error> {
        let Some(leases) = self.leases(l) else {
            return self.fetch(l).await;
        };
        // A failure shared moments ago: no lease, no request.
        if let Some(e) = self.cooling_down(&l.params) {
            return Err(e);
        }
        let started = self.platform.monotonic_ms();
        let bound = started.saturating_add(leases.lease_ms.saturating_mul(2));
        let (mut slot, mut generation) = (leases.current_slot(), 0);
        // The counter of a dead holder this instance is electing a successor of.
        let mut dead: Option<(u64, u32)> = None;
        loop {
            if self.platform.monotonic_ms() >= bound || generation > MAX_GENERATION {
                self.log_lease(Outcome::LeaseTimeout, l, started, None);
                return self.fetch(l).await;
            }
            let attempt = match leases.try_acquire(slot, generation) {
                Ok(a) => a,
                Err(e) => {
                    self.store_error(&l.params, e);
                    return self.fetch(l).await;
                }
            };
            match attempt {
                Attempt::Held(own) => {
                    if let Some((s, g)) = dead.take() {
                        self.log_lease(Outcome::LeaseStale, l, started, None);
                        self.degrade(l, leases.delete_counter(s, g));
                    }
                    return self.fetch_holding(&leases, l, own).await;
                }
                Attempt::Queued { own, watch } => {
                    return self
                        .fetch_queued(&leases, l, own, watch, bound, started)
                        .await;
                }
                Attempt::Busy(watch) => match self.wait_for(&leases, l, watch, bound).await {
                    Waited::Token(e) => return Ok(self.served_after_wait(l, e, started)),
                    // The holder finished without a token: its failure is ours, or
                    // try again from the start.
                    Waited::Released => {
                        if let Some(e) = self.cooling_down(&l.params) {
                            return Err(e);
                        }
                        (slot, generation) = (leases.current_slot(), 0);
                    }
                    // Elect a successor on the next generation of the dead lease.
                    Waited::Dead => {
                        dead = Some((watch.slot, watch.generation));
                        (slot, generation) = (watch.slot, watch.generation + 1);
                    }
                    Waited::Broken => return self.fetch(l).await,
                },
            }
        }
    }

    /// Holding a counter while another holder may still be fetching: wait for its
    /// token, then record ourselves and act as the holder.
    async fn fetch_queued(
        &self,
        leases: &Leases<'_, P>,
        l: &Lookup,
        own: Lease,
        watch: Watch,
        bound: u64,
        started: u64,
    ) -> Result<IssuedToken, Error> {
        match self.wait_for(leases, l, watch, bound).await {
            Waited::Token(e) => {
                self.degrade(l, leases.release_queued(&own));
                return Ok(self.served_after_wait(l, e, started));
            }
            Waited::Released | Waited::Broken => {}
            Waited::Dead => {
                // Its holder is gone: clear its counter and take over.
                self.log_lease(Outcome::LeaseStale, l, started, None);
                self.degrade(l, leases.delete_counter(watch.slot, watch.generation));
            }
        }
        self.degrade(l, leases.record(&own));
        self.fetch_holding(leases, l, own).await
    }

    /// Holding the lease: re-read the store (another holder may have just finished),
    /// fetch if still needed, always release (also when this request is cancelled
    /// mid-fetch: `Held`).
    pub(super) async fn fetch_holding(
        &self,
        _leases: &Leases<'_, P>,
        l: &Lookup,
        lease: Lease,
    ) -> Result<IssuedToken, Error> {
        let held = Held::new(self, l, lease);
        let now = self.platform.now_unix_ms();
        if let Some(e) = self.read_store_as_holder(l, now) {
            drop(held);
            return Ok(self.store_hit(l, e));
        }
        let result = self.fetch(l).await;
        drop(held);
        result
    }

    /// Poll the store until a usable token appears, the watched lease is given back,
    /// or its holder's time (at most `bound`, monotonic) is up.
    async fn wait_for(
        &self,
        leases: &Leases<'_, P>,
        l: &Lookup,
        mut watch: Watch,
        bound: u64,
    ) -> Waited {
        let mono = || self.platform.monotonic_ms();
        let mut deadline = mono().saturating_add(watch.wait_ms).min(bound);
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_sub(mono());
            if left > 0 {
                self.platform
                    .sleep_ms(poll_delay_ms(self.platform, attempt).min(left))
                    .await;
                attempt += 1;
            }
            if let Some(e) = self.read_store(l, self.platform.now_unix_ms(), false) {
                return Waited::Token(e);
            }
            let record = match leases.holder_record() {
                Ok(r) => r,
                Err(e) => {
                    self.store_error(&l.params, e);
                    return Waited::Broken;
                }
            };
            if let Some(h) = record.filter(|h| {
                !watch.recorded && (h.slot, h.generation) == (watch.slot, watch.generation)
            }) {
                // The holder we waited on wrote its record: wait for it properly.
                watch.recorded = true;
                let left = h
                    .until_ms(leases.lease_ms)
                    .saturating_sub(self.platform.now_unix_ms())
                    .min(leases.lease_ms);
                deadline = mono().saturating_add(left).min(bound);
            }
            match look(&watch, record, deadline.saturating_sub(mono())) {
                Look::Wait => {}
                Look::Released => return Waited::Released,
                Look::Dead => return Waited::Dead,
            }
        }
    }

    fn served_after_wait(&self, l: &Lookup, entry: Entry, started: u64) -> IssuedToken {
        self.log_lease(Outcome::LeaseWaited, l, started, Some(&entry));
        self.remember_stored(l, entry)
    }

    /// A lease step that failed on the store: logged, never fatal.
    pub(super) fn degrade(&self, l: &Lookup, result: Result<(), String>) {
        if let Err(e) = result {
            self.store_error(&l.params, e);
        }
    }

    fn log_lease(&self, outcome: Outcome, l: &Lookup, started: u64, entry: Option<&Entry>) {
        let mut ev = Event::new(outcome, &self.settings.audit, &l.params.scopes);
        ev.duration_ms = Some(self.platform.monotonic_ms().saturating_sub(started));
        ev.fingerprint = entry.map(|e| e.access_token.fingerprint());
        ev.expires_at = entry.map(Entry::expires_at_secs);
        self.audit(&ev);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Lookup, Source};
    use super::*;
    use crate::oauth::request::TokenRequest;
    use crate::platform::ready;
    use crate::provider::lease::Holder;
    use crate::testing::{Rig, T0};

    /// The store keys a planted holder occupies.
    fn holder_keys(rig: &Rig, h: Holder) -> [String; 2] {
        let key = rig.key();
        [key.lease(h.slot, h.generation), key.lease_holder()]
    }

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
        let keys = holder_keys(&rig, rig.plant_holder(T0 - 100));
        let sealed = rig.sealed("from-holder", T0, 3600);
        let store_key = rig.key().store_key();
        let mut sleeps = 0;
        rig.platform.on_sleep(move |p| {
            sleeps += 1;
            if sleeps == 3 {
                // The holder finishes: stores the token, then releases the lease.
                p.kv_put(&store_key, &sealed);
                keys.iter().for_each(|k| p.kv_remove(k));
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
    fn a_dead_lease_holder_is_waited_on_until_its_time_is_up_then_replaced() {
        // The holder started 500 ms ago and died: the waiter waits out the rest of its
        // lease on the monotonic clock, elects itself, deletes the dead counter,
        // fetches once and leaves no lease key behind.
        let rig = Rig::new(&[("lease_ms", "2000"), ("token_deadline_ms", "1500")]);
        rig.plant_holder(T0 - 500);
        rig.platform.respond_token("own", 3600);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("own", Source::Fresh));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        let slept = rig.platform.slept_ms.get();
        assert!((1400..=1500).contains(&slept), "waited {slept} ms");
        assert_eq!(rig.platform.events("token.lease")[0]["outcome"], "stale");
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.lease_keys());
    }

    #[test]
    fn a_counter_no_holder_record_backs_delays_a_caller_by_the_grace_only() {
        // A forged counter, or a holder that died before recording itself.
        let rig = Rig::new(&[]);
        rig.platform.kv_put(&rig.lease_key(T0), b"7");
        rig.platform.respond_token("own", 3600);
        assert_eq!(rig.get().unwrap().token.expose(), "own");
        let slept = rig.platform.slept_ms.get();
        assert!(slept <= super::super::lease::UNRECORDED_GRACE_MS, "{slept}");
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.lease_keys());
    }

    #[test]
    fn a_holder_that_fails_releases_and_a_waiter_takes_over() {
        let rig = Rig::new(&[]);
        let keys = holder_keys(&rig, rig.plant_holder(T0 - 100));
        let mut sleeps = 0;
        rig.platform.on_sleep(move |p| {
            sleeps += 1;
            if sleeps == 2 {
                // The holder gave up without a token.
                keys.iter().for_each(|k| p.kv_remove(k));
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
        let rig = Rig::new(&[("lease_ms", "10000"), ("token_deadline_ms", "9000")]);
        // The previous slot's holder started just before the boundary.
        let boundary = (T0 / 10_000 + 1) * 10_000;
        rig.platform.advance(boundary - T0 + 5);
        let keys = holder_keys(&rig, rig.plant_holder(boundary - 1));
        let sealed = rig.sealed("prev-holder", boundary, 3600);
        let store_key = rig.key().store_key();
        rig.platform.on_sleep(move |p| {
            p.kv_put(&store_key, &sealed);
            keys.iter().for_each(|k| p.kv_remove(k));
        });
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "prev-holder");
        assert!(rig.platform.sent.borrow().is_empty());
        assert!(rig.lease_keys().is_empty(), "its own lease is released");
    }

    #[test]
    fn a_dead_previous_slot_holder_is_cleared_when_its_time_is_up() {
        let rig = Rig::new(&[("lease_ms", "1000"), ("token_deadline_ms", "900")]);
        let boundary = (T0 / 1000 + 1) * 1000;
        rig.platform.advance(boundary - T0 + 100);
        rig.plant_holder(boundary - 1);
        rig.platform.respond_token("took-over", 3600);
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "took-over");
        let slept = rig.platform.slept_ms.get();
        assert!(
            (850..=900).contains(&slept),
            "waited {slept} ms until its lease ended"
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
        let leases = p.leases(&l).unwrap();
        let Attempt::Held(own) = leases.try_acquire(leases.current_slot(), 0).unwrap() else {
            panic!()
        };
        rig.store_token("just-stored", T0, 3600);
        let t = ready(p.fetch_holding(&leases, &l, own)).unwrap();
        assert_eq!((t.token.expose(), t.source), ("just-stored", Source::Store));
        assert!(rig.platform.sent.borrow().is_empty());
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.lease_keys());
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

    mod in_one_instance {
        use super::super::super::flight::ABANDONED;
        use super::super::super::{IssuedToken, Source};
        use crate::error::Error;
        use crate::secret::AccessToken;
        use crate::testing::{Rig, poll_once};
        use std::future::Future;
        use std::pin::Pin;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll, Wake, Waker};

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        fn token() -> IssuedToken {
            IssuedToken {
                token: AccessToken::new("t"),
                expires_at: 1,
                scopes: vec![],
                source: Source::Fresh,
                token_type: crate::oauth::dpop::TokenType::Bearer,
                dpop: None,
            }
        }

        /// Two requests of one instance, cold cache, the token request in flight: the
        /// second waits for the first's fetch (it neither sends nor polls the store),
        /// and both get its token.
        #[test]
        fn concurrent_requests_of_an_instance_share_one_fetch() {
            let rig = Rig::new(&[]);
            rig.platform.respond_token("t", 3600);
            rig.platform.hold_sends.set(true);
            let p = rig.provider();
            let request = crate::TokenRequest::default();
            let mut first = std::pin::pin!(p.get_token(&request));
            let mut second = std::pin::pin!(p.get_token(&request));
            assert!(poll_once(first.as_mut()).is_pending());
            assert!(poll_once(second.as_mut()).is_pending());
            rig.platform.hold_sends.set(false);
            let Poll::Ready(Ok(a)) = poll_once(first.as_mut()) else {
                panic!("the first request fetched")
            };
            let Poll::Ready(Ok(b)) = poll_once(second.as_mut()) else {
                panic!("the second request got its token")
            };
            assert_eq!((a.token.expose(), a.source), ("t", Source::Fresh));
            // Fetched for it too (it waited on that fetch): the 401 rule fetches no
            // other after it.
            assert_eq!((b.token.expose(), b.source), ("t", Source::Fresh));
            assert_eq!(rig.platform.sent.borrow().len(), 1, "one token request");
            assert_eq!(rig.platform.slept_ms.get(), 0, "nobody polled the store");
        }

        /// The request fetching under the lease is cancelled mid-fetch (its future
        /// dropped, as wit-bindgen drops a cancelled export task): the lease is given
        /// back at once, and the request that waited on its flight fetches itself.
        #[test]
        fn a_cancelled_fetch_gives_the_lease_back_and_its_waiter_fetches() {
            let rig = Rig::new(&[]);
            rig.platform.respond_token("t", 3600);
            rig.platform.hold_sends.set(true);
            let p = rig.provider();
            let request = crate::TokenRequest::default();
            let leases = || {
                rig.platform
                    .kv_keys()
                    .iter()
                    .filter(|k| k.contains(":lease") || k.contains(":holder"))
                    .count()
            };
            let mut second = std::pin::pin!(p.get_token(&request));
            {
                let mut first = std::pin::pin!(p.get_token(&request));
                assert!(poll_once(first.as_mut()).is_pending());
                assert!(leases() > 0, "the first request holds the lease");
                assert!(poll_once(second.as_mut()).is_pending());
            } // the first request is cancelled
            assert_eq!(leases(), 0, "given back: {:?}", rig.platform.kv_keys());
            rig.platform.hold_sends.set(false);
            let Poll::Ready(Ok(t)) = poll_once(second.as_mut()) else {
                panic!("the waiter fetched")
            };
            assert_eq!((t.token.expose(), t.source), ("t", Source::Fresh));
            // (The cancelled request never got its request out.)
            assert_eq!(rig.platform.sent.borrow().len(), 1);
            assert_eq!(leases(), 0);
        }

        /// A renewal dropped mid-fetch gives its lease back too.
        #[test]
        fn a_cancelled_renewal_gives_the_lease_back() {
            let rig = Rig::new(&[]);
            rig.store_token("old", crate::testing::T0, 1000);
            rig.platform.advance(900_000);
            rig.platform.hold_sends.set(true);
            let p = rig.provider();
            let request = crate::TokenRequest::default();
            let (_, renewal) = crate::platform::ready(p.get_token_deferring(&request)).unwrap();
            {
                let mut renewing = std::pin::pin!(p.renew(renewal.unwrap()));
                assert!(poll_once(renewing.as_mut()).is_pending());
            }
            let left: Vec<String> = rig
                .platform
                .kv_keys()
                .into_iter()
                .filter(|k| k.contains(":lease") || k.contains(":holder"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
            assert!(p.in_flight(&rig.key()).is_none(), "no renewal in flight");
        }

        #[test]
        fn waiters_are_woken_with_the_outcome_and_a_landed_flight_is_none() {
            let rig = Rig::new(&[]);
            let p = rig.provider();
            let key = rig.key();
            assert!(p.in_flight(&key).is_none());
            let boarded = p.board(&key);
            let mut landing = p.in_flight(&key).expect("in flight");
            let count = Arc::new(Count(AtomicUsize::new(0)));
            let waker = Waker::from(count.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(Pin::new(&mut landing).poll(&mut cx).is_pending());
            boarded.land(&Ok(token()));
            assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
            assert_eq!(
                Pin::new(&mut landing).poll(&mut cx),
                Poll::Ready(Ok(token()))
            );
            assert!(p.in_flight(&key).is_none(), "landed: no flight");
            assert_eq!(rig.memory.borrow().flights.len(), 0, "and gone from memory");
        }

        #[test]
        fn a_flight_dropped_before_it_lands_fails_its_waiters() {
            let rig = Rig::new(&[]);
            let p = rig.provider();
            let key = rig.key();
            let boarded = p.board(&key);
            let mut landing = p.in_flight(&key).unwrap();
            drop(boarded);
            let mut cx = Context::from_waker(Waker::noop());
            match Pin::new(&mut landing).poll(&mut cx) {
                Poll::Ready(Err(Error::Transport(m))) => assert_eq!(m, ABANDONED),
                other => panic!("{other:?}"),
            }
            assert!(p.in_flight(&key).is_none());
        }
    }
}
