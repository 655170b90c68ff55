//! Audit events: one JSON line each, on the host's stderr. They carry who, what, where
//! and how it went, plus a token fingerprint; never the secret, never the token.
//!
//! [`Outcome`] is the whole vocabulary: every event with each of its outcomes, and the
//! one `detail` text each outcome carries. docs/audit-log.md documents exactly these
//! (a test compares them).

use serde::Serialize;

/// Every event and outcome the provider logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `token.fetch`: a token request succeeded.
    FetchOk,
    /// `token.fetch`: an attempt failed and another follows.
    FetchRetry,
    /// `token.fetch`: the last attempt failed.
    FetchError,
    /// `token.fetch`: a credential rejection is cooling down; no request was made.
    FetchCooldown,
    /// `token.cache`: a usable token was found.
    CacheHit,
    /// `token.cache`: nothing stored.
    CacheMiss,
    /// `token.cache`: the stored token is past its usable time.
    CacheExpired,
    /// `token.cache`: a stored value did not open.
    CacheRejected,
    /// `token.lease`: another instance fetched; its token was used.
    LeaseWaited,
    /// `token.lease`: waited the whole lease; fetching without it.
    LeaseTimeout,
    /// `token.lease`: the previous holder never finished; took over.
    LeaseStale,
    /// `token.refresh`: another instance renews; the cached token is served.
    RefreshBusy,
    /// `token.refresh`: a renewal failed a moment ago; the cached token is served.
    RefreshPaused,
    /// `token.refresh`: renewing failed; the cached token is served until due.
    RefreshError,
    /// `token.invalidate`: dropped.
    InvalidateOk,
    /// `token.invalidate`: dropped here; the store already holds another token, kept.
    InvalidateKept,
    /// `token.invalidate`: the store could not delete the entry.
    InvalidateStoreError,
    /// `store.error`: the store failed; the provider goes on without it.
    StoreDegraded,
    /// `client.send`: the API answered (any status).
    SendOk,
    /// `client.send`: no answer, or no token.
    SendError,
    /// `client.send`: the request was refused before sending.
    SendRefused,
    /// `intercept.send`: the interceptor attached a token; the API answered (any status).
    InterceptOk,
    /// `intercept.send`: sent on as the app made it (why in `detail`).
    InterceptPassed,
    /// `intercept.send`: a token was due but could not be had, or the API was not reached.
    InterceptError,
    /// `intercept.send`: a token was due here but may not go; not sent.
    InterceptRefused,
    /// `issuer.discovery`: the issuer's metadata was fetched and accepted.
    DiscoveryOk,
    /// `issuer.discovery`: the metadata could not be had or was refused.
    DiscoveryError,
    /// `dpop.nonce`: a server sent a new `DPoP-Nonce` (its origin in `detail`, never
    /// the value).
    DpopNonce,
}

impl Outcome {
    pub const ALL: [Outcome; 28] = [
        Outcome::FetchOk,
        Outcome::FetchRetry,
        Outcome::FetchError,
        Outcome::FetchCooldown,
        Outcome::CacheHit,
        Outcome::CacheMiss,
        Outcome::CacheExpired,
        Outcome::CacheRejected,
        Outcome::LeaseWaited,
        Outcome::LeaseTimeout,
        Outcome::LeaseStale,
        Outcome::RefreshBusy,
        Outcome::RefreshPaused,
        Outcome::RefreshError,
        Outcome::InvalidateOk,
        Outcome::InvalidateKept,
        Outcome::InvalidateStoreError,
        Outcome::StoreDegraded,
        Outcome::SendOk,
        Outcome::SendError,
        Outcome::SendRefused,
        Outcome::InterceptOk,
        Outcome::InterceptPassed,
        Outcome::InterceptError,
        Outcome::InterceptRefused,
        Outcome::DiscoveryOk,
        Outcome::DiscoveryError,
        Outcome::DpopNonce,
    ];

