//! Shared failures, the I/O: a [`Cooldown`] (its rules are in `failure`) is kept in this
//! instance and, through a record sealed under the credential at the client's
//! `failure` key, in every instance that shares the store; a call fails fast while one
//! has not lapsed.
//!
//! - **Credentials** (`invalid_client`, `unauthorized_client`): for
//!   `failure_cooldown_secs`. A rotated secret is tried at once (the old record does
//!   not open under the new credential, and lives under its key id).
//! - **Outage** (the token endpoint answered 5xx or 429, or could not be reached, after
//!   the retries): for `retry_max_delay_ms` (at least 1 s) or the server's
//!   `Retry-After` if longer, at most `failure_cooldown_secs`. So an endpoint that is
//!   down costs the fleet one retry sequence per window, not one per caller, and a
//!   long `Retry-After` holds every instance back, not just the one that got it.
//!
//! A caller with a valid cached token never sees it: the token is served (renewals
//! wait). `failure_cooldown_secs = 0` turns both off.

use super::Provider;
use super::failure::Cooldown;
use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::oauth::request::TokenParams;
use crate::platform::Platform;
use crate::store::keys::roles;
use crate::store::{ahead, seal};

impl<P: Platform> Provider<'_, P> {
    /// A shared failure seen by this instance or, through the store, by any other, that
    /// has not lapsed: the error to fail fast with (logged).
    pub(super) fn cooling_down(&self, params: &TokenParams) -> Option<Error> {
        if self.settings.retry.failure_cooldown_secs == 0 {
            return None;
        }
        let now = self.platform.now_unix_ms();
        let mut found = self
            .memory
            .borrow()
            .cooldown
            .clone()
            .filter(|c| c.until_ms > now);
        if found.is_none()
            && let Some(store) = self.settings.cache.kv_store.as_deref()
        {
            let key = self.settings.client_key();
            match self.platform.kv_get(store, &key.failure()) {
                Ok(Some(bytes)) => {
                    found = seal::open_value::<Cooldown>(
                        &bytes,
                        &self.settings.cache.secret,
                        &key.context(roles::FAILURE),
                    )
                    .ok()
                    .and_then(|c| self.believed(params, c, now))
                    .filter(|c| c.until_ms > now);
                }
                Ok(None) => {}
                Err(e) => self.store_error(params, e),
            }
        }
        let error = found?.error(now);
        let ev = Event::new(Outcome::FetchCooldown, &self.settings.audit, &params.scopes)
            .with_error(&error);
        self.audit(&ev);
        Some(error)
    }

    /// A stored cooldown as far as this instance believes it: never longer than
    /// `failure_cooldown_secs` from now, and none at all if it claims more than that
    /// (`store::ahead`).
    fn believed(&self, params: &TokenParams, mut c: Cooldown, now: u64) -> Option<Cooldown> {
        let cap_ms = self
            .settings
            .retry
            .failure_cooldown_secs
            .saturating_mul(1000);
        let tolerance = self.settings.cache.clock_tolerance_ms();
        match ahead::deadline(c.until_ms, now, cap_ms, tolerance) {
            Ok(until) => {
                c.until_ms = until;
                Some(c)
            }
            Err(by) => {
                self.ahead_of_clock(&params.scopes, "failure", c.until_ms, by);
                None
            }
        }
    }

    /// Share `e` if it starts a cooldown.
    pub(super) fn start_cooldown(&self, params: &TokenParams, e: &Error, retry_after: Option<u64>) {
        let now = self.platform.now_unix_ms();
        let Some(cooldown) = Cooldown::after(e, &self.settings.retry, retry_after, now) else {
            return;
        };
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let key = self.settings.client_key();
            let sealed = seal::seal_value(
                &cooldown,
                &self.settings.cache.secret,
                &key.context(roles::FAILURE),
                seal::nonce(self.platform),
            );
            if let Err(e) = self.platform.kv_set(store, &key.failure(), &sealed) {
                self.store_error(params, e);
            }
        }
        self.memory.borrow_mut().cooldown = Some(cooldown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OAuthError;
    use crate::provider::instance::MemoryCache;
    use crate::testing::{Rig, T0, response, settings};

    #[test]
    fn rejected_credentials_start_a_cooldown_and_its_error_counts_down() {
        let oauth = Error::OAuth(OAuthError {
            error: "invalid_client".into(),
            description: Some("bad secret".into()),
            uri: Some("https://example.com/err".into()),
            status: 401,
        });
        let off = settings(&[("failure_cooldown_secs", "0")]);
        assert_eq!(
            Cooldown::after(&oauth, &off.retry, None, 5_000),
            None,
            "0 disables"
        );
        assert_eq!(
            Cooldown::after(&Error::Timeout, &off.retry, None, 5_000),
            None
        );
        let s = settings(&[("failure_cooldown_secs", "60")]);
        let scope = Error::OAuth(OAuthError {
            error: "invalid_scope".into(),
            description: None,
            uri: None,
            status: 400,
        });
        assert_eq!(
            Cooldown::after(&scope, &s.retry, None, 5_000),
            None,
            "per request"
        );
        let c = Cooldown::after(&oauth, &s.retry, None, 5_000).unwrap();
        assert!(!c.outage);
        assert_eq!(c.until_ms, 65_000);
        let Error::OAuth(e) = c.error(5_001) else {
            panic!()
        };
        assert_eq!(
            (e.error.as_str(), e.status, e.uri),
            ("invalid_client", 401, None)
        );
        assert_eq!(
            e.description.as_deref(),
            Some(
                "the token endpoint rejected these credentials; failing fast for 60 s more (failure_cooldown_secs): bad secret"
            )
        );
    }

    #[test]
    fn an_outage_lasts_the_longest_backoff_or_the_retry_after_within_the_cap() {
        let s = settings(&[
            ("failure_cooldown_secs", "60"),
            ("retry_max_delay_ms", "5000"),
        ]);
        let down = Error::Server {
            status: 503,
            message: "maintenance".into(),
        };
        let c = Cooldown::after(&down, &s.retry, None, 1_000).unwrap();
        assert!(c.outage);
        assert_eq!(c.until_ms, 6_000);
        let longer = Cooldown::after(&down, &s.retry, Some(30_000), 1_000).unwrap();
        assert_eq!(longer.until_ms, 31_000, "Retry-After honoured");
        let capped = Cooldown::after(&down, &s.retry, Some(u64::MAX), 1_000).unwrap();
        assert_eq!(capped.until_ms, 61_000, "at most failure_cooldown_secs");
        let short = settings(&[("retry_max_delay_ms", "0")]);
        assert_eq!(
            Cooldown::after(&Error::Timeout, &short.retry, None, 0)
                .unwrap()
                .until_ms,
            1_000,
            "at least 1 s"
        );
        // The shared error keeps the original's kind and says why nothing was sent.
        assert_eq!(
            c.error(2_000).to_string(),
            "server error (HTTP 503): the token endpoint failed moments ago; failing fast for 4 s more: maintenance"
        );
        let t = Cooldown::after(
            &Error::Transport("connection refused".into()),
            &s.retry,
            None,
            0,
        );
        assert!(
            matches!(t.unwrap().error(0), Error::Transport(m) if m.ends_with(": connection refused"))
        );
        assert_eq!(
            Cooldown::after(&Error::Timeout, &s.retry, None, 0)
                .unwrap()
                .error(0),
            Error::Timeout
        );
    }

    #[test]
    fn an_outage_is_shared_and_every_later_caller_fails_fast_until_it_lapses() {
        let rig = Rig::new(&[("max_retries", "2")]);
        for _ in 0..3 {
            rig.platform
                .respond(Ok(response(503, &[("retry-after", "2")], "down")));
        }
        assert!(matches!(rig.get(), Err(Error::Server { status: 503, .. })));
        assert_eq!(rig.platform.sent.borrow().len(), 3, "one retry sequence");
        // Ten more callers, each a fresh instance on the same store: nothing is sent.
        for _ in 0..10 {
            *rig.memory.borrow_mut() = MemoryCache::default();
            let e = rig.get().unwrap_err();
            assert!(e.to_string().contains("failing fast"), "{e}");
        }
        assert_eq!(rig.platform.sent.borrow().len(), 3);
        assert!(rig.lease_keys().is_empty(), "{:?}", rig.lease_keys());
        // Once it lapses (the backoff ceiling, 5 s by default), the endpoint is asked.
        rig.platform.advance(5_001);
        rig.platform.respond_token("back", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "back");
    }

    #[test]
    fn a_valid_cached_token_is_served_through_an_outage() {
        let rig = Rig::new(&[]);
        rig.store_token("valid", T0, 100);
        rig.platform.advance(44_000); // inside the refresh window
        for _ in 0..3 {
            rig.platform.respond(Ok(response(503, &[], "down")));
        }
        assert_eq!(rig.get().unwrap().token.expose(), "valid");
        *rig.memory.borrow_mut() = MemoryCache::default();
        assert_eq!(rig.get().unwrap().token.expose(), "valid");
        assert_eq!(rig.platform.sent.borrow().len(), 3);
    }

    #[test]
    fn invalid_client_starts_a_cooldown_shared_through_the_store() {
        let rig = Rig::new(&[("failure_cooldown_secs", "60")]);
        rig.platform.respond(Ok(response(
            401,
            &[],
            r#"{"error":"invalid_client","error_description":"bad secret"}"#,
        )));
        assert!(matches!(rig.get(), Err(Error::OAuth(ref o)) if o.error == "invalid_client"));
        assert_eq!(rig.platform.sent.borrow().len(), 1, "not retried");
        // This instance and a fresh one (empty memory, same store) fail fast.
        let again = rig.get().unwrap_err();
        let Error::OAuth(o) = &again else {
            panic!("{again:?}")
        };
        assert_eq!((o.error.as_str(), o.status), ("invalid_client", 401));
        assert!(
            o.description
                .as_deref()
                .unwrap()
                .contains("failing fast for 60 s"),
            "{o:?}"
        );
        *rig.memory.borrow_mut() = MemoryCache::default();
        assert!(rig.get().is_err());
        assert_eq!(
            rig.platform.sent.borrow().len(),
            1,
            "nothing sent while cooling down"
        );
        assert_eq!(
            rig.platform.events("token.fetch").last().unwrap()["outcome"],
            "cooldown"
        );
        // After the cooldown the server is asked again.
        rig.platform.advance(60_001);
        rig.platform.respond_token("fixed", 100);
        assert_eq!(rig.get().unwrap().token.expose(), "fixed");
    }

    #[test]
    fn a_rotated_secret_is_tried_at_once_despite_the_cooldown() {
        let rig = Rig::new(&[]);
        rig.platform
            .respond(Ok(response(401, &[], r#"{"error":"invalid_client"}"#)));
        assert!(rig.get().is_err());
        // Same store, new secret: the sealed cooldown no longer opens.
        let rotated = Rig {
            settings: settings(&[("client_secret", "rotated")]),
            ..Rig::new(&[])
        };
        for k in rig.platform.kv_keys() {
            rotated
                .platform
                .kv_put(&k, &rig.platform.kv_value(&k).unwrap());
        }
        rotated.platform.respond_token("works", 100);
        assert_eq!(rotated.get().unwrap().token.expose(), "works");
    }
}
