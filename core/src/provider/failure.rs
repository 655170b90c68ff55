//! Shared failures, the decision (pure): after a failure that would fail the next
//! caller too, every call fails fast with that error for a while, in this instance and
//! in every instance that shares the store (`cooldown` does the I/O).
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

use super::settings::RetrySettings;
use crate::error::{Error, OAuthError};
use crate::retry;
use crate::store::record;
use serde::Serialize;

/// Fail fast until `until_ms` with (a copy of) the error that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cooldown {
    /// An outage (retryable failure) rather than rejected credentials.
    pub outage: bool,
    /// `Error::kind` of the original error.
    pub kind: String,
    /// The OAuth error code, if it was one.
    pub error: String,
    /// The OAuth error description, or the error's message.
    pub description: Option<String>,
    pub status: u16,
    pub until_ms: u64,
}

impl record::Record for Cooldown {
    fn from_fields(f: &record::Fields) -> Option<Self> {
        Some(Cooldown {
            outage: f.bool("outage")?,
            kind: f.string("kind")?,
            error: f.string("error")?,
            description: f.optional_string("description")?,
            status: f.u16("status")?,
            until_ms: f.u64("until_ms")?,
        })
    }
}

impl Cooldown {
    /// The cooldown an error starts (pure): `retry_after_ms` is the last answer's
    /// `Retry-After`, if any.
    pub(crate) fn after(
        e: &Error,
        settings: &RetrySettings,
        retry_after_ms: Option<u64>,
        now_ms: u64,
    ) -> Option<Cooldown> {
        let cap_ms = settings.failure_cooldown_secs.saturating_mul(1000);
        if cap_ms == 0 {
            return None;
        }
        let outage = if retry::is_credential_rejection(e) {
            false
        } else if retry::is_retryable(e) {
            true
        } else {
            return None;
        };
        let for_ms = if outage {
            let window = settings.policy.max_delay_ms.max(1000);
            retry_after_ms.unwrap_or(0).max(window).min(cap_ms)
        } else {
            cap_ms
        };
        let (error, description) = match e {
            Error::OAuth(o) => (o.error.clone(), o.description.clone()),
            Error::Server { message, .. } | Error::Transport(message) => {
                (String::new(), Some(message.clone()))
            }
            _ => (String::new(), None),
        };
        Some(Cooldown {
            outage,
            kind: e.kind().to_string(),
            error,
            description,
            status: e.status().unwrap_or(0),
            until_ms: now_ms.saturating_add(for_ms),
        })
    }

    /// The error to fail fast with at `now_ms`: the original kind, its message saying
    /// why no request was made.
    pub(crate) fn error(&self, now_ms: u64) -> Error {
        let left = self.until_ms.saturating_sub(now_ms).div_ceil(1000);
        let why = if self.outage {
            format!("the token endpoint failed moments ago; failing fast for {left} s more")
        } else {
            format!(
                "the token endpoint rejected these credentials; failing fast for {left} s more (failure_cooldown_secs)"
            )
        };
        let text = match &self.description {
            Some(d) => format!("{why}: {d}"),
            None => why,
        };
        match self.kind.as_str() {
            "oauth" => Error::OAuth(OAuthError {
                error: self.error.clone(),
                description: Some(text),
                uri: None,
                status: self.status,
            }),
            "server" => Error::Server {
                status: self.status,
                message: text,
            },
            "timeout" => Error::Timeout,
            _ => Error::Transport(text),
        }
    }
}
