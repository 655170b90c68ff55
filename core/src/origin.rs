//! Absolute http(s) URLs and their origins (no IDNA tables: a non-ASCII host is
//! refused, not converted). A small checked parser instead of the `http` crate's `Uri`
//! (8 KB of the component): it accepts a subset of what `Uri` accepts, and agrees with
//! it on everything it accepts (`uri_reference`).

/// `scheme://host:port`, lower-cased, with the default port made explicit, so that
/// `https://API.example.com` and `https://api.example.com:443` compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

/// A parsed absolute URL, split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub origin: Origin,
    /// Authority as sent (`host` or `host:port`), without userinfo.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

impl HttpUrl {
    /// The URL without its query: what a DPoP proof's `htu` says (RFC 9449 §4.2; a
    /// parsed URL keeps no fragment).
    pub fn htu(&self) -> String {
        let path = self.path_and_query.split('?').next().unwrap_or("/");
        format!("{}://{}{path}", self.origin.scheme.as_str(), self.authority)
    }
}

/// The port after the host: nothing (the scheme's default) or `:` and 1-65535.
/// (`http::Uri` is more lenient, `:99999` or `:42p.x=[]y` parse there with no port,
/// and such a URL must not pass the origin check as port 443.)
fn port_of(rest: &str, scheme: Scheme) -> Result<u16, String> {
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Ok(match scheme {
            Scheme::Https => 443,
            Scheme::Http => 80,
        }),
        None => Err("URL has an invalid host".into()),
        Some("") => Err("URL has an empty port".into()),
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err("URL port must be 1-65535".into()),
            }
        }
        Some(_) => Err("URL port must be 1-65535".into()),
    }
}

/// What `http::Uri` accepts at most (its offsets are 16-bit).
const MAX_URL_LEN: usize = u16::MAX as usize - 1;

/// Parse an absolute `http://` or `https://` URL. Refuses userinfo (`user:pass@`),
/// fragments, other schemes, non-ASCII hosts, spaces and control characters.
///
/// Accepts no URL that `http::Uri` refuses, and splits every URL it accepts the way
/// the `Uri`-based parser before it did: the `uri_reference` tests and the
/// `url_origin` fuzz target compare the two on every input.
pub fn parse_url(text: &str) -> Result<HttpUrl, String> {
    if text.contains('#') {
        return Err("URL must not contain a fragment".into());
    }
    if text.len() > MAX_URL_LEN {
        return Err("not a valid absolute URL".into());
    }
    let (scheme, rest) = split_scheme(text)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.contains('@') {
        return Err("URL must not contain userinfo (user:password@)".into());
    }
    let host_len = host_len(authority)?;
    let (host, port_text) = authority.split_at(host_len);
    let port = port_of(port_text, scheme)?;
    if !path_and_query_ok(path_and_query) {
        return Err("not a valid absolute URL".into());
    }
    let host = host.to_ascii_lowercase();
    let path_and_query = match path_and_query {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    // What is sent is rebuilt from what was checked (`:0443` goes out as `:443`).
    let authority = if port_text.is_empty() {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    Ok(HttpUrl {
        authority,
        origin: Origin { scheme, host, port },
        path_and_query,
    })
}

/// `http://` or `https://` (any case) and what follows it.
fn split_scheme(text: &str) -> Result<(Scheme, &str), String> {
    let prefix = |p: &str| {
        text.get(..p.len())
            .filter(|head| head.eq_ignore_ascii_case(p))
            .map(|_| &text[p.len()..])
    };
    if let Some(rest) = prefix("https://") {
        return Ok((Scheme::Https, rest));
    }
    if let Some(rest) = prefix("http://") {
        return Ok((Scheme::Http, rest));
    }
    match text.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            Err("URL scheme must be https (or http)".into())
        }
        _ => Err("URL must be absolute (https://host/path)".into()),
    }
}

/// The length of the host at the start of `authority`: a name or IPv4 address
/// (letters, digits, `-`, `.`, `_`, `~`), or an IPv6 address in brackets.
fn host_len(authority: &str) -> Result<usize, String> {
    let bytes = authority.as_bytes();
    let len = if bytes.first() == Some(&b'[') {
        let close = authority
            .find(']')
            .ok_or_else(|| "URL has an invalid host".to_string())?;
        let inside = &bytes[1..close];
        let colons = inside.iter().filter(|b| **b == b':').count();
        // Hex digits, `:` and `.` (an IPv4 tail), 2 to 8 colons as `Uri` allows; the
        // host resolves it.
        if !(2..=8).contains(&colons)
            || !inside
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return Err("URL has an invalid host".into());
        }
        close + 1
    } else {
        bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            .count()
    };
    if len == 0 {
        return Err("URL has no host".into());
    }
    Ok(len)
}

