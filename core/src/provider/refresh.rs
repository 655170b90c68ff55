//! Refresh ahead: inside the last `refresh_ahead_percent` of a token's usable life,
//! one instance (the lease holder) renews it while every other keeps serving the valid
//! token. After a failed renewal, renewals pause fleet-wide for a while.

use super::lease::{Attempt, Lease};
use super::single_flight::Held;
use super::{IssuedToken, Lookup, Provider, Renewal, Source};
use crate::audit::{Event, Outcome};
use crate::platform::Platform;
use crate::secret::Secret;
use crate::store::keys::{CacheKey, roles};
use crate::store::record;
use crate::store::{Entry, ahead, seal};
use serde::Serialize;
use std::cell::OnceCell;

/// Who may renew a token that is due for refresh.
enum Renewer {
    /// No shared store: this instance is the only one that can renew.
    Alone,
    /// This instance holds the lease.
    Holder(Lease),
    /// Somebody else renews (or nobody may): serve the cached token.
    Other,
}

/// A refresh pause as stored: sealed, so a value written without the credential (or
/// for another key) is no pause at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Pause {
    pub(crate) until_ms: u64,
}

impl record::Record for Pause {
    fn from_fields(f: &record::Fields) -> Option<Self> {
        Some(Pause {
            until_ms: f.u64("until_ms")?,
        })
    }
}

impl Pause {
    pub(crate) fn seal(
        &self,
        secret: &Secret,
        key: &CacheKey,
        nonce: [u8; seal::NONCE_LEN],
    ) -> Vec<u8> {
        seal::seal_value(self, secret, &key.context(roles::PAUSE), nonce)
    }

    /// Whether a stored pause value is a pause of `key` that lasts beyond `now_ms`; `Err`
    /// (its date, how far beyond) for one that lasts longer than `longest_ms` from now,
    /// the longest this instance would set (`store::ahead`).
    pub(crate) fn active(
        value: &[u8],
        secret: &Secret,
        key: &CacheKey,
        now_ms: u64,
        (longest_ms, tolerance_ms): (u64, u64),
    ) -> Result<bool, (u64, u64)> {
        match seal::open_value::<Pause>(value, secret, &key.context(roles::PAUSE)) {
            Ok(p) => ahead::deadline(p.until_ms, now_ms, longest_ms, tolerance_ms)
                .map(|until| until > now_ms)
                .map_err(|by| (p.until_ms, by)),
            Err(_) => Ok(false),
        }
    }
}

impl<'a, P: Platform> Provider<'a, P> {
    /// `entry` is inside this instance's refresh window. Jitter only moves the window
    /// start later, so it is drawn (a host call) only for an entry already past the
    /// earliest start, and at most once per call (`jitter`).
    pub(super) fn refresh_due(&self, entry: &Entry, now: u64, jitter: &OnceCell<u64>) -> bool {
        let c = &self.settings.cache;
        let (skew, percent) = (c.expiry_skew_secs, c.refresh_ahead_percent);
        entry.wants_refresh(now, skew, percent, 0)
            && entry.wants_refresh(
                now,
                skew,
                percent,
                *jitter.get_or_init(|| self.platform.random_below(1000)),
            )
    }

    /// `entry` is usable but inside this instance's refresh window: served at once,
    /// with the renewal to run if this instance is the one to renew it (it took the
    /// lease, or there is no store and no renewal of this instance is in flight).
    pub(super) fn refresh_ahead(
        &self,
        l: Lookup,
        entry: Entry,
        source: Source,
    ) -> (IssuedToken, Option<Renewal>) {
        let serve = |outcome| (self.serve_during_refresh(outcome, &l, &entry, source), None);
        if self.in_flight(&l.key).is_some() {
            // Another request of this instance is renewing it.
            return serve(Outcome::RefreshBusy);
        }
        if self.refresh_paused(&l) {
            return serve(Outcome::RefreshPaused);
        }
        let lease = match self.renewer(&l) {
            Renewer::Other => return serve(Outcome::RefreshBusy),
            Renewer::Alone => None,
            Renewer::Holder(own) => Some(own),
        };
        let boarded = self.board(&l.key);
        let token = IssuedToken::from_entry(&entry, source);
        let renewal = Renewal {
            l,
            entry,
            source,
            lease,
            boarded,
        };
        (token, Some(renewal))
    }

