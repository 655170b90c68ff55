//! `get-token` and `invalidate`: the lookup policy. A token comes from this instance's
//! memory, then the shared store, then the token endpoint; one instance at a time
//! fetches for each cache key (`single_flight`, on the store's `lease`), and one renews
//! a token inside the last part of its life while the others keep using it
//! (`refresh`). `fetch` makes one token request with its retries; `cooldown` fails fast
//! after a credential rejection; `entry_io` reads and writes the store, whose every key
//! is built in `crate::store::keys`. Every decision is one audit line
//! (`crate::audit::Outcome`).

pub(crate) mod cooldown;
mod discovery;
mod entry_io;
pub(crate) mod failure;
mod fetch;
pub(crate) mod instance;
pub(crate) mod lease;
mod refresh;
pub(crate) mod settings;
mod single_flight;

use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::oauth::request::{TokenParams, TokenRequest};
use crate::platform::Platform;
use crate::secret::AccessToken;
use crate::store::{CacheKey, Entry};
use instance::MemoryCache;
use settings::ProviderSettings;
use std::cell::{OnceCell, RefCell};

/// Where a token came from (mirrors the WIT `token-source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Fresh,
    Memory,
    Store,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Fresh => "fresh",
            Source::Memory => "memory",
            Source::Store => "store",
        }
    }
}

/// A token handed to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: AccessToken,
    pub expires_at: u64,
    pub scopes: Vec<String>,
    pub source: Source,
}

impl IssuedToken {
    fn from_entry(e: &Entry, source: Source) -> Self {
        IssuedToken {
            token: e.access_token.clone(),
            expires_at: e.expires_at_secs(),
            scopes: e.scopes.clone(),
            source,
        }
    }
}

/// One instance's provider: its settings, its platform (every I/O) and its memory,
/// borrowed for a call.
pub struct Provider<'a, P: Platform> {
    /// What `get-token` and `invalidate` need of the settings.
    pub settings: &'a ProviderSettings,
    /// The WASI adapters, or the tests' fakes.
    pub platform: &'a P,
    /// This instance's memory (tokens, shared failures, discovered metadata).
    pub memory: &'a RefCell<MemoryCache>,
}

/// One token being looked for: the request's parameters and its cache key.
pub(crate) struct Lookup {
    pub params: TokenParams,
    pub key: CacheKey,
}

impl Lookup {
    pub(crate) fn new(request: &TokenRequest, settings: &ProviderSettings) -> Result<Self, Error> {
        let params = TokenParams::resolve(request, &settings.client)?;
        let key = settings.cache_key(&params);
        Ok(Lookup { params, key })
    }
}

