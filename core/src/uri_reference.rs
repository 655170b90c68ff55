//! The URL parser as it was built on the `http` crate's `Uri`, kept as the reference
//! that [`crate::origin::parse_url`] is checked against: by the tests here and by the
//! `url_origin` fuzz target (feature `uri-reference`). Not in the component.

use crate::origin::{HttpUrl, Origin, Scheme, parse_url};
use http::Uri;

/// `Uri`'s reading of `text`: scheme, host (lower-cased), port as written (`None`
/// without one) and path with query, or `None` when `Uri` refuses it.
fn reference(text: &str) -> Option<(Scheme, String, Option<String>, String)> {
    let uri: Uri = text.parse().ok()?;
    let scheme = match uri.scheme_str()? {
        s if s.eq_ignore_ascii_case("https") => Scheme::Https,
        s if s.eq_ignore_ascii_case("http") => Scheme::Http,
        _ => return None,
    };
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    let port = authority
        .as_str()
        .strip_prefix(authority.host())?
        .strip_prefix(':')
        .map(str::to_string);
    let path = match uri.path_and_query().map(|p| p.as_str()).unwrap_or("") {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    Some((scheme, host, port, path))
}

/// `Ok` unless `parse_url` accepts `text` and `Uri` refuses it or reads it otherwise.
pub fn agrees(text: &str) -> Result<(), String> {
    let Ok(ours) = parse_url(text) else {
        return Ok(());
    };
    let Some((scheme, host, port, path)) = reference(text) else {
        return Err(format!("{text:?}: accepted here, refused by http::Uri"));
    };
    let HttpUrl {
        origin: Origin {
            scheme: s,
            host: h,
            port: p,
        },
        authority,
        path_and_query,
    } = &ours;
    let port_agrees = match &port {
        None => authority == h,
        Some(written) => written.parse::<u16>().ok() == Some(*p),
    };
    if (*s, h, path_and_query) != (scheme, &host, &path) || !port_agrees || host.is_empty() {
        return Err(format!(
            "{text:?}: here {ours:?}, http::Uri {scheme:?} {host:?} {port:?} {path:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs people use: both parsers take them, and agree.
    const ORDINARY: [&str; 14] = [
        "https://api.example.com",
        "https://api.example.com/",
        "HTTPS://API.Example.COM:8443/v1/orders?id=7&x=%20y",
        "http://127.0.0.1:8080/token",
        "https://[::1]:8443/token",
        "https://[2001:db8::7]/",
        "https://api.example.com?only=query",
        "https://api.example.com/a/b;c=d/e.json?f[]=1&g={h}|i^j`k~l",
        "https://api.example.com/\"quoted\"/{braces}/|pipe|/~tilde",
        "https://api.example.com/naïve/ünïcode?q=ü",
        "https://my_host.internal:1/",
        "https://api.example.com:0443/x",
        "https://a-b.c-d.example:65535/",
        "https://api.example.com/@at:colon!$&'()*+,;=",
    ];

    #[test]
    fn ordinary_urls_parse_as_uri_parses_them() {
        for url in ORDINARY {
            assert!(parse_url(url).is_ok(), "{url}");
            assert!(reference(url).is_some(), "{url}");
            agrees(url).unwrap();
        }
    }

    /// Every ASCII byte and a few non-ASCII characters, at every position of a set of
    /// URLs: whatever `parse_url` accepts, `Uri` accepts and reads the same way.
    #[test]
    fn no_url_is_accepted_that_uri_refuses_or_reads_otherwise() {
        let mut chars: Vec<char> = (0u8..0x80).map(char::from).collect();
        chars.extend(['é', 'ü', '\u{feff}', '\u{202e}', '中']);
        let mut checked = 0;
        // Found by the url_origin fuzz target: `Uri` takes at most 8 colons in brackets.
        let many_colons = format!("http://[{}1]", ":".repeat(9));
        agrees(&many_colons).unwrap();
        let extra = [
            "https://a:1/?",
            "http://[::1]",
            "https://h",
            "http://[1:2:3:4:5:6:7::]",
        ];
        for url in ORDINARY.iter().chain(&extra) {
            let positions: Vec<usize> = (0..=url.len())
                .filter(|i| url.is_char_boundary(*i))
                .collect();
            for &at in &positions {
                for c in &chars {
                    for replace in [false, true] {
                        let mut mutated = url.to_string();
                        if replace && at < url.len() {
                            let next = url[at..].chars().next().unwrap().len_utf8();
                            mutated.replace_range(at..at + next, &c.to_string());
                        } else {
                            mutated.insert(at, *c);
                        }
                        agrees(&mutated).unwrap();
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn the_check_bites() {
        // A port `Uri` reads as 8443 and a path it reads differently would be caught.
        let ours = parse_url("https://a.example:8443/x").unwrap();
        assert_eq!(ours.origin.port, 8443);
        assert!(reference("https://a.example:8443/x").unwrap().2 == Some("8443".into()));
        assert!(reference("https://a b/").is_none());
        assert!(reference("ftp://a/").is_none());
    }
}
