//! `get-token` and `invalidate`: memory cache, then the shared store, then the token
//! endpoint; every decision is one audit line.

use crate::audit::Event;
use crate::cache::{self, CacheKey, Entry, MemoryCache};
use crate::config::{MAX_TOKEN_RESPONSE_BYTES, Settings};
use crate::error::Error;
use crate::http_types::HttpOptions;
use crate::platform::Platform;
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

impl<P: Platform> Provider<'_, P> {
    pub fn get_token(&self, request: &TokenRequest) -> Result<IssuedToken, Error> {
        let params = TokenParams::resolve(request, self.settings)?;
        let key = CacheKey::new(self.settings, &params);
        if !request.force_refresh
            && let Some(hit) = self.lookup(&params, &key)
        {
            return Ok(hit);
        }
        self.fetch(&params, key)
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

    fn lookup(&self, params: &TokenParams, key: &CacheKey) -> Option<IssuedToken> {
        let now = self.platform.now_unix_secs();
        let skew = self.settings.expiry_skew_secs;
        let issued = |e: &Entry, source| IssuedToken {
            token: e.access_token.clone(),
            expires_at: e.expires_at,
            scopes: e.scopes.clone(),
            source,
        };
        let log = |outcome, cache, e: Option<&Entry>, detail: Option<String>| {
            let mut ev = Event::new("token.cache", outcome, self.settings, &params.scopes);
            ev.cache = Some(cache);
            ev.fingerprint = e.map(|e| e.access_token.fingerprint());
            ev.expires_at = e.map(|e| e.expires_at);
            ev.detail = detail;
            self.platform.log(&ev.to_line());
        };
        if let Some(e) = self.memory.borrow().get(key)
            && e.is_usable(now, skew)
        {
            log("hit", "memory", Some(e), None);
            return Some(issued(e, Source::Memory));
        }
        let store = self.settings.kv_store.as_deref()?;
        match self.platform.kv_get(store, &key.store_key()) {
            Ok(None) => log("miss", "store", None, None),
            Ok(Some(bytes)) => match cache::open(&bytes, &self.settings.client_secret, key) {
                Ok(e) if e.is_usable(now, skew) => {
                    log("hit", "store", Some(&e), None);
                    let hit = issued(&e, Source::Store);
                    self.memory.borrow_mut().put(key.clone(), e);
                    return Some(hit);
                }
                Ok(e) => log("expired", "store", Some(&e), None),
                Err(why) => log(
                    "rejected",
                    "store",
                    None,
                    Some(format!("stored entry rejected ({})", why.as_str())),
                ),
            },
            Err(e) => self.store_error(params, e),
        }
        None
    }

    fn fetch(&self, params: &TokenParams, key: CacheKey) -> Result<IssuedToken, Error> {
        let request = token_request::build(self.settings, params);
        let options = HttpOptions {
            timeout_ms: self.settings.http_timeout_ms,
            read_limit: MAX_TOKEN_RESPONSE_BYTES + 1,
        };
        let lifetimes = Lifetimes {
            default_expires_in: self.settings.default_expires_in_secs,
            max_expires_in: self.settings.max_expires_in_secs,
        };
        let started = self.platform.monotonic_ms();
        let outcome = self.platform.send(&request, options).and_then(|resp| {
            token_response::parse(&resp, &params.scopes, lifetimes).map(|t| (resp.status, t))
        });
        let duration_ms = Some(self.platform.monotonic_ms().saturating_sub(started));
        let (status, token) = match outcome {
            Ok(ok) => ok,
            Err(e) => {
                let mut ev = Event::new("token.fetch", "error", self.settings, &params.scopes)
                    .with_error(&e);
                ev.duration_ms = duration_ms;
                self.platform.log(&ev.to_line());
                return Err(e);
            }
        };
        let now = self.platform.now_unix_secs();
        let entry = Entry {
            access_token: token.access_token,
            scopes: token.scopes,
            issued_at: now,
            expires_at: now.saturating_add(token.expires_in),
        };
        let mut ev = Event::new("token.fetch", "ok", self.settings, &entry.scopes);
        ev.status = Some(status);
        ev.duration_ms = duration_ms;
        ev.fingerprint = Some(entry.access_token.fingerprint());
        ev.expires_at = Some(entry.expires_at);
        self.platform.log(&ev.to_line());

        let issued = IssuedToken {
            token: entry.access_token.clone(),
            expires_at: entry.expires_at,
            scopes: entry.scopes.clone(),
            source: Source::Fresh,
        };
        if entry.is_usable(now, self.settings.expiry_skew_secs) {
            if let Some(store) = &self.settings.kv_store {
                let mut nonce = [0u8; 24];
                self.platform.random_bytes(&mut nonce);
                let sealed = cache::seal(&entry, &self.settings.client_secret, &key, nonce);
                if let Err(e) = self.platform.kv_set(store, &key.store_key(), &sealed) {
                    self.store_error(params, e);
                }
            }
            self.memory.borrow_mut().put(key, entry);
        }
        Ok(issued)
    }

    fn store_error(&self, params: &TokenParams, message: String) {
        let mut ev = Event::new("store.error", "degraded", self.settings, &params.scopes);
        ev.detail = Some(format!(
            "key-value store failed, continuing without it: {message}"
        ));
        self.platform.log(&ev.to_line());
    }
}
