//! `get-token` and `invalidate`: memory cache, then the shared store, then the token
//! endpoint, with one fetch at a time across every instance that shares the store
//! (`lease`) and refresh-ahead inside the last part of a token's lifetime. Every
//! decision is one audit line.

use crate::audit::Event;
use crate::cache::{self, CacheKey, Cooldown, Entry, MemoryCache};
use crate::config::{MAX_TOKEN_RESPONSE_BYTES, Settings};
use crate::error::{Error, OAuthError};
use crate::http_types::HttpOptions;
use crate::lease::{self, Attempt, Lease};
use crate::platform::Platform;
use crate::retry::{self, Next};
use crate::secret::AccessToken;
use crate::token_request::{self, TokenParams, TokenRequest};
use crate::token_response::{self, Lifetimes};
use std::cell::RefCell;

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

pub struct Provider<'a, P: Platform> {
    pub settings: &'a Settings,
    pub platform: &'a P,
    pub memory: &'a RefCell<MemoryCache>,
}

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
    pub fn get_token(&self, request: &TokenRequest) -> Result<IssuedToken, Error> {
        let params = TokenParams::resolve(request, self.settings)?;
        let key = CacheKey::new(self.settings, &params);
        if request.force_refresh {
            return self.fetch(&params, &key);
        }
        let now = self.platform.now_unix_ms();
        let skew = self.settings.expiry_skew_secs;
        let percent = self.settings.refresh_ahead_percent;
        // Jitter only moves an instance's window start later, so it is drawn (a host
        // call) only for an entry already past the earliest start, not on every hit.
        let jitter = std::cell::OnceCell::new();
        let wants_refresh = |e: &Entry| {
            e.wants_refresh(now, skew, percent, 0)
                && e.wants_refresh(
                    now,
                    skew,
                    percent,
                    *jitter.get_or_init(|| self.platform.random_below(1000)),
                )
        };

        // A usable token inside its refresh window: served unless this instance renews it.
        let mut valid: Option<(Entry, Source)> = None;
        if let Some(e) = self.memory.borrow().get(&key)
            && e.is_usable(now, skew)
        {
            if !wants_refresh(e) {
                self.log_cache("hit", "memory", &params, Some(e), None);
                return Ok(issued(e, Source::Memory));
            }
            valid = Some((e.clone(), Source::Memory));
        }
        if let Some(store) = self.settings.kv_store.as_deref()
            && let Some(e) = self.read_store(store, &params, &key, now, true)
        {
            self.memory.borrow_mut().put(key.clone(), e.clone());
            if !wants_refresh(&e) {
                self.log_cache("hit", "store", &params, Some(&e), None);
                return Ok(issued(&e, Source::Store));
            }
            if valid
                .as_ref()
                .is_none_or(|(v, _)| e.expires_at_ms > v.expires_at_ms)
            {
                valid = Some((e, Source::Store));
            }
        }
        match valid {
            Some((entry, source)) => Ok(self.refresh_ahead(&params, &key, entry, source)),
            None => self.fetch_single_flight(&params, &key),
        }
    }

    pub fn invalidate(&self, request: &TokenRequest) {
        // A request that cannot be resolved names no cached token: nothing to drop.
        let Ok(params) = TokenParams::resolve(request, self.settings) else {
            return;
        };
        let key = CacheKey::new(self.settings, &params);
        self.memory.borrow_mut().remove(&key);
        let mut event = Event::new("token.invalidate", "ok", self.settings, &params.scopes);
        if let Some(store) = &self.settings.kv_store
            && let Err(e) = self.platform.kv_delete(store, &key.store_key())
        {
            event.outcome = "store_error";
            event.detail = Some(e);
        }
        self.platform.log(&event.to_line());
    }

    /// The store that coordinates fetches, if there is one and the lease is enabled.
    fn lease_store(&self) -> Option<&str> {
        match (&self.settings.kv_store, self.settings.lease_ms) {
            (Some(store), ms) if ms > 0 => Some(store),
            _ => None,
        }
    }

    /// A usable entry from the shared store. Misses, expired and rejected entries are
    /// logged when `log` is set; store failures always are.
    fn read_store(
        &self,
        store: &str,
        params: &TokenParams,
        key: &CacheKey,
        now: u64,
        log: bool,
    ) -> Option<Entry> {
        let skew = self.settings.expiry_skew_secs;
        match self.platform.kv_get(store, &key.store_key()) {
            Ok(None) if log => self.log_cache("miss", "store", params, None, None),
            Ok(None) => {}
            Ok(Some(bytes)) => match cache::open(&bytes, &self.settings.client_secret, key) {
                Ok(e) if e.is_usable(now, skew) => return Some(e),
                Ok(e) if log => self.log_cache("expired", "store", params, Some(&e), None),
                Ok(_) => {}
                Err(why) if log => self.log_cache(
                    "rejected",
                    "store",
                    params,
                    None,
                    Some(format!("stored entry rejected ({})", why.as_str())),
                ),
                Err(_) => {}
            },
            Err(e) => self.store_error(params, e),
        }
        None
    }

    /// No usable token anywhere: fetch, but only one instance at a time per cache key.
    fn fetch_single_flight(
        &self,
        params: &TokenParams,
        key: &CacheKey,
    ) -> Result<IssuedToken, Error> {
        let Some(store) = self.lease_store() else {
            return self.fetch(params, key);
        };
        let lease_ms = self.settings.lease_ms;
        let base = key.store_key();
        let started = self.platform.monotonic_ms();
        let deadline = self.platform.now_unix_ms().saturating_add(lease_ms);
        loop {
            if self.platform.now_unix_ms() >= deadline {
                self.log_lease("timeout", params, started, None);
                return self.fetch(params, key);
            }
            match lease::try_acquire(self.platform, store, &base, lease_ms) {
                Err(e) => {
                    self.store_error(params, e);
                    return self.fetch(params, key);
                }
                Ok(Attempt::Held(own)) => return self.fetch_holding(store, params, key, own),
                Ok(Attempt::Queued {
                    own,
                    watch,
                    until_ms,
                }) => {
                    match self.wait_for(store, params, key, &watch, until_ms) {
                        Waited::Token(e) => {
                            self.release(store, params, own);
                            return Ok(self.served_after_wait(params, key, e, started));
                        }
                        Waited::Released => {}
                        Waited::TimedOut => {
                            // Its holder is gone: clear the stale lease and take over.
                            self.log_lease("stale", params, started, None);
                            if let Err(e) = self.platform.kv_delete(store, &watch) {
                                self.store_error(params, e);
                            }
                        }
                    }
                    return self.fetch_holding(store, params, key, own);
                }
                Ok(Attempt::Busy { watch, until_ms }) => {
                    match self.wait_for(store, params, key, &watch, until_ms.min(deadline)) {
                        Waited::Token(e) => {
                            return Ok(self.served_after_wait(params, key, e, started));
                        }
                        // The holder finished without a token: try to take over.
                        Waited::Released => continue,
                        Waited::TimedOut => {
                            self.log_lease("timeout", params, started, None);
                            return self.fetch(params, key);
                        }
                    }
                }
            }
        }
    }

    /// Holding the lease: re-read the store (another holder may have just finished),
    /// fetch if still needed, always release.
    fn fetch_holding(
        &self,
        store: &str,
        params: &TokenParams,
        key: &CacheKey,
        lease: Lease,
    ) -> Result<IssuedToken, Error> {
        let now = self.platform.now_unix_ms();
        if let Some(e) = self.read_store(store, params, key, now, false) {
            self.release(store, params, lease);
            self.log_cache("hit", "store", params, Some(&e), None);
            self.memory.borrow_mut().put(key.clone(), e.clone());
            return Ok(issued(&e, Source::Store));
        }
        let result = self.fetch(params, key);
        self.release(store, params, lease);
        result
    }

    /// Poll the store until a usable token appears, the lease at `watch` disappears, or
    /// `until_ms` passes.
    fn wait_for(
        &self,
        store: &str,
        params: &TokenParams,
        key: &CacheKey,
        watch: &str,
        until_ms: u64,
    ) -> Waited {
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
            if let Some(e) = self.read_store(store, params, key, now, false) {
                return Waited::Token(e);
            }
            match self.platform.kv_get(store, watch) {
                Ok(Some(_)) => {}
                Ok(None) => return Waited::Released,
                Err(e) => {
                    // Cannot watch: stop waiting, the caller fetches.
                    self.store_error(params, e);
                    return Waited::TimedOut;
                }
            }
        }
    }

    fn served_after_wait(
        &self,
        params: &TokenParams,
        key: &CacheKey,
        entry: Entry,
        started: u64,
    ) -> IssuedToken {
        self.log_lease("waited", params, started, Some(&entry));
        self.memory.borrow_mut().put(key.clone(), entry.clone());
        issued(&entry, Source::Store)
    }

    /// `entry` is usable but inside this instance's refresh window: if this instance
    /// gets the lease it renews the token; otherwise (or if renewing fails) `entry` is
    /// served at once.
    fn refresh_ahead(
        &self,
        params: &TokenParams,
        key: &CacheKey,
        entry: Entry,
        source: Source,
    ) -> IssuedToken {
        if self.refresh_paused(params, key) {
            return self.serve_during_refresh("paused", params, &entry, source);
        }
        let lease = match (self.settings.kv_store.as_deref(), self.lease_store()) {
            // Alone (no shared store): this instance is the only one that can renew.
            (None, _) => None,
            // A shared store but no lease: renewing from every instance would be the
            // herd we avoid; serve the token until it is due.
            (Some(_), None) => return self.serve_during_refresh("busy", params, &entry, source),
            (Some(_), Some(store)) => {
                let base = key.store_key();
                match lease::try_acquire(self.platform, store, &base, self.settings.lease_ms) {
                    Ok(Attempt::Held(own)) => Some((store, own)),
                    Ok(Attempt::Queued { own, .. }) => {
                        self.release(store, params, own);
                        return self.serve_during_refresh("busy", params, &entry, source);
                    }
                    Ok(Attempt::Busy { .. }) => {
                        return self.serve_during_refresh("busy", params, &entry, source);
                    }
                    Err(e) => {
                        self.store_error(params, e);
                        return self.serve_during_refresh("busy", params, &entry, source);
                    }
                }
            }
        };
        if let Some((store, own)) = &lease {
            let now = self.platform.now_unix_ms();
            if let Some(e) = self.read_store(store, params, key, now, false)
                && e.expires_at_ms > entry.expires_at_ms
            {
                // Another instance renewed it a moment ago.
                self.release(store, params, own.clone());
                self.log_cache("hit", "store", params, Some(&e), None);
                self.memory.borrow_mut().put(key.clone(), e.clone());
                return issued(&e, Source::Store);
            }
        }
        let result = self.fetch(params, key);
        if let Some((store, own)) = lease {
            self.release(store, params, own);
        }
        match result {
            Ok(fresh) => fresh,
            Err(e) => {
                self.pause_refresh(params, key);
                let mut ev = Event::new("token.refresh", "error", self.settings, &params.scopes)
                    .with_error(&e);
                ev.fingerprint = Some(entry.access_token.fingerprint());
                ev.expires_at = Some(entry.expires_at_secs());
                ev.detail = Some(format!(
                    "refresh ahead failed, serving the cached token until it is due: {e}"
                ));
                self.platform.log(&ev.to_line());
                issued(&entry, source)
            }
        }
    }

    /// After a failed renewal nobody (in this instance, or any sharing the store) tries
    /// again for `retry_max_delay_ms` (at least 1 s): an outage during the refresh window
    /// costs one attempt per pause, not one per request.
    fn pause_refresh(&self, params: &TokenParams, key: &CacheKey) {
        let until = self
            .platform
            .now_unix_ms()
            .saturating_add(self.settings.retry_max_delay_ms.max(1000));
        self.memory
            .borrow_mut()
            .refresh_paused
            .insert(key.clone(), until);
        if let Some(store) = self.settings.kv_store.as_deref()
            && let Err(e) = self.platform.kv_set(
                store,
                &format!("{}:refresh-paused", key.store_key()),
                until.to_string().as_bytes(),
            )
        {
            self.store_error(params, e);
        }
    }

    fn refresh_paused(&self, params: &TokenParams, key: &CacheKey) -> bool {
        let now = self.platform.now_unix_ms();
        if self
            .memory
            .borrow()
            .refresh_paused
            .get(key)
            .is_some_and(|until| *until > now)
        {
            return true;
        }
        let Some(store) = self.settings.kv_store.as_deref() else {
            return false;
        };
        match self
            .platform
            .kv_get(store, &format!("{}:refresh-paused", key.store_key()))
        {
            // A forged or garbled value can only delay a renewal until the token is due.
            Ok(Some(v)) => std::str::from_utf8(&v)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|until| until > now),
            Ok(None) => false,
            Err(e) => {
                self.store_error(params, e);
                false
            }
        }
    }

    fn serve_during_refresh(
        &self,
        outcome: &'static str,
        params: &TokenParams,
        entry: &Entry,
        source: Source,
    ) -> IssuedToken {
        let mut ev = Event::new("token.refresh", outcome, self.settings, &params.scopes);
        ev.cache = Some(source.as_str());
        ev.fingerprint = Some(entry.access_token.fingerprint());
        ev.expires_at = Some(entry.expires_at_secs());
        ev.detail = Some(
            if outcome == "paused" {
                "a renewal failed a moment ago; serving the cached token until the pause ends"
            } else {
                "another instance is renewing the token; serving the cached one"
            }
            .into(),
        );
        self.platform.log(&ev.to_line());
        issued(entry, source)
    }

    fn release(&self, store: &str, params: &TokenParams, lease: Lease) {
        if let Err(e) = lease::release(self.platform, store, lease) {
            self.store_error(params, e);
        }
    }

    /// Ask the token endpoint, with retries (see `retry`), unless a credential
    /// rejection is cooling down.
    fn fetch(&self, params: &TokenParams, key: &CacheKey) -> Result<IssuedToken, Error> {
        if let Some(e) = self.cooling_down(params) {
            return Err(e);
        }
        let request = token_request::build(self.settings, params);
        let lifetimes = Lifetimes {
            default_expires_in: self.settings.default_expires_in_secs,
            max_expires_in: self.settings.max_expires_in_secs,
        };
        let policy = self.settings.retry_policy();
        let deadline = self
            .platform
            .monotonic_ms()
            .saturating_add(self.settings.token_deadline_ms);
        let mut attempt = 0u32;
        let (status, token, duration_ms) = loop {
            let started = self.platform.monotonic_ms();
            let options = HttpOptions {
                timeout_ms: self
                    .settings
                    .http_timeout_ms
                    .min(deadline.saturating_sub(started))
                    .max(1),
                read_limit: MAX_TOKEN_RESPONSE_BYTES + 1,
            };
            let mut retry_after = None;
            let outcome = self.platform.send(&request, options).and_then(|resp| {
                retry_after = resp
                    .header("retry-after")
                    .and_then(|v| retry::retry_after_ms(v, self.platform.now_unix_ms()));
                token_response::parse(&resp, &params.scopes, lifetimes).map(|t| (resp.status, t))
            });
            let now = self.platform.monotonic_ms();
            let duration_ms = now.saturating_sub(started);
            let e = match outcome {
                Ok((status, token)) => break (status, token, duration_ms),
                Err(e) => e,
            };
            let next = retry::next(&policy, attempt, &e, retry_after, now, deadline, |n| {
                self.platform.random_below(n)
            });
            let outcome = if matches!(next, Next::RetryIn(_)) {
                "retry"
            } else {
                "error"
            };
            let mut ev =
                Event::new("token.fetch", outcome, self.settings, &params.scopes).with_error(&e);
            ev.duration_ms = Some(duration_ms);
            ev.attempt = Some(attempt + 1);
            match next {
                Next::RetryIn(ms) => {
                    ev.retry_in_ms = Some(ms);
                    self.platform.log(&ev.to_line());
                    self.platform.sleep_ms(ms);
                    attempt += 1;
                }
                Next::Stop(_) => {
                    self.platform.log(&ev.to_line());
                    if retry::is_credential_rejection(&e) {
                        self.start_cooldown(params, &e);
                    }
                    return Err(e);
                }
            }
        };
        let duration_ms = Some(duration_ms);
        let now = self.platform.now_unix_ms();
        let entry = Entry {
            access_token: token.access_token,
            scopes: token.scopes,
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(token.expires_in.saturating_mul(1000)),
        };
        let mut ev = Event::new("token.fetch", "ok", self.settings, &entry.scopes);
        ev.status = Some(status);
        ev.duration_ms = duration_ms;
        ev.attempt = Some(attempt + 1);
        ev.fingerprint = Some(entry.access_token.fingerprint());
        ev.expires_at = Some(entry.expires_at_secs());
        self.platform.log(&ev.to_line());

        let fresh = issued(&entry, Source::Fresh);
        if entry.is_usable(now, self.settings.expiry_skew_secs) {
            if let Some(store) = &self.settings.kv_store {
                let mut nonce = [0u8; 24];
                self.platform.random_bytes(&mut nonce);
                let sealed = cache::seal(&entry, &self.settings.client_secret, key, nonce);
                if let Err(e) = self.platform.kv_set(store, &key.store_key(), &sealed) {
                    self.store_error(params, e);
                }
            }
            self.memory.borrow_mut().put(key.clone(), entry);
        }
        Ok(fresh)
    }

    /// A credential rejection seen by this instance or, through the store, by any
    /// other, less than `failure_cooldown_secs` ago: the error to fail fast with.
    fn cooling_down(&self, params: &TokenParams) -> Option<Error> {
        if self.settings.failure_cooldown_secs == 0 {
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
            && let Some(store) = self.settings.kv_store.as_deref()
        {
            let key = CacheKey::cooldown(self.settings);
            match self.platform.kv_get(store, &key.store_key()) {
                // Sealed under the secret: after a secret rotation it no longer opens,
                // so the new secret is tried at once.
                Ok(Some(bytes)) => {
                    found =
                        cache::open_value::<Cooldown>(&bytes, &self.settings.client_secret, &key)
                            .ok()
                            .filter(|c| c.until_ms > now);
                }
                Ok(None) => {}
                Err(e) => self.store_error(params, e),
            }
        }
        let c = found?;
        let left = c.until_ms.saturating_sub(now).div_ceil(1000);
        let error = Error::OAuth(OAuthError {
            error: c.error.clone(),
            description: Some(format!(
                "the token endpoint rejected these credentials; failing fast for {left} s more (failure_cooldown_secs){}",
                c.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )),
            uri: None,
            status: c.status,
        });
        let ev =
            Event::new("token.fetch", "cooldown", self.settings, &params.scopes).with_error(&error);
        self.platform.log(&ev.to_line());
        Some(error)
    }

    fn start_cooldown(&self, params: &TokenParams, e: &Error) {
        let (secs, Error::OAuth(o)) = (self.settings.failure_cooldown_secs, e) else {
            return;
        };
        if secs == 0 {
            return;
        }
        let cooldown = Cooldown {
            error: o.error.clone(),
            description: o.description.clone(),
            status: o.status,
            until_ms: self
                .platform
                .now_unix_ms()
                .saturating_add(secs.saturating_mul(1000)),
        };
        if let Some(store) = self.settings.kv_store.as_deref() {
            let key = CacheKey::cooldown(self.settings);
            let mut nonce = [0u8; 24];
            self.platform.random_bytes(&mut nonce);
            let sealed = cache::seal_value(&cooldown, &self.settings.client_secret, &key, nonce);
            if let Err(e) = self.platform.kv_set(store, &key.store_key(), &sealed) {
                self.store_error(params, e);
            }
        }
        self.memory.borrow_mut().cooldown = Some(cooldown);
    }

    fn log_cache(
        &self,
        outcome: &'static str,
        cache: &'static str,
        params: &TokenParams,
        entry: Option<&Entry>,
        detail: Option<String>,
    ) {
        let mut ev = Event::new("token.cache", outcome, self.settings, &params.scopes);
        ev.cache = Some(cache);
        ev.fingerprint = entry.map(|e| e.access_token.fingerprint());
        ev.expires_at = entry.map(Entry::expires_at_secs);
        ev.detail = detail;
        self.platform.log(&ev.to_line());
    }

    fn log_lease(
        &self,
        outcome: &'static str,
        params: &TokenParams,
        started: u64,
        entry: Option<&Entry>,
    ) {
        let mut ev = Event::new("token.lease", outcome, self.settings, &params.scopes);
        ev.duration_ms = Some(self.platform.monotonic_ms().saturating_sub(started));
        ev.fingerprint = entry.map(|e| e.access_token.fingerprint());
        ev.expires_at = entry.map(Entry::expires_at_secs);
        ev.detail = Some(
            match outcome {
                "waited" => "another instance fetched the token; used it",
                "stale" => "the previous lease holder did not finish in time; took over",
                _ => "waited the whole lease for another instance; fetching without it",
            }
            .into(),
        );
        self.platform.log(&ev.to_line());
    }

    fn store_error(&self, params: &TokenParams, message: String) {
        let mut ev = Event::new("store.error", "degraded", self.settings, &params.scopes);
        ev.detail = Some(format!(
            "key-value store failed, continuing without it: {message}"
        ));
        self.platform.log(&ev.to_line());
    }
}

