//! Refresh ahead: inside the last `refresh_ahead_percent` of a token's usable life,
//! one instance (the lease holder) renews it while every other keeps serving the valid
//! token. After a failed renewal, renewals pause fleet-wide for a while.

use super::lease::Attempt;
use super::{IssuedToken, Lookup, Provider, Source};
use crate::audit::{Event, Outcome};
use crate::platform::Platform;
use crate::store::{Entry, keys};
use std::cell::OnceCell;

/// Who may renew a token that is due for refresh.
enum Renewer<'s> {
    /// No shared store: this instance is the only one that can renew.
    Alone,
    /// This instance holds the lease in `store`.
    Holder(&'s str, super::lease::Lease),
    /// Somebody else renews (or nobody may): serve the cached token.
    Other,
}

/// A stored pause value: the end of the pause (Unix ms) as text. A garbled or forged
/// value can only delay a renewal until the token is due, never stop service.
pub fn pause_active(value: &[u8], now_ms: u64) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|until| until > now_ms)
}

impl<P: Platform> Provider<'_, P> {
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

    /// `entry` is usable but inside this instance's refresh window: if this instance
    /// gets the lease it renews the token; otherwise (or if renewing fails) `entry` is
    /// served at once.
    pub(super) fn refresh_ahead(&self, l: &Lookup, entry: Entry, source: Source) -> IssuedToken {
        if self.refresh_paused(l) {
            return self.serve_during_refresh(Outcome::RefreshPaused, l, &entry, source);
        }
        let lease = match self.renewer(l) {
            Renewer::Other => {
                return self.serve_during_refresh(Outcome::RefreshBusy, l, &entry, source);
            }
            Renewer::Alone => None,
            Renewer::Holder(store, own) => {
                let now = self.platform.now_unix_ms();
                if let Some(e) = self.read_store(l, now, false)
                    && e.expires_at_ms > entry.expires_at_ms
                {
                    // Another instance renewed it a moment ago.
                    self.release(store, l, own);
                    return self.store_hit(l, e);
                }
                Some((store, own))
            }
        };
        let result = self.fetch(l);
        if let Some((store, own)) = lease {
            self.release(store, l, own);
        }
        result.unwrap_or_else(|e| {
            self.pause_refresh(l);
            let mut ev =
                Event::new(Outcome::RefreshError, self.settings, &l.params.scopes).with_error(&e);
            ev.fingerprint = Some(entry.access_token.fingerprint());
            ev.expires_at = Some(entry.expires_at_secs());
            self.platform.log(&ev.to_line());
            IssuedToken::from_entry(&entry, source)
        })
    }

    fn renewer(&self, l: &Lookup) -> Renewer<'_> {
        if self.settings.cache.kv_store.is_none() {
            return Renewer::Alone;
        }
        // A shared store but no lease: renewing from every instance would be the herd
        // we avoid; serve the token until it is due.
        let Some(store) = self.lease_store() else {
            return Renewer::Other;
        };
        let base = l.key.store_key();
        match super::lease::try_acquire(self.platform, store, &base, self.settings.cache.lease_ms) {
            Ok(Attempt::Held(own)) => Renewer::Holder(store, own),
            Ok(Attempt::Queued { own, .. }) => {
                self.release(store, l, own);
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
        let until = self
            .platform
            .now_unix_ms()
            .saturating_add(self.settings.retry.policy.max_delay_ms.max(1000));
        self.memory
            .borrow_mut()
            .refresh_paused
            .insert(l.key.clone(), until);
        if let Some(store) = self.settings.cache.kv_store.as_deref()
            && let Err(e) = self.platform.kv_set(
                store,
                &keys::refresh_pause(&l.key),
                until.to_string().as_bytes(),
            )
        {
            self.store_error(&l.params, e);
        }
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
        match self.platform.kv_get(store, &keys::refresh_pause(&l.key)) {
            Ok(Some(v)) => pause_active(&v, now),
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
        let mut ev = Event::new(outcome, self.settings, &l.params.scopes);
        ev.cache = Some(source.as_str());
        ev.fingerprint = Some(entry.access_token.fingerprint());
        ev.expires_at = Some(entry.expires_at_secs());
        self.platform.log(&ev.to_line());
        IssuedToken::from_entry(entry, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_types::HttpResponse;
    use crate::secret::AccessToken;
    use crate::testing::{Rig, T0};

    #[test]
    fn a_pause_value_is_active_only_while_it_parses_and_lies_ahead() {
        assert!(pause_active(b"1001", 1000));
        assert!(!pause_active(b"1000", 1000));
        for junk in [
            &b""[..],
            b"soon",
            b"-5",
            b"\xff",
            b"1e9",
            b"99999999999999999999999",
        ] {
            assert!(!pause_active(junk, 0), "{junk:?}");
        }
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
    fn a_garbled_refresh_pause_in_the_store_is_ignored_and_a_forged_one_only_delays() {
        let pause_key = |rig: &Rig| keys::refresh_pause(&rig.key());
        for junk in [
            &b""[..],
            b"soon",
            b"-5",
            b"\xff\xfe",
            b"99999999999999999999999",
        ] {
            let rig = Rig::new(&[]);
            rig.store_token("old", T0, 100);
            rig.platform.kv_put(&pause_key(&rig), junk);
            rig.platform.advance(44_000);
            rig.platform.respond_token("new", 100);
            assert_eq!(rig.get().unwrap().token.expose(), "new", "{junk:?}");
        }
        // A pause far in the future stops renewals, never service: the cached token is
        // served, and once it is due the ordinary miss path fetches.
        let rig = Rig::new(&[]);
        rig.store_token("old", T0, 100);
        rig.platform
            .kv_put(&pause_key(&rig), u64::MAX.to_string().as_bytes());
        rig.platform.advance(44_000);
        assert_eq!(rig.get().unwrap().token.expose(), "old");
        assert!(rig.platform.sent.borrow().is_empty());
        rig.platform.advance(10_000);
        rig.memory.borrow_mut().remove(&rig.key());
        rig.platform.respond_token("due", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "due");
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
        rig.memory.borrow_mut().refresh_paused.clear();
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
