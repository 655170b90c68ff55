//! Absolute http(s) URLs and their origins, parsed with the `http` crate's `Uri`
//! (no IDNA tables: a non-ASCII host is refused, not converted).

use http::Uri;

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

/// The port after the host: nothing (the scheme's default) or `:` and 1-65535.
/// `http::Uri` is more lenient (`port_u16` is `None` both without a port and for
/// `:99999` or `:42p.x=[]y`), and such a URL must not pass the origin check as port 443.
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

/// Parse an absolute `http://` or `https://` URL. Refuses userinfo (`user:pass@`),
/// fragments, other schemes and anything `http::Uri` cannot parse (non-ASCII hosts,
/// spaces, control characters).
pub fn parse_url(text: &str) -> Result<HttpUrl, String> {
    if text.contains('#') {
        return Err("URL must not contain a fragment".into());
    }
    let uri: Uri = text
        .parse()
        .map_err(|_| "not a valid absolute URL".to_string())?;
    let scheme = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
        Some(_) => return Err("URL scheme must be https (or http)".into()),
        None => return Err("URL must be absolute (https://host/path)".into()),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "URL has no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("URL must not contain userinfo (user:password@)".into());
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return Err("URL has no host".into());
    }
    let text = authority.as_str();
    let rest = text
        .strip_prefix(authority.host())
        .ok_or_else(|| "URL has an invalid host".to_string())?;
    let port = port_of(rest, scheme)?;
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    // What is sent is rebuilt from what was checked (`:0443` goes out as `:443`).
    let authority = if rest.is_empty() {
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
    fn origins_have_no_path() {
        assert!(parse_origin("https://api.example.com/").is_ok());
        assert!(parse_origin("https://api.example.com/v1").is_err());
    }
}
