//! Plain buffered HTTP messages exchanged between the core and the HTTP adapter.

use crate::origin::HttpUrl;

/// A request. Its `Debug` shows header names (never values) and the body's length
/// only: a token request's body can hold the client secret, an API request's
/// Authorization header the token.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: HttpUrl,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A response. Its `Debug` shows the status, header names and the body's length only:
/// a token response's body holds the access token.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// `Debug` for header lists: names, never values.
pub(crate) struct RedactedHeaders<'a>(pub &'a [(String, Vec<u8>)]);

impl std::fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// `Debug` for a body: its length.
pub(crate) struct Redacted(pub usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body", &Redacted(self.body.len()))
            .finish()
    }
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body", &Redacted(self.body.len()))
            .finish()
    }
}

impl HttpResponse {
    /// First value of `name` (case-insensitive), if it is valid UTF-8.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of `name` (case-insensitive), as bytes.
    pub(crate) fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// Per-request limits the adapter enforces while sending and reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Connect, first-byte and between-bytes timeout.
    pub timeout_ms: u64,
    /// The adapter stops reading the body after this many bytes. Callers pass their cap
    /// plus one, so a body over the cap is seen as such and refused, never truncated.
    pub read_limit: usize,
}

#[cfg(test)]
mod tests {
    use crate::oauth::request::{self, TokenParams, TokenRequest};
    use crate::testing::{response, settings};

    #[test]
    fn debug_never_shows_a_secret_a_token_or_a_form_body() {
        for method in ["client_secret_post", "client_secret_basic"] {
            let s = settings(&[("client_secret", "SECRET-42"), ("auth_method", method)]);
            let params = TokenParams::resolve(&TokenRequest::default(), &s.client).unwrap();
            let mut request = request::build(
                &s.client,
                &s.client.static_endpoint().unwrap(),
                &params,
                request::Fresh {
                    now_secs: 0,
                    jti: [0; 16],
                    random: &|out: &mut [u8]| out.fill(0),
                },
                None,
            )
            .unwrap();
            request
                .headers
                .push(("authorization".into(), b"Bearer TOKEN-42".to_vec()));
            let shown = format!("{request:?}");
            assert!(
                !shown.contains("SECRET-42") && !shown.contains("c3ZjOlNFQ1JFVC00Mg"),
                "{shown}"
            );
            assert!(
                !shown.contains("TOKEN-42") && !shown.contains("grant_type"),
                "{shown}"
            );
            assert!(
                shown.contains("authorization") && shown.contains("bytes>"),
                "{shown}"
            );
        }
        let answer = response(
            200,
            &[],
            r#"{"access_token":"TOKEN-42","token_type":"Bearer"}"#,
        );
        let shown = format!("{answer:?}");
        assert!(
            !shown.contains("TOKEN-42") && shown.contains("200"),
            "{shown}"
        );
    }
}
