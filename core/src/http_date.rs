//! RFC 9110 §5.6.7 HTTP-date, for `Retry-After`: the three formats a recipient must
//! accept, read to Unix seconds. The `httpdate` crate did this and cost the component
//! 8 KB (its round trip through `SystemTime` links `Duration`'s `Debug`); this reads
//! the same strings (the tests compare the two on every format, each day of 1970–2100
//! and mutations of them), but for one byte httpdate leaves unchecked (the space
//! between an rfc850 date's year and its time).

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
/// Monday first, as `days_since_epoch`'s weekday counts.
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A date's year, month, day and its `hh:mm:ss`.
type Parts<'a> = (u16, u8, u8, &'a [u8]);

/// `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT` (years 70–99 are
/// 19xx, 00–69 20xx) or `Sun Nov  6 08:49:37 1994`, surrounding whitespace allowed,
/// years 1970–9999: its Unix time in seconds. A wrong weekday, a day the month does not
/// have, or anything else is `None`.
pub(crate) fn parse(value: &str) -> Option<u64> {
    if !value.is_ascii() {
        return None;
    }
    let (wday, name_len, rest) = weekday(value.trim().as_bytes())?;
    let (year, mon, day, time) = match (name_len, rest) {
        (3, [b',', b' ', d @ .., b' ', b'G', b'M', b'T']) if d.len() == 20 => imf_fixdate(d)?,
        (4.., [b',', b' ', d @ .., b' ', b'G', b'M', b'T']) if d.len() == 18 => rfc850(d)?,
        (3, [b' ', d @ ..]) if d.len() == 20 => asctime(d)?,
        _ => return None,
    };
    let [h0, h1, b':', m0, m1, b':', s0, s1] = *time else {
        return None;
    };
    let (hour, min, sec) = (two(h0, h1)?, two(m0, m1)?, two(s0, s1)?);
    if hour > 23 || min > 59 || sec > 59 || !(1970..=9999).contains(&year) {
        return None;
    }
    if day == 0 || day > days_in_month(year, mon) {
        return None;
    }
    let days = days_since_epoch(year, mon, day);
    // 1970-01-01 was a Thursday (3, Monday being 0).
    if (days + 3) % 7 != wday as u64 {
        return None;
    }
    Some(days * 86_400 + u64::from(hour) * 3_600 + u64::from(min) * 60 + u64::from(sec))
}

/// IMF-fixdate after the weekday's ", " and before " GMT": `06 Nov 1994 08:49:37`.
fn imf_fixdate(d: &[u8]) -> Option<Parts<'_>> {
    if d[2] != b' ' || d[6] != b' ' || d[11] != b' ' {
        return None;
    }
    Some((
        four(&d[7..11])?,
        month(&d[3..6])?,
        two(d[0], d[1])?,
        &d[12..],
    ))
}

/// rfc850-date after the weekday's ", " and before " GMT": `06-Nov-94 08:49:37`.
fn rfc850(d: &[u8]) -> Option<Parts<'_>> {
    if d[2] != b'-' || d[6] != b'-' || d[9] != b' ' {
        return None;
    }
    let yy = u16::from(two(d[7], d[8])?);
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    Some((year, month(&d[3..6])?, two(d[0], d[1])?, &d[10..]))
}

/// asctime-date after the weekday's space: `Nov  6 08:49:37 1994`.
fn asctime(d: &[u8]) -> Option<Parts<'_>> {
    if d[3] != b' ' || d[6] != b' ' || d[15] != b' ' {
        return None;
    }
    let day = if d[4] == b' ' {
        digit(d[5])?
    } else {
        two(d[4], d[5])?
    };
    Some((four(&d[16..20])?, month(&d[..3])?, day, &d[7..15]))
}

/// The weekday (Monday = 0), how long its name was (3, or the full name), and the rest
/// of `s`.
fn weekday(s: &[u8]) -> Option<(usize, usize, &[u8])> {
    DAYS.iter().enumerate().find_map(|(i, name)| {
        let name = name.as_bytes();
        // The full name (rfc850), else its first three letters.
        [name, &name[..3]].into_iter().find_map(|n| {
            s.strip_prefix(n)
                .filter(|rest| rest.first().is_some_and(|c| matches!(c, b',' | b' ')))
                .map(|rest| (i, n.len(), rest))
        })
    })
}

fn month(m: &[u8]) -> Option<u8> {
    MONTHS
        .iter()
        .position(|name| name.as_slice() == m)
        .map(|i| i as u8 + 1)
}

fn digit(c: u8) -> Option<u8> {
    c.is_ascii_digit().then(|| c - b'0')
}

fn two(a: u8, b: u8) -> Option<u8> {
    Some(digit(a)? * 10 + digit(b)?)
}