    /// Run `renewal`: the renewed token, or (the renewal failed: renewals pause) the
    /// token it was to replace. The lease is given back either way.
    pub async fn renew(&self, renewal: Renewal) -> IssuedToken {
        let Renewal {
            l,
            entry,
            source,
            lease,
            boarded,
        } = renewal;
        // Given back when done, or if this task is dropped mid-renewal.
        let held = lease.map(|own| Held::new(self, &l, own));
        if held.is_some() {
            let now = self.platform.now_unix_ms();
            if let Some(e) = self.read_store(&l, now, false)
                && e.expires_at_ms > entry.expires_at_ms
            {
                // Another instance renewed it a moment ago.
                drop(held);
                let renewed = self.store_hit(&l, e);
                boarded.land(&Ok(renewed.clone()));
                return renewed;
            }
        }
        let result = self.fetch(&l).await;
        drop(held);
        boarded.land(&result);
        result.unwrap_or_else(|e| {
            self.pause_refresh(&l);
            let mut ev = Event::new(
                Outcome::RefreshError,
                &self.settings.audit,
                &l.params.scopes,
            )
            .with_error(&e);
            ev.fingerprint = Some(entry.access_token.fingerprint());
            ev.expires_at = Some(entry.expires_at_secs());
            self.audit(&ev);
            IssuedToken::from_entry(&entry, source)
        })
    }

    fn renewer(&self, l: &Lookup) -> Renewer {
        if self.settings.cache.kv_store.is_none() {
            return Renewer::Alone;
        }
        // A shared store but no lease: renewing from every instance would be the herd
        // we avoid; serve the token until it is due.
        let Some(leases) = self.leases(l) else {
            return Renewer::Other;
        };
        match leases.try_acquire(leases.current_slot(), 0) {
            Ok(Attempt::Held(own)) => Renewer::Holder(own),
            Ok(Attempt::Queued { own, .. }) => {
                self.degrade(l, leases.release_queued(&own));
                Renewer::Other
            }
            Ok(Attempt::Busy { .. }) => Renewer::Other,
            Err(e) => {
                self.store_error(&l.params, e);
                Renewer::Other
            }
        }
    }

