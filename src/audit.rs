//! Audit events: one JSON line each, on the host's stderr. They carry who, what, where
//! and how it went, plus a token fingerprint; never the secret, never the token.

use crate::config::Settings;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event<'a> {
    /// Always `token-provider`, so lines can be told apart from other stderr output.
    pub source: &'static str,
    /// `token.fetch`, `token.cache`, `token.invalidate`, `store.error`, `client.send`.
    pub event: &'static str,
    /// Event-specific: `ok`, `error`, `hit`, `miss`, `rejected`, `refused`, …
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
    /// `token.fetch` outcome `retry`: the wait before the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

impl<'a> Event<'a> {
    pub fn new(
        event: &'static str,
        outcome: &'static str,
        settings: &'a Settings,
        scopes: &'a [String],
    ) -> Self {
        Event {
            source: "token-provider",
            event,
            outcome,
            client_id: &settings.client_id,
            token_host: &settings.token_url.origin.host,
            scopes,
            cache: None,
            status: None,
            duration_ms: None,
            fingerprint: None,
            expires_at: None,
            error: None,
            detail: None,
            api_origin: None,
            attempt: None,
            retry_in_ms: None,
        }
    }

    pub fn with_error(mut self, e: &crate::Error) -> Self {
        self.error = Some(e.kind());
        self.status = e.status();
        self.detail = Some(e.to_string());
        self
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("audit events serialise")
    }
}