/// The characters `http::Uri` takes in a path and in a query (its `PATH_MAP` and
/// `QUERY_MAP`); anything not ASCII is UTF-8 already.
fn path_and_query_ok(text: &str) -> bool {
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let in_path =
        |b: u8| matches!(b, 0x21 | 0x22 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7E | 0x80..);
    let in_query = |b: u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E | 0x80..);
    path.bytes().all(in_path) && query.is_none_or(|q| q.bytes().all(in_query))
}

/// Parse an allow-list entry: an origin with no path (a trailing `/` is tolerated).
pub fn parse_origin(text: &str) -> Result<Origin, String> {
    let url = parse_url(text.trim())?;
    if url.path_and_query != "/" {
        return Err(format!(
            "`{}` is not an origin (no path or query allowed)",
            text.trim()
        ));
    }
    Ok(url.origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_16_bits_are_refused_not_defaulted() {
        // Found by the hostile-input catalog: `:99999` used to pass as port 443.
        for url in [
            // Found by fuzzing (url_origin): junk after the port's first digits.
            "https://api.example.com:42p.comi.examhhhh=[]hhp1",
            "https://api.example.com:443x/",
            "https://api.example.com:+443/",
            "https://api.example.com:99999/",
            "https://api.example.com:65536/",
            "https://api.example.com:0/",
            "https://api.example.com:/",
        ] {
            assert!(parse_url(url).is_err(), "{url}");
        }
        assert_eq!(
            parse_url("https://a.example:65535/").unwrap().origin.port,
            65535
        );
    }

    #[test]
    fn default_ports_are_made_explicit() {
        let u = parse_url("https://API.Example.com/v1/x?y=1").unwrap();
        assert_eq!(u.origin.to_string(), "https://api.example.com:443");
        assert_eq!(u.path_and_query, "/v1/x?y=1");
        assert_eq!(u.authority, "api.example.com");
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.origin.to_string(), "http://127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/");
    }

    #[test]
    fn ipv6_hosts_parse() {
        let u = parse_url("https://[::1]:8443/token").unwrap();
        assert_eq!(u.origin.host, "[::1]");
        assert_eq!(u.origin.port, 8443);
    }

    #[test]
    fn userinfo_fragment_and_other_schemes_are_refused() {
        assert!(
            parse_url("https://user:pw@api.example.com/")
                .unwrap_err()
                .contains("userinfo")
        );
        assert!(
            parse_url("https://api.example.com/#frag")
                .unwrap_err()
                .contains("fragment")
        );
        assert!(
            parse_url("ftp://api.example.com/")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(parse_url("/relative/path").is_err());
        assert!(parse_url("https://api.example.com:0/").is_err());
        assert!(parse_url("").is_err());
    }

    #[test]
    fn non_ascii_and_control_characters_are_refused() {
        assert!(parse_url("https://bücher.example/").is_err());
        assert!(parse_url("https://api.example.com/a b").is_err());
        assert!(parse_url("https://api.example.com/\r\nX: y").is_err());
    }

    #[test]
    fn look_alike_origins_differ() {
        let allowed = parse_origin("https://api.example.com").unwrap();
        for other in [
            "https://api.example.com.evil.test/",
            "https://evil.test/api.example.com",
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://xapi.example.com/",
        ] {
            assert_ne!(parse_url(other).unwrap().origin, allowed, "{other}");
        }
        assert_eq!(
            parse_url("https://api.example.com:443/x").unwrap().origin,
            allowed
        );
    }

    #[test]
    fn oversized_urls_are_refused_at_the_length_uri_refuses() {
        let base = "https://api.example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_URL_LEN - base.len()));
        assert_eq!(at_limit.len(), MAX_URL_LEN);
        assert!(parse_url(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert!(parse_url(&over).is_err());
        assert!(over.parse::<http::Uri>().is_err(), "Uri refuses it too");
        assert!(parse_url(&"x".repeat(1 << 20)).is_err());
    }

    #[test]
    fn origins_have_no_path() {
        assert!(parse_origin("https://api.example.com/").is_ok());
        assert!(parse_origin("https://api.example.com/v1").is_err());
    }
}
