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
mod dpop;
mod entry_io;
pub(crate) mod failure;
mod fetch;
mod flight;
pub(crate) mod instance;
pub(crate) mod lease;
mod refresh;
mod rejected;
pub(crate) mod settings;
mod single_flight;
mod token;

#[cfg(test)]
mod ahead_tests;

use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::oauth::request::{TokenParams, TokenRequest};
use crate::platform::Platform;
use crate::secret::AccessToken;
use crate::store::{CacheKey, Entry};
use instance::MemoryCache;
use settings::ProviderSettings;
use std::cell::{OnceCell, RefCell};
pub use token::{IssuedToken, Source};

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

/// Why the store gave no usable entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No store, or no entry.
    Absent,
    /// An entry nobody may serve any more (expired, or it does not open).
    Unusable,
    /// The store could not be read.
    Failed,
    /// An entry dated further ahead of this clock than the skew allows
    /// (`store::ahead`): nothing this instance may serve, but nothing that says the
    /// token in its memory is gone either (this instance's clock may be the slow one).
    Ahead,
}

/// A renewal this instance is to run: the token due for refresh, the lease taken for
/// it (if there is a store) and the flight other requests of the instance see.
/// [`Provider::get_token`] runs it before answering; a WASIp3 adapter runs it after,
/// in a task of its own ([`Provider::renew`]). Dropped without running, it fails the
/// instance's waiters at once and leaves the lease to lapse (`lease_ms`).
pub struct Renewal {
    l: Lookup,
    entry: Entry,
    source: Source,
    lease: Option<lease::Lease>,
    boarded: flight::Boarded,
}

// Three references: copied into a task that outlives a request (a renewal), whatever
// the platform (a derive would ask `P: Copy`).
impl<P: Platform> Clone for Provider<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Platform> Copy for Provider<'_, P> {}

/// One token being looked for: the request's parameters and its cache key.
pub(crate) struct Lookup {
    pub params: TokenParams,
    pub key: CacheKey,
}

/// Of the valid token found so far and `found`, the one that expires later (the
/// earlier one on a tie).
fn later(valid: Option<(Entry, Source)>, found: (Entry, Source)) -> Option<(Entry, Source)> {
    match valid {
        Some(v) if found.0.expires_at_ms <= v.0.expires_at_ms => Some(v),
        _ => Some(found),
    }
}

impl Lookup {
    pub(crate) fn new(request: &TokenRequest, settings: &ProviderSettings) -> Result<Self, Error> {
        let params = TokenParams::resolve(request, &settings.client)?;
        let key = settings.cache_key(&params);
        Ok(Lookup { params, key })
    }
}

impl<'a, P: Platform> Provider<'a, P> {
    /// Whether the `audit` level writes `outcome` (`noted`: with a detail): an adapter
    /// asks before it computes what only the line needs.
    pub fn audits(&self, outcome: Outcome, noted: bool) -> bool {
        self.settings.audit.wants(outcome, noted)
    }

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

    /// A token for `request`, renewing it first if this instance is the one to renew
    /// it (the WASI 0.2 way: the request that renews waits for the renewal).
    pub async fn get_token(&self, request: &TokenRequest) -> Result<IssuedToken, Error> {
        match self.get_token_deferring(request).await? {
            (_, Some(renewal)) => Ok(self.renew(renewal).await),
            (token, None) => Ok(token),
        }
    }