impl<P: Platform> Provider<'_, P> {
    /// Write `event` if the `audit` level wants it.
    pub fn audit(&self, event: &Event) {
        if self
            .settings
            .audit
            .wants(event.what, event.detail.is_some())
        {
            self.platform.log(&event.to_line());
        }
    }

    pub fn get_token(&self, request: &TokenRequest) -> Result<IssuedToken, Error> {
        let l = Lookup::new(request, self.settings)?;
        if request.force_refresh {
            return self.fetch(&l);
        }
        let now = self.platform.now_unix_ms();
        let skew = self.settings.cache.expiry_skew_secs;
        let jitter = OnceCell::new();
        let due = |e: &Entry| self.refresh_due(e, now, &jitter);

        // A usable token inside its refresh window: served unless this instance renews it.
        let mut valid: Option<(Entry, Source)> = None;
        if let Some(e) = self.memory.borrow().get(&l.key)
            && e.is_usable(now, skew)
        {
            if !due(e) {
                self.log_cache(Outcome::CacheHit, Source::Memory, &l, Some(e));
                return Ok(IssuedToken::from_entry(e, Source::Memory));
            }
            valid = Some((e.clone(), Source::Memory));
        }
        if let Some(e) = self.read_store(&l, now, true) {
            if !due(&e) {
                return Ok(self.store_hit(&l, e));
            }
            self.memory.borrow_mut().put(l.key.clone(), e.clone());
            if valid
                .as_ref()
                .is_none_or(|(v, _)| e.expires_at_ms > v.expires_at_ms)
            {
                valid = Some((e, Source::Store));
            }
        }
        match valid {
            Some((entry, source)) => Ok(self.refresh_ahead(&l, entry, source)),
            None => self.fetch_single_flight(&l),
        }
    }

    /// The WIT `invalidate`: the token this instance handed out for `request` was
    /// rejected. Without a token in memory there is nothing to compare with, and the
    /// stored one is dropped.
    pub fn invalidate(&self, request: &TokenRequest) {
        let Ok(l) = Lookup::new(request, self.settings) else {
            // A request that cannot be resolved names no cached token.
            return;
        };
        let rejected = self
            .memory
            .borrow()
            .get(&l.key)
            .map(|e| e.access_token.clone());
        self.drop_rejected(&l, rejected.as_ref());
    }

    /// An API rejected `rejected` (a 401): forget it in this instance, and in the store
    /// only if the store still holds it. Another instance may have stored its
    /// successor a moment ago; deleting that would make every instance fetch again.
    pub fn invalidate_token(&self, request: &TokenRequest, rejected: &AccessToken) {
        if let Ok(l) = Lookup::new(request, self.settings) {
            self.drop_rejected(&l, Some(rejected));
        }
    }

    fn drop_rejected(&self, l: &Lookup, rejected: Option<&AccessToken>) {
        self.memory.borrow_mut().remove(&l.key);
        let mut outcome = Outcome::InvalidateOk;
        let mut detail = None;
        if let Some(store) = &self.settings.cache.kv_store {
            let key = l.key.store_key();
            let stored = self.platform.kv_get(store, &key).map(|v| {
                v.and_then(|b| {
                    crate::store::seal::open(&b, &self.settings.cache.secret, &l.key).ok()
                })
            });
            let delete = match (&stored, rejected) {
                (Ok(Some(e)), Some(r)) if e.access_token.fingerprint() != r.fingerprint() => {
                    outcome = Outcome::InvalidateKept;
                    false
                }
                (Ok(None), _) => false,
                _ => true,
            };
            let result = match stored {
                Err(e) => Err(e),
                Ok(_) if delete => self.platform.kv_delete(store, &key),
                Ok(_) => Ok(()),
            };
            if let Err(e) = result {
                outcome = Outcome::InvalidateStoreError;
                detail = Some(e);
            }
        }
        let mut event = Event::new(outcome, &self.settings.audit, &l.params.scopes);
        event.fingerprint = rejected.map(AccessToken::fingerprint);
        if let Some(d) = detail {
            event = event.with_detail(&d);
        }
        self.audit(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::lease::Holder;
    use crate::store::keys::roles;
    use crate::store::seal;
    use crate::testing::{Rig, key_for, response};

    #[test]
    fn the_audit_level_decides_which_lines_are_written() {
        let lines = |level: &str, fail: bool| {
            let rig = Rig::new(&[("audit", level), ("max_retries", "0")]);
            if fail {
                rig.platform.respond(Ok(response(503, &[], "down")));
                assert!(rig.get().is_err());
            } else {
                rig.platform.respond_token("t", 3600);
                rig.get().unwrap(); // miss, fetch
                *rig.memory.borrow_mut() = MemoryCache::default();
                rig.get().unwrap(); // store hit
                rig.get().unwrap(); // memory hit
            }
            rig.platform
                .logs
                .borrow()
                .iter()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    format!(
                        "{} {}",
                        v["event"].as_str().unwrap(),
                        v["outcome"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines("all", false),
            [
                "token.cache miss",
                "token.fetch ok",
                "token.cache hit",
                "token.cache hit"
            ]
        );
        // The default: no line for a hit.
        assert_eq!(
            lines("changes", false),
            ["token.cache miss", "token.fetch ok"]
        );
        assert!(lines("errors", false).is_empty());
        assert_eq!(lines("errors", true), ["token.fetch error"]);
        assert!(lines("off", true).is_empty());
        assert_eq!(
            crate::testing::settings(&[]).audit.level,
            crate::audit::Level::Changes
        );
    }

    #[test]
    fn a_thousand_calls_across_lifetimes_crashes_and_failures_leave_a_bounded_store() {
        let rig = Rig::new(&[("lease_ms", "2000"), ("token_deadline_ms", "1500")]);
        let scope_sets = ["a", "b", "c", "d", "e"];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (mut ok, mut failed, mut crashes) = (0, 0, 0);
        for i in 0..1000 {
            let scope = scope_sets[i % scope_sets.len()];
            let key = key_for(&rig.settings, &[scope]);
            rig.platform.clear_responses();
            match next(10) {
                // The token endpoint is down for this call.
                0 => (0..3).for_each(|_| rig.platform.respond(Ok(response(503, &[], "down")))),
                // A lease holder of this key died a moment ago.
                1 => {
                    crashes += 1;
                    let now = rig.platform.now_unix_ms();
                    let h = Holder {
                        slot: now / 2000,
                        generation: 0,
                        started_ms: now,
                    };
                    rig.platform.kv_put(&key.lease(h.slot, 0), b"1");
                    let sealed = seal::seal_value(
                        &h,
                        &rig.settings.cache.secret,
                        &key.context(roles::HOLDER),
                        [6; 24],
                    );
                    rig.platform.kv_put(&key.lease_holder(), &sealed);
                    rig.platform.respond_token(&format!("t{i}"), 60);
                }
                _ => rig.platform.respond_token(&format!("t{i}"), 60),
            }
            // Most calls come from a fresh instance (nothing in memory).
            if next(4) != 0 {
                *rig.memory.borrow_mut() = MemoryCache::default();
            }
            let request = TokenRequest {
                scopes: Some(vec![scope.into()]),
                ..Default::default()
            };
            match rig.provider().get_token(&request) {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
            rig.platform.advance(next(30_000));
        }
        let keys = rig.platform.kv_keys();
        println!(
            "1000 calls ({ok} ok, {failed} failed, {crashes} crashed holders): {} keys left: {keys:#?}",
            keys.len()
        );
        assert!(
            ok > 800 && failed > 0 && crashes > 50,
            "{ok} {failed} {crashes}"
        );
        // At most: one entry and one refresh pause per scope set, one shared failure.
        assert!(keys.len() <= 2 * scope_sets.len() + 1, "{keys:#?}");
        assert!(
            keys.iter()
                .all(|k| !k.contains(":lease:") && !k.contains(":holder:")),
            "{keys:#?}"
        );
    }
}