    /// The `event` field.
    pub fn event(self) -> &'static str {
        use Outcome::*;
        match self {
            FetchOk | FetchRetry | FetchError | FetchCooldown => "token.fetch",
            CacheHit | CacheMiss | CacheExpired | CacheRejected => "token.cache",
            LeaseWaited | LeaseTimeout | LeaseStale => "token.lease",
            RefreshBusy | RefreshPaused | RefreshError => "token.refresh",
            InvalidateOk | InvalidateKept | InvalidateStoreError => "token.invalidate",
            StoreDegraded => "store.error",
            SendOk | SendError | SendRefused => "client.send",
            InterceptOk | InterceptPassed | InterceptError | InterceptRefused => "intercept.send",
            DiscoveryOk | DiscoveryError => "issuer.discovery",
            DpopNonce => "dpop.nonce",
        }
    }

    /// The `outcome` field.
    pub fn name(self) -> &'static str {
        use Outcome::*;
        match self {
            FetchOk | InvalidateOk | SendOk | InterceptOk | DiscoveryOk => "ok",
            FetchRetry => "retry",
            FetchError | RefreshError | SendError | InterceptError | DiscoveryError => "error",
            InterceptPassed => "passed",
            FetchCooldown => "cooldown",
            CacheHit => "hit",
            CacheMiss => "miss",
            CacheExpired => "expired",
            CacheRejected => "rejected",
            LeaseWaited => "waited",
            LeaseTimeout => "timeout",
            LeaseStale => "stale",
            RefreshBusy => "busy",
            RefreshPaused => "paused",
            InvalidateKept => "kept",
            InvalidateStoreError => "store_error",
            StoreDegraded => "degraded",
            SendRefused | InterceptRefused => "refused",
            DpopNonce => "new",
        }
    }

    /// The `detail` of this outcome: fixed text, or a template whose `{}` is filled
    /// with the error or store message ([`Event::with_error`], [`Event::with_detail`]).
    pub(crate) fn detail(self) -> Option<&'static str> {
        use Outcome::*;
        match self {
            FetchRetry | FetchError | FetchCooldown | InvalidateStoreError | SendError
            | SendRefused | InterceptPassed | InterceptError | InterceptRefused | DiscoveryOk
            | DiscoveryError => Some("{}"),
            CacheRejected => Some("stored entry rejected ({})"),
            LeaseWaited => Some("another instance fetched the token; used it"),
            LeaseTimeout => {
                Some("waited the whole lease for another instance; fetching without it")
            }
            LeaseStale => Some("the previous lease holder did not finish in time; took over"),
            RefreshBusy => Some("another instance is renewing the token; serving the cached one"),
            RefreshPaused => {
                Some("a renewal failed a moment ago; serving the cached token until the pause ends")
            }
            RefreshError => {
                Some("refresh ahead failed, serving the cached token until it is due: {}")
            }
            StoreDegraded => Some("key-value store failed, continuing without it: {}"),
            DpopNonce => Some("a new DPoP-Nonce from {}; sent in the next proofs to it"),
            InvalidateKept => {
                Some("the store holds another token (renewed by another instance); kept it")
            }
            FetchOk | CacheHit | CacheMiss | CacheExpired | InvalidateOk | SendOk | InterceptOk => {
                None
            }
        }
    }
}

/// Which outcomes are written (`audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Every line.
    All,
    /// All but the routine lines of a request that changed nothing: a cache hit, an API
    /// answer with nothing to note (the default: a host that logs stderr to disk gets
    /// no line per request).
    Changes,
    /// Failures and warnings only.
    Errors,
    /// Nothing.
    Off,
}

impl Level {
    pub fn from_name(name: &str) -> Level {
        match name {
            "all" => Level::All,
            "errors" => Level::Errors,
            "off" => Level::Off,
            _ => Level::Changes,
        }
    }

    /// Whether `outcome` is written at this level; `noted`: the line carries a detail
    /// (an API call that needed a 401 retry is not routine).
    pub(crate) fn wants(self, outcome: Outcome, noted: bool) -> bool {
        use Outcome::*;
        match self {
            Level::All => true,
            Level::Changes => noted || !matches!(outcome, CacheHit | SendOk | InterceptOk),
            Level::Errors => matches!(
                outcome,
                FetchRetry
                    | FetchError
                    | FetchCooldown
                    | CacheRejected
                    | LeaseTimeout
                    | LeaseStale
                    | RefreshError
                    | InvalidateStoreError
                    | StoreDegraded
                    | SendError
                    | SendRefused
                    | InterceptError
                    | InterceptRefused
                    | DiscoveryError
            ),
            Level::Off => false,
        }
    }
}