    /// A token for `request` without waiting for a renewal: while a valid token
    /// exists it is returned at once, with the [`Renewal`] this instance is to run if
    /// the token is due and this instance took the lease (a WASIp3 adapter runs it in a
    /// task that outlives the request). Only a cold cache or an expired token makes the
    /// caller wait, for the fetch (shared with the instance's other requests, and
    /// across instances on the lease).
    pub async fn get_token_deferring(
        &self,
        request: &TokenRequest,
    ) -> Result<(IssuedToken, Option<Renewal>), Error> {
        let l = Lookup::new(request, self.settings)?;
        if request.force_refresh {
            return Ok((self.fetch(&l).await?, None));
        }
        let now = self.platform.now_unix_ms();
        let skew = self.settings.cache.expiry_skew_secs;
        let jitter = OnceCell::new();
        let due = |e: &Entry| self.refresh_due(e, now, &jitter);

        // A usable token inside its refresh window: served unless this instance renews it.
        let mut valid: Option<(Entry, Source)> = None;
        // A usable token in memory not checked against the store for
        // `memory_max_age_ms`, and whether the store had it: served only if the store
        // cannot tell (it fails, or it never got the token).
        let mut unchecked: Option<(Entry, bool)> = None;
        if let Some((e, checked_ms, stored)) = self.memory.borrow().get_checked(&l.key)
            && e.is_usable(now, skew)
        {
            match (self.memory_is_current(checked_ms), due(e)) {
                (false, _) => unchecked = Some((e.clone(), stored)),
                (true, false) => return Ok((self.memory_hit(&l, e), None)),
                (true, true) => valid = Some((e.clone(), Source::Memory)),
            }
        }
        match self.read_store_entry(&l, now, true) {
            Ok(e) => {
                if !due(&e) {
                    return Ok((self.store_hit(&l, e), None));
                }
                let checked = self.platform.monotonic_ms();
                self.memory
                    .borrow_mut()
                    .put(l.key.clone(), e.clone(), checked, true);
                valid = later(valid, (e, Source::Store));
            }
            // The store no longer holds what it held (another instance dropped it after
            // a 401): this instance's copy goes too.
            Err(Miss::Absent | Miss::Unusable) if unchecked.as_ref().is_some_and(|u| u.1) => {
                self.memory.borrow_mut().remove(&l.key)
            }
            // The store cannot tell (it fails, never got this token, or holds an entry
            // dated ahead of this clock): what this instance knows is the best there is.
            Err(_) => {
                if let Some((e, _)) = unchecked {
                    if !due(&e) {
                        return Ok((self.memory_hit(&l, &e), None));
                    }
                    valid = Some((e, Source::Memory));
                }
            }
        }
        match valid {
            Some((entry, source)) => Ok(self.refresh_ahead(l, entry, source)),
            None => Ok((self.fetch_in_flight(&l).await?, None)),
        }
    }

    /// Serve `entry` from this instance's memory, and say so.
    fn memory_hit(&self, l: &Lookup, entry: &Entry) -> IssuedToken {
        self.log_cache(Outcome::CacheHit, Source::Memory, l, Some(entry));
        IssuedToken::from_entry(entry, Source::Memory)
    }

    /// Whether a token checked against the store at `checked_ms` (monotonic) may still
    /// be served from memory: always without a store, for `memory_max_age_ms` with one.
    fn memory_is_current(&self, checked_ms: u64) -> bool {
        let cache = &self.settings.cache;
        cache.kv_store.is_none()
            || self.platform.monotonic_ms().saturating_sub(checked_ms) < cache.memory_max_age_ms
    }

    /// Nothing usable: wait for the fetch another request of this instance has in
    /// flight, or make it this request's (and fetch across instances on the lease).
    async fn fetch_in_flight(&self, l: &Lookup) -> Result<IssuedToken, Error> {
        // (A flight whose request was cancelled before it landed: this request flies.)
        if let Some(landing) = self.in_flight(&l.key) {
            match landing.await {
                Err(e) if flight::abandoned(&e) => {}
                // The token this request waited for was fetched for it (`Source::Fresh`
                // stays: the 401 rule fetches no other after it).
                outcome => return outcome,
            }
        }
        let boarded = self.board(&l.key);
        let outcome = self.fetch_single_flight(l).await;
        boarded.land(&outcome);
        outcome
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
        let stored = self.stored_entry(&l);
        self.drop_rejected(&l, rejected.as_ref(), stored);
    }

    /// The entry the store holds for `l` (`None` without a store; one that does not
    /// open counts as none).
    fn stored_entry(&self, l: &Lookup) -> Option<Result<Option<Entry>, String>> {
        let store = self.settings.cache.kv_store.as_deref()?;
        Some(self.platform.kv_get(store, &l.key.store_key()).map(|v| {
            v.and_then(|b| crate::store::seal::open(&b, &self.settings.cache.secret, &l.key).ok())
        }))
    }

