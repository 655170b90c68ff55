//! Times read back from the shared store, judged against this instance's own clock and
//! settings (pure).
//!
//! Every instance dates what it writes with its own wall clock. A record written by an
//! instance whose clock runs ahead claims more than that instance's settings allowed
//! when it wrote it: a cooldown a day long that no success can clear (nobody fetches
//! while it lasts), a token served past its real expiry, a lease nobody may take over.
//! So a reader believes a time only as far as it would have written it itself, from
//! its own clock:
//!
//! | record | believed while | used as |
//! |---|---|---|
//! | failure (cooldown) | `until` ≤ now + `failure_cooldown_secs` + tolerance | at most `failure_cooldown_secs` from now |
//! | refresh pause | `until` ≤ now + the pause (`retry_max_delay_ms`, ≥ 1 s) + tolerance | at most the pause from now |
//! | lease holder | `started` ≤ now + tolerance | waited on for at most `lease_ms` |
//! | token | usable for at most its lifetime from now (`issued_at` ≤ now + skew) | as it is |
//! | discovery | `fetched_at` ≤ now + tolerance | as it is |
//!
//! A record beyond its bound counts as absent (the caller audits it). The tolerance is
//! the clock difference the deployment allows, `expiry_skew_secs` (at least 1 s): a
//! writer that far ahead is believed, and its deadline cut to what this instance would
//! have written. The token's bound needs no more: the skew is what it already allows
//! for, and a writer at most that far ahead never makes it served past expiry.
//!
//! The bound is this instance's own setting, not the largest a setting may be: clamping
//! each read to "at most N from now" would make a record dated a day ahead last a day
//! all the same (every read cuts it to N from a later now).

/// The least clock difference tolerated, whatever `expiry_skew_secs` says.
pub(crate) const MIN_TOLERANCE_MS: u64 = 1_000;

/// Judge a deadline read from the store that this instance would have set at most
/// `longest_ms` after now: `Ok` with the deadline to use (never more than `longest_ms`
/// from now), or `Err` with how far (ms) it lies beyond what is believed.
pub(crate) fn deadline(
    until_ms: u64,
    now_ms: u64,
    longest_ms: u64,
    tolerance_ms: u64,
) -> Result<u64, u64> {
    let longest = now_ms.saturating_add(longest_ms);
    let believed = longest.saturating_add(tolerance_ms);
    if until_ms > believed {
        Err(until_ms - longest)
    } else {
        Ok(until_ms.min(longest))
    }
}

/// Judge a start time read from the store (a lease holder's, a discovery's fetch, a
/// drop's): `Err` with how far ahead of now it lies when that is more than the
/// tolerance.
pub(crate) fn started(started_ms: u64, now_ms: u64, tolerance_ms: u64) -> Result<u64, u64> {
    match started_ms.checked_sub(now_ms) {
        Some(ahead) if ahead > tolerance_ms => Err(ahead),
        _ => Ok(started_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: u64 = 60_000;

    #[test]
    fn a_deadline_is_cut_to_what_this_instance_would_write_and_refused_beyond_the_tolerance() {
        let now = 100_000_000;
        // Written by a clock in step: used as it is.
        assert_eq!(deadline(now + 60_000, now, 60_000, TOL), Ok(now + 60_000));
        assert_eq!(
            deadline(now - 5, now, 60_000, TOL),
            Ok(now - 5),
            "lapsed stays lapsed"
        );
        // Up to the tolerance ahead: believed, but never longer than 60 s from now.
        assert_eq!(deadline(now + 60_400, now, 60_000, TOL), Ok(now + 60_000));
        assert_eq!(deadline(now + 120_000, now, 60_000, TOL), Ok(now + 60_000));
        // A day ahead: not believed.
        assert_eq!(
            deadline(now + 86_400_000 + 60_000, now, 60_000, TOL),
            Err(86_400_000)
        );
        assert_eq!(deadline(now + 120_001, now, 60_000, TOL), Err(60_001));
        assert_eq!(
            deadline(now + 61_001, now, 60_000, MIN_TOLERANCE_MS),
            Err(1_001)
        );
        assert_eq!(deadline(u64::MAX, now, u64::MAX, TOL), Ok(u64::MAX));
    }

    #[test]
    fn a_start_time_ahead_of_this_clock_by_more_than_the_tolerance_is_refused() {
        let now = 100_000_000;
        assert_eq!(started(now - 30_000, now, TOL), Ok(now - 30_000));
        assert_eq!(started(now + 60_000, now, TOL), Ok(now + 60_000));
        assert_eq!(started(now + 60_001, now, TOL), Err(60_001));
        assert_eq!(started(now + 1_001, now, MIN_TOLERANCE_MS), Err(1_001));
        assert_eq!(started(now + 86_400_000, now, TOL), Err(86_400_000));
    }
}
