//! The shared store as the provider uses it: sealed reads and writes of the token
//! entry, and store failures that degrade (logged, never fatal).

use super::{IssuedToken, Lookup, Miss, Provider, Source};
use crate::audit::{Event, Outcome};
use crate::oauth::request::TokenParams;
use crate::platform::Platform;
use crate::store::{Entry, seal};

impl<P: Platform> Provider<'_, P> {
    /// A usable entry from the shared store, if there is a store. Misses, expired and
    /// rejected entries are logged when `log` is set; store failures always are.
    pub(super) fn read_store(&self, l: &Lookup, now: u64, log: bool) -> Option<Entry> {
        self.read_store_entry(l, now, log).ok()
    }

    /// The lease holder's read: a usable entry, or (`Miss::Unusable`) an entry nobody may
    /// serve any more, which the holder deletes: it is the only writer of this key
    /// now, so the delete never removes a successor, and a key nobody asks for again
    /// does not stay for good.
    pub(super) fn read_store_as_holder(&self, l: &Lookup, now: u64) -> Option<Entry> {
        match self.read_store_entry(l, now, false) {
            Ok(e) => Some(e),
            Err(Miss::Unusable) => {
                if let Some(store) = self.settings.cache.kv_store.as_deref() {
                    let deleted = self.platform.kv_delete(store, &l.key.store_key());
                    self.degrade(l, deleted);
                }
                None
            }
            Err(_) => None,
        }
    }

    /// A usable entry, or why there is none.
    pub(super) fn read_store_entry(&self, l: &Lookup, now: u64, log: bool) -> Result<Entry, Miss> {
        let store = self
            .settings
            .cache
            .kv_store
            .as_deref()
            .ok_or(Miss::Absent)?;
        let skew = self.settings.cache.expiry_skew_secs;
        match self.platform.kv_get(store, &l.key.store_key()) {
            Ok(None) if log => self.log_cache(Outcome::CacheMiss, Source::Store, l, None),
            Ok(None) => {}
            Ok(Some(bytes)) => match seal::open(&bytes, &self.settings.cache.secret, &l.key) {
                Ok(e) if let Some(ahead) = e.ahead_ms(now, skew) => {
                    self.ahead_of_clock(&l.params.scopes, "token", e.issued_at_ms, ahead);
                    return Err(Miss::Ahead);
                }
                Ok(mut e) if e.is_usable(now, skew) => {
                    if self.bind_stored(l, &mut e) {
                        return Ok(e);
                    }
                    // A DPoP token without its key is no use here: a miss, and the
                    // fetch that follows makes a new key.
                    if log {
                        self.rejected(l, "the DPoP key the token is bound to is not there");
                    }
                    return Err(Miss::Unusable);
                }
                Ok(e) => {
                    if log {
                        self.log_cache(Outcome::CacheExpired, Source::Store, l, Some(&e));
                    }
                    return Err(Miss::Unusable);
                }
                Err(why) if log => {
                    self.rejected(l, why.as_str());
                    return Err(Miss::Unusable);
                }
                Err(_) => return Err(Miss::Unusable),
            },
            Err(e) => {
                self.store_error(&l.params, e);
                return Err(Miss::Failed);
            }
        }
        Err(Miss::Absent)
    }

    /// A `token.cache` `rejected` line for `l`'s stored entry, saying `why`.
    fn rejected(&self, l: &Lookup, why: &str) {
        let ev = Event::new(
            Outcome::CacheRejected,
            &self.settings.audit,
            &l.params.scopes,
        );
        let mut ev = ev.with_detail(why);
        ev.cache = Some(Source::Store.as_str());
        self.audit(&ev);
    }

    /// Seal `entry` into the store (if there is one); whether the store has it now.
    pub(super) fn write_store(&self, l: &Lookup, entry: &Entry) -> bool {
        let Some(store) = self.settings.cache.kv_store.as_deref() else {
            return false;
        };
        let sealed = seal::seal(
            entry,
            &self.settings.cache.secret,
            &l.key,
            seal::nonce(self.platform),
        );
        match self.platform.kv_set(store, &l.key.store_key(), &sealed) {
            Ok(()) => true,
            Err(e) => {
                self.store_error(&l.params, e);
                false
            }
        }
    }

    /// Serve a token found in the store: remember it in memory and say so.
    pub(super) fn store_hit(&self, l: &Lookup, entry: Entry) -> IssuedToken {
        self.log_cache(Outcome::CacheHit, Source::Store, l, Some(&entry));
        self.remember_stored(l, entry)
    }

    /// Keep a token read from the store in this instance's memory and hand it out.
    pub(super) fn remember_stored(&self, l: &Lookup, entry: Entry) -> IssuedToken {
        let issued = IssuedToken::from_entry(&entry, Source::Store);
        let checked = self.platform.monotonic_ms();
        self.memory
            .borrow_mut()
            .put(l.key.clone(), entry, checked, true);
        issued
    }

    pub(super) fn log_cache(
        &self,
        outcome: Outcome,
        cache: Source,
        l: &Lookup,
        entry: Option<&Entry>,
    ) {
        if !self.settings.audit.wants(outcome, false) {
            // Not even the fingerprint: a hit must cost as little as possible.
            return;
        }
        let mut ev = Event::new(outcome, &self.settings.audit, &l.params.scopes);
        ev.cache = Some(cache.as_str());
        ev.fingerprint = entry.map(|e| e.access_token.fingerprint());
        ev.expires_at = entry.map(Entry::expires_at_secs);
        self.audit(&ev);
    }

    /// A record read from the store that claims more time than this instance would
    /// have given it (its writer's clock runs ahead, or this one's behind:
    /// `store::ahead`): the caller counts it as absent; audited once per record and
    /// instance (`dated_ms` tells records apart).
    pub(super) fn ahead_of_clock(
        &self,
        scopes: &[String],
        record: &'static str,
        dated_ms: u64,
        ahead_ms: u64,
    ) {
        if !self.first_time(record, dated_ms) {
            return;
        }
        let detail = format!(
            "ahead-of-clock: {record} record dated {} s beyond what this instance allows; ignored",
            ahead_ms.div_ceil(1000)
        );
        let mut ev = Event::new(Outcome::CacheRejected, &self.settings.audit, scopes);
        ev = ev.with_detail(&detail);
        ev.cache = Some(Source::Store.as_str());
        self.audit(&ev);
    }

    /// Whether this instance sees the stored `record` dated `dated_ms` for the first
    /// time (so a record it ignores is audited once per instance, not per read).
    pub(super) fn first_time(&self, record: &'static str, dated_ms: u64) -> bool {
        let mut memory = self.memory.borrow_mut();
        let seen = &mut memory.ahead_seen;
        if seen.contains(&(record, dated_ms)) {
            return false;
        }
        if seen.len() >= 16 {
            seen.clear();
        }
        seen.push((record, dated_ms));
        true
    }

    pub(super) fn store_error(&self, params: &TokenParams, message: String) {
        let ev = Event::new(Outcome::StoreDegraded, &self.settings.audit, &params.scopes);
        self.audit(&ev.with_detail(&message));
    }
}