    /// Forget `rejected` in this instance, and in the store only if the store still
    /// holds it. Another instance may have stored its successor a moment ago; deleting
    /// that would make every instance fetch again.
    /// `stored`: what the store holds for `l` ([`Provider::stored_entry`]), read once by
    /// the caller.
    fn drop_rejected(
        &self,
        l: &Lookup,
        rejected: Option<&AccessToken>,
        stored: Option<Result<Option<Entry>, String>>,
    ) {
        {
            // Only the rejected token: a late 401 (another request sent the same token)
            // must not drop the successor this instance already has.
            let mut memory = self.memory.borrow_mut();
            let held = memory.get(&l.key).map(|e| e.access_token.fingerprint());
            if rejected.is_none_or(|r| held.is_some_and(|h| h == r.fingerprint())) {
                memory.remove(&l.key);
            }
        }
        let mut outcome = Outcome::InvalidateOk;
        let mut detail = None;
        if let (Some(store), Some(stored)) = (&self.settings.cache.kv_store, stored) {
            let key = l.key.store_key();
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
    use crate::platform::ready;
    use crate::provider::lease::Holder;
    use crate::testing::{Rig, key_for, response};

    /// `memory_max_age_ms`: a token is served from memory only that long after it was
    /// last checked against the store. Then the store decides: gone (another instance
    /// dropped it after a 401) means a fetch, another token means that one; a store
    /// that cannot be read leaves memory in charge.
    #[test]
    fn memory_follows_the_store_after_memory_max_age_ms() {
        let rig = Rig::new(&[("memory_max_age_ms", "1000")]);
        let key = rig.key().store_key();
        rig.platform.respond_token("t1", 3600);
        assert_eq!(rig.get().unwrap().source, Source::Fresh);
        rig.platform.kv_remove(&key); // another instance got a 401 for t1
        rig.platform.advance(999);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t1", Source::Memory));

        rig.platform.advance(1);
        rig.platform.respond_token("t2", 3600);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t2", Source::Fresh));

        // Another instance stored a successor: after the bound, it is served.
        let now = rig.platform.now_unix_ms();
        rig.store_token("t3", now, 3600);
        rig.platform.advance(1000);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t3", Source::Store));

        rig.platform.advance(1000);
        rig.platform.fail_store(true);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t3", Source::Memory));
        assert_eq!(rig.platform.sent.borrow().len(), 2);
    }

    /// A token the store never got (its write failed) is not dropped because the store
    /// lacks it: that absence says nothing about it.
    #[test]
    fn a_token_the_store_never_got_stays_in_memory_past_memory_max_age_ms() {
        let rig = Rig::new(&[("memory_max_age_ms", "1000")]);
        rig.platform.respond_token("t1", 3600);
        rig.platform.fail_store(true);
        assert_eq!(rig.get().unwrap().source, Source::Fresh);
        rig.platform.fail_store(false);
        rig.platform.advance(5_000);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t1", Source::Memory));
        assert_eq!(rig.platform.sent.borrow().len(), 1, "no second fetch");
    }

    /// A 401 for a token this instance has already replaced (another request sent it
    /// too, and its answer came late) leaves the successor in memory.
    #[test]
    fn a_late_401_for_a_replaced_token_keeps_its_successor() {
        let rig = Rig::new(&[("kv_store", "")]);
        let request = TokenRequest::default();
        rig.platform.respond_token("t1", 3600);
        let t1 = rig.get().unwrap().token;
        let api = crate::origin::parse_origin("https://api.example.com").unwrap();
        assert!(rig.provider().rejected_by(&request, &t1, &api));
        rig.platform.respond_token("t2", 3600);
        assert_eq!(rig.get().unwrap().token.expose(), "t2");
        assert!(rig.provider().rejected_by(&request, &t1, &api)); // the late one
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t2", Source::Memory));
        assert_eq!(rig.platform.sent.borrow().len(), 2);
    }

    #[test]
    fn memory_max_age_ms_zero_reads_the_store_on_every_call() {
        let rig = Rig::new(&[("memory_max_age_ms", "0")]);
        rig.platform.respond_token("t1", 3600);
        rig.get().unwrap();
        assert_eq!(rig.get().unwrap().source, Source::Store);
        rig.platform.kv_remove(&rig.key().store_key());
        rig.platform.respond_token("t2", 3600);
        let t = rig.get().unwrap();
        assert_eq!((t.token.expose(), t.source), ("t2", Source::Fresh));
        // Without a store, memory is all there is.
        let alone = Rig::new(&[("memory_max_age_ms", "0"), ("kv_store", "")]);
        alone.platform.respond_token("m", 3600);
        alone.get().unwrap();
        assert_eq!(alone.get().unwrap().source, Source::Memory);
    }

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
                    rig.plant_holder_record(&key, h);
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
            match ready(rig.provider().get_token(&request)) {
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
