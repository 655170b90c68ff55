//! Plain buffered HTTP messages exchanged between the core and the HTTP adapter.

use crate::origin::HttpUrl;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: HttpUrl,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
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
