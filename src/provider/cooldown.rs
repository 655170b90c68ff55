//! Failure cooldown: after `invalid_client` or `unauthorized_client` every call fails
//! fast with the same error for `failure_cooldown_secs`, in this instance and, through
//! a record sealed under the secret, in every instance that shares the store (so a
//! rotated secret is tried at once: the old record no longer opens).

use super::Provider;
use crate::audit::{Event, Outcome};
use crate::error::{Error, OAuthError};
use crate::platform::Platform;
use crate::store::keys::roles;
use crate::store::{CacheKey, seal};
use crate::token_request::TokenParams;
use serde::{Deserialize, Serialize};

/// The token endpoint rejected the credentials: fail fast until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    pub error: String,
    pub description: Option<String>,
    pub status: u16,
    pub until_ms: u64,
}

impl Cooldown {
    /// The cooldown an error starts, if it is an OAuth error and cooldowns are on.
    pub fn after(e: &Error, secs: u64, now_ms: u64) -> Option<Cooldown> {
        let Error::OAuth(o) = e else {
            return None;
        };
        (secs > 0).then(|| Cooldown {
            error: o.error.clone(),
            description: o.description.clone(),
            status: o.status,
            until_ms: now_ms.saturating_add(secs.saturating_mul(1000)),
        })
    }

    /// The error to fail fast with at `now_ms`.
    pub fn error(&self, now_ms: u64) -> Error {
        let left = self.until_ms.saturating_sub(now_ms).div_ceil(1000);
        Error::OAuth(OAuthError {
            error: self.error.clone(),
            description: Some(format!(
                "the token endpoint rejected these credentials; failing fast for {left} s more (failure_cooldown_secs){}",
                self.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )),
            uri: None,
            status: self.status,
        })
    }
}

impl<P: Platform> Provider<'_, P> {
    /// A credential rejection seen by this instance or, through the store, by any
    /// other, less than `failure_cooldown_secs` ago: the error to fail fast with.
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
            let key = CacheKey::client(self.settings);
            match self.platform.kv_get(store, &key.failure()) {
                Ok(Some(bytes)) => {
                    found = seal::open_value::<Cooldown>(
                        &bytes,
                        &self.settings.client.secret,
                        &key.context(roles::FAILURE),
                    )
                    .ok()
                    .filter(|c| c.until_ms > now);
                }
                Ok(None) => {}
                Err(e) => self.store_error(params, e),
            }
        }
        let error = found?.error(now);
        let ev =
            Event::new(Outcome::FetchCooldown, self.settings, &params.scopes).with_error(&error);
        self.platform.log(&ev.to_line());
        Some(error)
    }

    pub(super) fn start_cooldown(&self, params: &TokenParams, e: &Error) {
        let secs = self.settings.retry.failure_cooldown_secs;
        if secs == 0 {
            return;
        }
        let Some(cooldown) = Cooldown::after(e, secs, self.platform.now_unix_ms()) else {
            return;
        };
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let key = CacheKey::client(self.settings);
            let sealed = seal::seal_value(
                &cooldown,
                &self.settings.client.secret,
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
    use crate::memory::MemoryCache;
    use crate::testing::{Rig, response, settings};

    #[test]
    fn only_oauth_errors_start_a_cooldown_and_its_error_counts_down() {
        let oauth = Error::OAuth(OAuthError {
            error: "invalid_client".into(),
            description: Some("bad secret".into()),
            uri: Some("https://example.com/err".into()),
            status: 401,
        });
        assert_eq!(Cooldown::after(&oauth, 0, 5_000), None, "0 disables");
        assert_eq!(Cooldown::after(&Error::Timeout, 60, 5_000), None);
        let c = Cooldown::after(&oauth, 60, 5_000).unwrap();
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