/// The audit log's settings: which lines to write, and who every line is about.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `audit`.
    pub level: Level,
    /// `client_id`.
    pub client_id: String,
    /// The host of `token_url`, or else of `issuer`.
    pub token_host: String,
}

impl AuditSettings {
    /// Whether `outcome` is written (see [`Level::wants`]).
    pub(crate) fn wants(&self, outcome: Outcome, noted: bool) -> bool {
        self.level.wants(outcome, noted)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event<'a> {
    /// What happened (gives `event`, `outcome` and the detail template).
    #[serde(skip)]
    pub what: Outcome,
    /// Always `token-provider`, so lines can be told apart from other stderr output.
    pub source: &'static str,
    /// [`Outcome::event`].
    pub event: &'static str,
    /// [`Outcome::name`].
    pub outcome: &'static str,
    pub client_id: &'a str,
    pub token_host: &'a str,
    pub scopes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Human-readable detail built from our own messages (already secret-free).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_origin: Option<String>,
    /// `token.fetch`: which attempt this was (1 = the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `token.fetch` (a request was made): the grant it asked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<&'static str>,
    /// `token.fetch` (a request was made): how the client authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<&'static str>,
    /// `token.fetch` outcome `retry`: the wait before the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

impl<'a> Event<'a> {
    pub fn new(outcome: Outcome, audit: &'a AuditSettings, scopes: &'a [String]) -> Self {
        Event {
            what: outcome,
            source: "token-provider",
            event: outcome.event(),
            outcome: outcome.name(),
            client_id: &audit.client_id,
            token_host: &audit.token_host,
            scopes,
            cache: None,
            status: None,
            duration_ms: None,
            fingerprint: None,
            expires_at: None,
            error: None,
            detail: outcome
                .detail()
                .filter(|d| !d.contains('{'))
                .map(String::from),
            api_origin: None,
            attempt: None,
            grant: None,
            auth_method: None,
            retry_in_ms: None,
        }
    }

    /// The error's kind and status, and its message as the detail.
    pub fn with_error(mut self, e: &crate::Error) -> Self {
        self.error = Some(e.kind());
        self.status = e.status();
        self.with_detail(&e.to_string())
    }

    /// Fill this outcome's detail template with `text` (or replace the detail when the
    /// outcome has no template).
    pub fn with_detail(mut self, text: &str) -> Self {
        // `{` appears in templates only as the slot `{}`.
        self.detail = Some(match self.what.detail().and_then(|d| d.split_once('{')) {
            Some((before, after)) => [before, text, &after[1..]].concat(),
            None => text.to_string(),
        });
        self
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("audit events serialise"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::settings;

    #[test]
    fn every_event_outcome_pair_is_distinct() {
        for (i, a) in Outcome::ALL.iter().enumerate() {
            for b in &Outcome::ALL[..i] {
                assert_ne!((a.event(), a.name()), (b.event(), b.name()), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn details_come_from_the_outcome_template() {
        let s = settings(&[]);
        let scopes = vec![];
        let fixed = Event::new(Outcome::LeaseWaited, &s.audit, &scopes);
        assert_eq!(
            fixed.detail.as_deref(),
            Some("another instance fetched the token; used it")
        );
        let templated = Event::new(Outcome::StoreDegraded, &s.audit, &scopes);
        assert_eq!(
            templated.detail, None,
            "a template is only used when filled"
        );
        assert_eq!(
            templated.with_detail("down").detail.as_deref(),
            Some("key-value store failed, continuing without it: down")
        );
        let plain = Event::new(Outcome::SendOk, &s.audit, &scopes).with_detail("retried");
        assert_eq!(plain.detail.as_deref(), Some("retried"));
        let line = Event::new(Outcome::CacheRejected, &s.audit, &scopes).with_detail("corrupt");
        let json: serde_json::Value = serde_json::from_str(&line.to_line()).unwrap();
        assert_eq!(
            (&json["event"], &json["outcome"], &json["detail"]),
            (
                &serde_json::json!("token.cache"),
                &serde_json::json!("rejected"),
                &serde_json::json!("stored entry rejected (corrupt)")
            )
        );
        assert!(json.get("what").is_none());
    }
}
