//! The token handed to a caller, and where it came from.

use crate::oauth::dpop::{DpopKey, TokenType};
use crate::secret::AccessToken;
use crate::store::Entry;

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
    /// `Bearer`, or `DPoP` for a token bound to a key.
    pub token_type: TokenType,
    /// The key a `DPoP` token is bound to, to sign the proofs that go with it.
    pub dpop: Option<DpopKey>,
}

impl IssuedToken {
    pub(crate) fn from_entry(e: &Entry, source: Source) -> Self {
        IssuedToken {
            token: e.access_token.clone(),
            expires_at: e.expires_at_secs(),
            scopes: e.scopes.clone(),
            source,
            token_type: e.token_type(),
            dpop: e.dpop.as_ref().and_then(|b| b.key.clone()),
        }
    }
}