fn four(d: &[u8]) -> Option<u16> {
    Some(u16::from(two(d[0], d[1])?) * 100 + u16::from(two(d[2], d[3])?))
}

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, mon: u8) -> u8 {
    match mon {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-mon-day` (a valid date, year ≥ 1970).
fn days_since_epoch(year: u16, mon: u8, day: u8) -> u64 {
    let y = u64::from(year) - 1;
    let leap_days = y / 4 - y / 100 + y / 400 - (1969 / 4 - 1969 / 100 + 1969 / 400);
    let before_month: u64 = (1..mon).map(|m| u64::from(days_in_month(year, m))).sum();
    (u64::from(year) - 1970) * 365 + leap_days + before_month + u64::from(day) - 1
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::{Duration, UNIX_EPOCH};

    /// What `httpdate` (the reference) reads `s` as, in Unix seconds.
    fn reference(s: &str) -> Option<u64> {
        let t = httpdate::parse_http_date(s).ok()?;
        Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
    }

    /// `t` in the three formats, through `httpdate`'s IMF-fixdate.
    fn formats(t: u64) -> [String; 3] {
        let imf = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(t));
        // "Sun, 06 Nov 1994 08:49:37 GMT"
        let (wd, day, mon, year, time) = (
            &imf[0..3],
            &imf[5..7],
            &imf[8..11],
            &imf[12..16],
            &imf[17..25],
        );
        let long = super::DAYS.iter().find(|d| d.starts_with(wd)).unwrap();
        let rfc850 = format!("{long}, {day}-{mon}-{} {time} GMT", &year[2..]);
        let asc_day = day
            .strip_prefix('0')
            .map_or(day.to_string(), |d| format!(" {d}"));
        let asctime = format!("{wd} {mon} {asc_day} {time} {year}");
        [imf, rfc850, asctime]
    }

    #[test]
    fn the_rfc_examples_are_read() {
        // RFC 9110 §5.6.7's three spellings of one instant.
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT\t",
        ] {
            assert_eq!(parse(s), Some(784_111_777), "{s}");
        }
    }

    #[test]
    fn every_day_from_1970_to_2100_reads_as_httpdate_reads_it() {
        let mut t = 0u64;
        let mut checked = 0;
        while t < 4_102_444_800 {
            // A different time of day each day, leap days and month ends included.
            for s in formats(t) {
                // rfc850's two-digit year covers 1970–2069 only.
                let expected = reference(&s);
                assert_eq!(parse(&s), expected, "{s}");
                if !(s.contains('-') && t >= 3_155_760_000) {
                    assert_eq!(expected, Some(t), "{s}");
                }
                checked += 1;
            }
            t += 86_400 + 3_607;
        }
        assert!(checked > 130_000, "{checked}");
    }

    #[test]
    fn mutations_are_refused_or_read_as_httpdate_does() {
        // Each byte of each format replaced by bytes that matter to the grammar: both
        // parsers accept the same strings, with the same value.
        let swaps = b" ,-:0123456789GMTadnoSMx\t";
        let mut accepted = 0;
        for t in [
            0u64,
            68_169_599,
            951_782_400,
            1_709_251_199,
            253_402_300_799,
        ] {
            for s in formats(t) {
                for i in 0..s.len() {
                    for &c in swaps {
                        let mut b = s.clone().into_bytes();
                        b[i] = c;
                        let m = String::from_utf8(b).unwrap();
                        let ours = parse(&m);
                        // httpdate does not check the space between an rfc850
                        // date's year and its time; that byte must be a space here.
                        let rfc850_gap = s.contains('-') && i == s.len() - 13 && c != b' ';
                        if rfc850_gap {
                            assert_eq!(ours, None, "{m:?}");
                            continue;
                        }
                        assert_eq!(ours, reference(&m), "{m:?}");
                        accepted += usize::from(ours.is_some());
                    }
                }
                for cut in 0..s.len() {
                    assert_eq!(parse(&s[..cut]), reference(&s[..cut]), "{:?}", &s[..cut]);
                }
            }
        }
        assert!(accepted > 15, "{accepted}");
    }

    #[test]
    fn impossible_dates_are_refused() {
        for s in [
            "Thu, 29 Feb 2001 00:00:00 GMT",
            "Mon, 31 Apr 2024 00:00:00 GMT",
            "Mon, 01 Jan 2024 24:00:00 GMT",
            "Mon, 01 Jan 2024 00:60:00 GMT",
            "Mon, 01 Jan 2024 00:00:60 GMT",
            "Tue, 01 Jan 2024 00:00:00 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Mon, 01 Jan 2024 00:00:00 UTC",
            "Mon, 01 Jan 2024 00:00:00",
            "Monday, 01 Jan 2024 00:00:00 GMT",
            "Mon, 01-Jan-24 00:00:00 GMT",
            "Mon Jan 01 00:00:00 2024 GMT",
            "",
            "Mon",
            "Mon, ",
            "Mön, 01 Jan 2024 00:00:00 GMT",
        ] {
            assert_eq!(parse(s), None, "{s}");
            assert_eq!(reference(s), None, "{s}");
        }
    }

    #[test]
    fn an_oversized_value_is_refused() {
        // A hostile server's megabyte of header: refused, as by httpdate.
        for s in [
            format!("Sun, 06 Nov 1994 08:49:37 GMT{}", " GMT".repeat(250_000)),
            format!("Sunday, {}", "0".repeat(1 << 20)),
            "Sun ".repeat(1 << 18),
        ] {
            assert_eq!(parse(&s), None);
            assert_eq!(reference(&s), None);
        }
    }
}