    /// After a failed renewal nobody (in this instance, or any sharing the store) tries
    /// again for `retry_max_delay_ms` (at least 1 s): an outage during the refresh window
    /// costs one attempt per pause, not one per request.
    fn pause_refresh(&self, l: &Lookup) {
        let until = self.platform.now_unix_ms().saturating_add(self.pause_ms());
        self.memory
            .borrow_mut()
            .refresh_paused
            .insert(l.key.clone(), until);
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let sealed = Pause { until_ms: until }.seal(
                &self.settings.cache.secret,
                &l.key,
                seal::nonce(self.platform),
            );
            let written = self.platform.kv_set(store, &l.key.refresh_pause(), &sealed);
            self.degrade(l, written);
        }
    }

    /// How long a failed renewal pauses the next ones.
    fn pause_ms(&self) -> u64 {
        self.settings.retry.policy.max_delay_ms.max(1000)
    }

    fn refresh_paused(&self, l: &Lookup) -> bool {
        let now = self.platform.now_unix_ms();
        let paused_here = self.memory.borrow().refresh_paused.get(&l.key).copied();
        if paused_here.is_some_and(|until| until > now) {
            return true;
        }
        let Some(store) = self.settings.cache.kv_store.as_deref() else {
            return false;
        };
        match self.platform.kv_get(store, &l.key.refresh_pause()) {
            Ok(Some(v)) => {
                let secret = &self.settings.cache.secret;
                let bounds = (self.pause_ms(), self.settings.cache.clock_tolerance_ms());
                match Pause::active(&v, secret, &l.key, now, bounds) {
                    Ok(true) => true,
                    Ok(false) => {
                        // Lapsed (or not ours): gone, so pauses leave no key behind.
                        let deleted = self.platform.kv_delete(store, &l.key.refresh_pause());
                        self.degrade(l, deleted);
                        false
                    }
                    // Dated ahead of this clock: ignored here, but left for the
                    // instances that believe it (this one may be the slow one); the
                    // next pause overwrites it.
                    Err((until, by)) => {
                        self.ahead_of_clock(&l.params.scopes, "pause", until, by);
                        false
                    }
                }
            }
            Ok(None) => false,
            Err(e) => {
                self.store_error(&l.params, e);
                false
            }
        }
    }

    fn serve_during_refresh(
        &self,
        outcome: Outcome,
        l: &Lookup,
        entry: &Entry,
        source: Source,
    ) -> IssuedToken {
        let mut ev = Event::new(outcome, &self.settings.audit, &l.params.scopes);
        ev.cache = Some(source.as_str());
        ev.fingerprint = Some(entry.access_token.fingerprint());
        ev.expires_at = Some(entry.expires_at_secs());
        self.audit(&ev);
        IssuedToken::from_entry(entry, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_types::HttpResponse;
    use crate::platform::ready;
    use crate::secret::AccessToken;
    use crate::testing::{Rig, T0};

    /// A token due for refresh is served at once with the renewal for the caller to
    /// run after answering (a WASIp3 instance does it in a task of its own); while it
    /// runs, the instance's other requests get the same token and start none.
    #[test]
    fn a_due_token_is_served_at_once_and_renewed_after_by_one_request() {
        let rig = Rig::new(&[]);
        rig.store_token("old", T0, 1000);
        rig.platform.advance(900_000); // inside the last 15 % (and past the jitter)
        rig.platform.respond_token("new", 1000);
        let p = rig.provider();
        let request = crate::TokenRequest::default();
        let (served, renewal) = ready(p.get_token_deferring(&request)).unwrap();
        assert_eq!(served.token.expose(), "old");
        let renewal = renewal.expect("this instance took the lease");
        assert!(rig.platform.sent.borrow().is_empty(), "nothing sent yet");

        let (again, none) = ready(p.get_token_deferring(&request)).unwrap();
        assert_eq!(again.token.expose(), "old");
        assert!(none.is_none(), "one renewal per instance");
        let busy = rig.platform.events("token.refresh");
        assert_eq!(busy.last().unwrap()["outcome"], "busy", "{busy:?}");

        let renewed = ready(p.renew(renewal));
        assert_eq!(
            (renewed.token.expose(), renewed.source),
            ("new", Source::Fresh)
        );
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        assert!(
            rig.platform.kv_keys().iter().all(|k| !k.contains(":lease")),
            "the lease is given back: {:?}",
            rig.platform.kv_keys()
        );
        let after = rig.get().unwrap();
        assert_eq!(
            (after.token.expose(), after.source),
            ("new", Source::Memory)
        );
    }

    #[test]
    fn a_pause_is_active_only_if_it_opens_for_this_key_and_lies_ahead() {
        let rig = Rig::new(&[]);
        let (secret, key) = (&rig.settings.cache.secret, rig.key());
        let sealed = |until_ms| Pause { until_ms }.seal(secret, &key, [5; 24]);
        let longest = (5_000, 1_000);
        assert_eq!(
            Pause::active(&sealed(1001), secret, &key, 1000, longest),
            Ok(true)
        );
        assert_eq!(
            Pause::active(&sealed(1000), secret, &key, 1000, longest),
            Ok(false)
        );
        let other = crate::testing::key_for(&rig.settings, &["other"]);
        assert_eq!(
            Pause::active(&sealed(u64::MAX), secret, &other, 0, longest),
            Ok(false)
        );
        let rotated = Secret::new("rotated");
        assert_eq!(
            Pause::active(&sealed(u64::MAX), &rotated, &key, 0, longest),
            Ok(false)
        );
        for junk in [&b""[..], b"soon", b"18446744073709551615", b"\xff"] {
            assert_eq!(
                Pause::active(junk, secret, &key, 0, longest),
                Ok(false),
                "{junk:?}"
            );
        }
        // Longer than this instance would pause, beyond the tolerance: not believed.
        assert_eq!(
            Pause::active(&sealed(7000), secret, &key, 1000, longest),
            Ok(true)
        );
        assert_eq!(
            Pause::active(&sealed(7001), secret, &key, 1000, longest),
            Err((7001, 1001))
        );
    }

    #[test]
    fn inside_the_refresh_window_one_instance_renews_and_the_others_do_not_wait() {
        // 100 s token, 15 % window, skew 60 s capped at 50 s: usable until 50 s,
        // window from 35 s (jitter moves an instance's start up to 7.5 s later).
        let rig = Rig::new(&[]);
        rig.store_token("old", T0, 100);
        rig.platform.advance(44_000);
        // Another instance holds the lease: serve the old token, no wait, no fetch.
        let lease_key = rig.lease_key(T0 + 44_000);
        rig.platform.kv_put(&lease_key, b"1");
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("old", Source::Store));
        assert_eq!(rig.platform.slept_ms.get(), 0);
        assert!(rig.platform.sent.borrow().is_empty());
        assert_eq!(rig.platform.events("token.refresh")[0]["outcome"], "busy");
        // Lease free: this instance renews and gets the new token.
        rig.platform.kv_remove(&lease_key);
        rig.memory.borrow_mut().remove(&rig.key());
        rig.platform.respond_token("new", 100);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("new", Source::Fresh));
        assert!(rig.lease_keys().is_empty());
        // Everyone now reads the renewed token.
        rig.memory.borrow_mut().remove(&rig.key());
        assert_eq!(rig.get().unwrap().token.expose(), "new");
        assert_eq!(rig.platform.sent.borrow().len(), 1);
    }

    #[test]
    fn a_forged_or_garbled_refresh_pause_in_the_store_is_ignored() {
        let pause_key = |rig: &Rig| rig.key().refresh_pause();
        for junk in [
            &b""[..],
            b"soon",
            b"-5",
            b"\xff\xfe",
            b"18446744073709551615",
        ] {
            let rig = Rig::new(&[]);
            rig.store_token("old", T0, 100);
            rig.platform.kv_put(&pause_key(&rig), junk);
            rig.platform.advance(44_000);
            rig.platform.respond_token("new", 100);
            assert_eq!(rig.get().unwrap().token.expose(), "new", "{junk:?}");
        }
        // A sealed pause far in the future (its writer's clock a day ahead) is longer
        // than any this instance sets: not believed, audited once, the renewal runs.
        let rig = Rig::new(&[]);
        rig.store_token("old", T0, 100);
        let day_ahead = T0 + 44_000 + 86_400_000;
        let pause = Pause {
            until_ms: day_ahead,
        }
        .seal(&rig.settings.cache.secret, &rig.key(), [1; 24]);
        rig.platform.kv_put(&pause_key(&rig), &pause);
        rig.platform.advance(44_000);
        rig.platform.respond_token("renewed", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "renewed");
        assert_eq!(
            rig.platform.sent.borrow().len(),
            1,
            "renewed despite the pause"
        );
        let ahead: Vec<_> = rig
            .platform
            .events("token.cache")
            .into_iter()
            .filter(|e| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("ahead-of-clock"))
            })
            .collect();
        assert_eq!(ahead.len(), 1, "{:?}", rig.platform.logs.borrow());
        assert!(
            ahead[0]["detail"]
                .as_str()
                .unwrap()
                .contains("pause record dated 86395 s beyond"),
            "{ahead:?}"
        );
        assert!(
            rig.platform.kv_value(&pause_key(&rig)).is_some(),
            "left for the instances that believe it"
        );
    }

    #[test]
    fn before_the_window_no_lease_is_touched() {
        let rig = Rig::new(&[]);
        rig.store_token("tok", T0, 100);
        rig.platform.advance(30_000);
        let t = rig.get().unwrap();
        assert_eq!(t.source, Source::Store);
        assert!(
            rig.platform.kv_keys().len() == 1,
            "{:?}",
            rig.platform.kv_keys()
        );
        assert!(rig.platform.events("token.refresh").is_empty());
    }

    #[test]
    fn a_failed_refresh_keeps_serving_the_valid_token_and_says_so() {
        let rig = Rig::new(&[("max_retries", "0")]);
        rig.store_token("still-valid", T0, 100);
        rig.platform.advance(44_000);
        rig.platform.respond(Ok(HttpResponse {
            status: 503,
            headers: vec![],
            body: b"down".to_vec(),
        }));
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "still-valid");
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        let ev = rig.platform.events("token.refresh");
        assert_eq!(
            (ev[0]["outcome"].as_str(), ev[0]["status"].as_u64()),
            (Some("error"), Some(503))
        );
        assert!(rig.lease_keys().is_empty());
        // Another instance right after: the renewal is paused fleet-wide, nothing is sent.
        rig.memory.borrow_mut().remove(&rig.key());
        rig.memory.borrow_mut().refresh_paused = Default::default();
        assert_eq!(rig.get().unwrap().token.expose(), "still-valid");
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        assert_eq!(
            rig.platform.events("token.refresh").last().unwrap()["outcome"],
            "paused"
        );
        // After the pause (retry_max_delay_ms, 5 s) one instance tries again.
        rig.platform.advance(5_001);
        rig.platform.respond_token("renewed", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "renewed");
        assert_eq!(rig.platform.sent.borrow().len(), 2);
        rig.store_token("still-valid", T0, 100);
        rig.memory.borrow_mut().remove(&rig.key());
        rig.platform.advance(4_999);
        // Once it is really due, the failure is the caller's.
        rig.platform.advance(10_000);
        rig.memory.borrow_mut().remove(&rig.key());
        assert!(rig.get().is_err());
    }

    #[test]
    fn jitter_spreads_the_start_of_the_refresh_window() {
        // 1000 instances at the very start of the window: about half begin renewing
        // (their jittered start is the window start), the rest only later.
        let rig = Rig::new(&[("kv_store", "")]);
        let entry = Entry {
            access_token: AccessToken::new("t"),
            scopes: vec![],
            issued_at_ms: T0,
            expires_at_ms: T0 + 100_000,
            dpop: None,
        };
        let at = entry.refresh_from_ms(60, 15, 500);
        let early = (0..1000)
            .filter(|_| entry.wants_refresh(at, 60, 15, rig.platform.random_below(1000)))
            .count();
        assert!((400..=600).contains(&early), "{early} of 1000");
    }

    #[test]
    fn without_a_store_an_instance_renews_its_own_token_ahead() {
        let rig = Rig::new(&[("kv_store", "")]);
        rig.platform.respond_token("a", 100);
        rig.get().unwrap();
        rig.platform.advance(44_000);
        rig.platform.respond_token("b", 100);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("b", Source::Fresh));
        assert!(rig.platform.kv_keys().is_empty());
    }
}
