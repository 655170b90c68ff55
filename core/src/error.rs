//! The one error type of the core; it maps one-to-one onto the WIT `error` variant.

use thiserror::Error;

/// Every failure the provider reports. No variant ever holds a secret or a token:
/// messages are built from our own words, status codes and sanitised server fields.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// A configuration key is missing or invalid; the message starts with the key.
    #[error("config: {0}")]
    Config(String),
    /// RFC 6749 §5.2 error response.
    #[error("{}", oauth_display(.0))]
    OAuth(OAuthError),
    /// A non-OAuth HTTP failure (5xx, redirect, HTML error page, …).
    #[error("server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// The request could not be sent or the response could not be read.
    #[error("transport: {0}")]
    Transport(String),
    /// A 2xx answer that cannot be used: a token response that is not a usable token,
    /// an issuer's metadata that is refused (the message says which), an API body over
    /// `max_response_bytes`.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A configured timeout elapsed.
    #[error("timeout")]
    Timeout,
    /// The authorized client refused to send a request.
    #[error("refused: {0}")]
    Refused(String),
}

/// The fields of an RFC 6749 §5.2 error response, sanitised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: String,
    pub description: Option<String>,
    pub uri: Option<String>,
    pub status: u16,
}

fn oauth_display(e: &OAuthError) -> String {
    let mut s = format!("{} (HTTP {})", e.error, e.status);
    if let Some(d) = &e.description {
        s.push_str(": ");
        s.push_str(d);
    }
    s
}

impl Error {
    pub(crate) fn config(key: &str, problem: impl std::fmt::Display) -> Self {
        Error::Config(format!("{key}: {problem}"))
    }

    /// Short machine-readable kind, used in audit lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::OAuth(_) => "oauth",
            Error::Server { .. } => "server",
            Error::Transport(_) => "transport",
            Error::InvalidResponse(_) => "invalid_response",
            Error::Timeout => "timeout",
            Error::Refused(_) => "refused",
        }
    }

    /// HTTP status carried by the error, if any.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Error::OAuth(e) => Some(e.status),
            Error::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Keep at most `max` characters of server-provided text and replace control characters,
/// so a hostile server cannot inject log lines or terminal escapes through our errors.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_displays_code_first() {
        let e = Error::OAuth(OAuthError {
            error: "invalid_client".into(),
            description: Some("client authentication failed".into()),
            uri: None,
            status: 401,
        });
        assert_eq!(
            e.to_string(),
            "invalid_client (HTTP 401): client authentication failed"
        );
    }

    #[test]
    fn sanitize_strips_control_characters_and_truncates() {
        assert_eq!(sanitize("a\r\nb\x1b[31m", 100), "a  b [31m");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }
}