fn issued(e: &Entry, source: Source) -> IssuedToken {
    IssuedToken {
        token: e.access_token.clone(),
        expires_at: e.expires_at_secs(),
        scopes: e.scopes.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakePlatform;
    use std::collections::HashMap;

    const T0: u64 = 1_800_000_000_000;

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut map = HashMap::from([
            ("token_url", "https://auth.example.com/token"),
            ("client_id", "svc"),
            ("client_secret", "secret"),
        ]);
        map.extend(extra.iter().copied());
        Settings::load(|k| Ok(map.get(k).map(|v| v.to_string()))).unwrap()
    }

    struct Rig {
        settings: Settings,
        platform: FakePlatform,
        memory: RefCell<MemoryCache>,
    }

    impl Rig {
        fn new(extra: &[(&str, &str)]) -> Self {
            Rig {
                settings: settings(extra),
                platform: FakePlatform::at(T0),
                memory: RefCell::new(MemoryCache::default()),
            }
        }

        fn get(&self) -> Result<IssuedToken, Error> {
            Provider {
                settings: &self.settings,
                platform: &self.platform,
                memory: &self.memory,
            }
            .get_token(&TokenRequest::default())
        }

        fn key(&self) -> CacheKey {
            let params = TokenParams::resolve(&TokenRequest::default(), &self.settings).unwrap();
            CacheKey::new(&self.settings, &params)
        }

        /// Seal an entry as another instance would have stored it.
        fn sealed(&self, token: &str, issued_at_ms: u64, lifetime_secs: u64) -> Vec<u8> {
            let entry = Entry {
                access_token: AccessToken::new(token),
                scopes: vec![],
                issued_at_ms,
                expires_at_ms: issued_at_ms + lifetime_secs * 1000,
            };
            cache::seal(&entry, &self.settings.client_secret, &self.key(), [3; 24])
        }

        fn lease_key(&self, at_ms: u64) -> String {
            lease::slot_key(&self.key().store_key(), at_ms / self.settings.lease_ms)
        }

        fn lease_keys(&self) -> Vec<String> {
            self.platform
                .kv_keys()
                .into_iter()
                .filter(|k| k.contains(":lease:"))
                .collect()
        }
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
        let p = Provider {
            settings: &rig.settings,
            platform: &rig.platform,
            memory: &rig.memory,
        };
        let params = TokenParams::resolve(&TokenRequest::default(), &rig.settings).unwrap();
        rig.platform
            .kv_put(&rig.key().store_key(), &rig.sealed("just-stored", T0, 3600));
        let t = p
            .fetch_holding(
                "default",
                &params,
                &rig.key(),
                Lease {
                    key: rig.lease_key(T0),
                },
            )
            .unwrap();
        assert_eq!((t.token.expose(), t.source), ("just-stored", Source::Store));
        assert!(rig.platform.sent.borrow().is_empty());
    }

    #[test]
    fn inside_the_refresh_window_one_instance_renews_and_the_others_do_not_wait() {
        // 100 s token, 15 % window, skew 60 s capped at 50 s: usable until 50 s,
        // window from 35 s (jitter moves an instance's start up to 7.5 s later).
        let rig = Rig::new(&[]);
        rig.platform
            .kv_put(&rig.key().store_key(), &rig.sealed("old", T0, 100));
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
        let pause_key = |rig: &Rig| format!("{}:refresh-paused", rig.key().store_key());
        for junk in [
            &b""[..],
            b"soon",
            b"-5",
            b"\xff\xfe",
            b"99999999999999999999999",
        ] {
            let rig = Rig::new(&[]);
            rig.platform
                .kv_put(&rig.key().store_key(), &rig.sealed("old", T0, 100));
            rig.platform.kv_put(&pause_key(&rig), junk);
            rig.platform.advance(44_000);
            rig.platform.respond_token("new", 100);
            assert_eq!(rig.get().unwrap().token.expose(), "new", "{junk:?}");
        }
        // A pause far in the future stops renewals, never service: the cached token is
        // served, and once it is due the ordinary miss path fetches.
        let rig = Rig::new(&[]);
        rig.platform
            .kv_put(&rig.key().store_key(), &rig.sealed("old", T0, 100));
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
        rig.platform
            .kv_put(&rig.key().store_key(), &rig.sealed("tok", T0, 100));
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
        rig.platform
            .kv_put(&rig.key().store_key(), &rig.sealed("still-valid", T0, 100));
        rig.platform.advance(44_000);
        rig.platform.respond(Ok(crate::http_types::HttpResponse {
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
        rig.platform
            .kv_put(&rig.key().store_key(), &rig.sealed("still-valid", T0, 100));
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

    #[test]
    fn with_the_lease_disabled_a_miss_fetches_at_once_and_nobody_renews_early() {
        let rig = Rig::new(&[("lease_ms", "0")]);
        rig.platform.kv_put(&rig.lease_key_for_disabled(), b"1");
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

    fn status(code: u16, headers: &[(&str, &str)], body: &str) -> crate::http_types::HttpResponse {
        crate::http_types::HttpResponse {
            status: code,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_503_is_retried_with_jittered_backoff_and_then_succeeds() {
        let rig = Rig::new(&[]);
        rig.platform.respond(Ok(status(503, &[], "busy")));
        rig.platform
            .respond(Err(Error::Transport("connection reset".into())));
        rig.platform.respond_token("third-time", 100);
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "third-time");
        assert_eq!(rig.platform.sent.borrow().len(), 3);
        // Full jitter under 200 ms, then under 400 ms.
        assert!(
            rig.platform.slept_ms.get() <= 600,
            "{}",
            rig.platform.slept_ms.get()
        );
        let fetches = rig.platform.events("token.fetch");
        let outcomes: Vec<_> = fetches
            .iter()
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap(),
                    e["attempt"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(outcomes, [("retry", 1), ("retry", 2), ("ok", 3)]);
        assert!(fetches[0]["retry_in_ms"].as_u64().unwrap() <= 200);
    }

    #[test]
    fn retry_after_is_honoured_in_seconds_and_as_a_date() {
        let rig = Rig::new(&[]);
        rig.platform
            .respond(Ok(status(429, &[("retry-after", "2")], "slow down")));
        rig.platform.respond_token("t", 100);
        rig.get().unwrap();
        assert_eq!(rig.platform.slept_ms.get(), 2000);

        let rig = Rig::new(&[("kv_store", "")]);
        // T0 is 2027-01-15T08:00:00Z; ask for three seconds later.
        let date = "Fri, 15 Jan 2027 08:00:03 GMT";
        rig.platform
            .respond(Ok(status(503, &[("retry-after", date)], "")));
        rig.platform.respond_token("t", 100);
        rig.get().unwrap();
        assert_eq!(rig.platform.slept_ms.get(), 3000);
    }

    #[test]
    fn a_retry_after_beyond_the_cap_ends_the_retries_at_once() {
        let rig = Rig::new(&[]);
        rig.platform
            .respond(Ok(status(429, &[("retry-after", "120")], "")));
        assert!(matches!(rig.get(), Err(Error::Server { status: 429, .. })));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        assert_eq!(rig.platform.slept_ms.get(), 0);
    }

    #[test]
    fn retries_stop_at_max_retries_and_at_the_deadline() {
        let rig = Rig::new(&[("max_retries", "2")]);
        for _ in 0..5 {
            rig.platform.respond(Err(Error::Timeout));
        }
        assert_eq!(rig.get(), Err(Error::Timeout));
        assert_eq!(rig.platform.sent.borrow().len(), 3);

        let rig = Rig::new(&[("max_retries", "10"), ("token_deadline_ms", "1000")]);
        rig.platform.send_ms.set(400);
        for _ in 0..10 {
            rig.platform
                .respond(Err(Error::Transport("refused".into())));
        }
        let started = rig.platform.now_unix_ms();
        assert!(rig.get().is_err());
        let spent = rig.platform.now_unix_ms() - started;
        assert!(spent <= 1000, "spent {spent} ms");
        assert!(rig.platform.sent.borrow().len() <= 3);
    }

    #[test]
    fn oauth_client_errors_are_not_retried() {
        let rig = Rig::new(&[]);
        rig.platform.respond(Ok(status(
            400,
            &[("content-type", "application/json")],
            r#"{"error":"invalid_scope"}"#,
        )));
        assert!(matches!(rig.get(), Err(Error::OAuth(ref o)) if o.error == "invalid_scope"));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        // Not a credential problem: no cooldown, the next call asks again.
        rig.platform.respond_token("t", 100);
        assert!(rig.get().is_ok());
    }

    #[test]
    fn invalid_client_starts_a_cooldown_shared_through_the_store() {
        let rig = Rig::new(&[("failure_cooldown_secs", "60")]);
        rig.platform.respond(Ok(status(
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
            .respond(Ok(status(401, &[], r#"{"error":"invalid_client"}"#)));
        assert!(rig.get().is_err());
        // Same store, new secret: the sealed cooldown no longer opens.
        let rotated = Rig {
            settings: settings(&[("client_secret", "rotated")]),
            platform: FakePlatform::at(T0),
            memory: RefCell::new(MemoryCache::default()),
        };
        for k in rig.platform.kv_keys() {
            rotated
                .platform
                .kv_put(&k, &rig.platform.kv_value(&k).unwrap());
        }
        rotated.platform.respond_token("works", 100);
        assert_eq!(rotated.get().unwrap().token.expose(), "works");
    }

    impl Rig {
        /// A lease-looking key for a rig whose lease is disabled (must be ignored).
        fn lease_key_for_disabled(&self) -> String {
            lease::slot_key(&self.key().store_key(), T0 / 15_000)
        }
    }
}
