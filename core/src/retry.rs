//! When to try the token endpoint again, and when to stop: bounded retries with
//! full-jitter exponential backoff on transport faults, 5xx and 429, `Retry-After`
//! honoured (never retried sooner, and not at all if it asks for longer than the cap),
//! OAuth 4xx errors never retried, and one overall deadline. Pure functions: the
//! provider supplies the clock and the randomness.

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// First backoff ceiling; doubles per attempt.
    pub base_ms: u64,
    /// Largest wait between attempts (backoff ceiling and `Retry-After` cap).
    pub max_delay_ms: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Sleep this long, then try again.
    RetryIn(u64),
    /// Give the error to the caller.
    Stop(StopReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The error is not transient (OAuth 4xx, invalid response, redirect, config).
    NotRetryable,
    /// `max_retries` reached.
    Exhausted,
    /// The server asked to wait longer than `max_delay_ms`.
    RetryAfterTooLong,
    /// The wait would end after the overall deadline.
    Deadline,
}

/// Transport faults, timeouts, 5xx and 429 are worth another attempt.
pub(crate) fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Transport(_) | Error::Timeout => true,
        Error::Server { status, .. } => *status >= 500 || *status == 429,
        Error::OAuth(o) => o.status >= 500 || o.status == 429,
        Error::Config(_) | Error::InvalidResponse(_) | Error::Refused(_) => false,
    }
}

/// `invalid_client` / `unauthorized_client`: the credentials are wrong, and asking again
/// cannot help until someone changes them.
pub(crate) fn is_credential_rejection(e: &Error) -> bool {
    matches!(e, Error::OAuth(o) if o.error == "invalid_client" || o.error == "unauthorized_client")
}

/// RFC 9110 §10.2.3 `Retry-After`: delay-seconds or an HTTP-date (all three formats),
/// as milliseconds from `now_unix_ms`. A date in the past is 0; junk is `None`.
pub(crate) fn retry_after_ms(value: &str, now_unix_ms: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate (and then exceed any cap).
        return Some(
            value
                .parse::<u64>()
                .unwrap_or(u64::MAX)
                .saturating_mul(1000),
        );
    }
    let at_ms = crate::http_date::parse(value)?.saturating_mul(1000);
    Some(at_ms.saturating_sub(now_unix_ms))
}

/// Full jitter (uniform in `0..=min(max_delay, base * 2^attempt)`); `random_below(n)`
/// returns a uniform number in `0..n`.
pub(crate) fn backoff_ms(
    policy: &RetryPolicy,
    attempt: u32,
    random_below: impl FnOnce(u64) -> u64,
) -> u64 {
    let ceiling = policy
        .base_ms
        .saturating_mul(1u64 << attempt.min(32))
        .min(policy.max_delay_ms);
    random_below(ceiling.saturating_add(1))
}

/// After attempt number `attempt` (0 = the first) failed with `error`.
pub(crate) fn next(
    policy: &RetryPolicy,
    attempt: u32,
    error: &Error,
    retry_after: Option<u64>,
    now_ms: u64,
    deadline_ms: u64,
    random_below: impl FnOnce(u64) -> u64,
) -> Next {
    if !is_retryable(error) {
        return Next::Stop(StopReason::NotRetryable);
    }
    if attempt >= policy.max_retries {
        return Next::Stop(StopReason::Exhausted);
    }
    let delay = match retry_after {
        Some(ms) if ms > policy.max_delay_ms => return Next::Stop(StopReason::RetryAfterTooLong),
        Some(ms) => ms,
        None => backoff_ms(policy, attempt, random_below),
    };
    if now_ms.saturating_add(delay) >= deadline_ms {
        return Next::Stop(StopReason::Deadline);
    }
    Next::RetryIn(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OAuthError;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        base_ms: 100,
        max_delay_ms: 1000,
    };

    fn oauth(code: &str, status: u16) -> Error {
        Error::OAuth(OAuthError {
            error: code.into(),
            description: None,
            uri: None,
            status,
        })
    }

    fn server(status: u16) -> Error {
        Error::Server {
            status,
            message: String::new(),
        }
    }

    #[test]
    fn transient_failures_are_retried_and_client_errors_are_not() {
        for e in [
            Error::Transport("refused".into()),
            Error::Timeout,
            server(500),
            server(502),
            server(503),
            server(429),
            oauth("temporarily_unavailable", 503),
            oauth("slow_down", 429),
        ] {
            assert!(is_retryable(&e), "{e}");
        }
        for e in [
            oauth("invalid_client", 401),
            oauth("invalid_scope", 400),
            oauth("invalid_request", 400),
            server(404),
            server(302),
            Error::InvalidResponse("x".into()),
            Error::Config("k: v".into()),
        ] {
            assert!(!is_retryable(&e), "{e}");
        }
        assert!(is_credential_rejection(&oauth("invalid_client", 401)));
        assert!(is_credential_rejection(&oauth("unauthorized_client", 400)));
        assert!(!is_credential_rejection(&oauth("invalid_scope", 400)));
    }

    #[test]
    fn retry_after_takes_seconds_and_all_three_http_date_formats() {
        // 1994-11-06 08:49:37 UTC = 784111777 s.
        let now = 784_111_777_000 - 30_000;
        assert_eq!(retry_after_ms("120", now), Some(120_000));
        assert_eq!(retry_after_ms(" 0 ", now), Some(0));
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(retry_after_ms(date, now), Some(30_000), "{date}");
        }
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", now + 60_000),
            Some(0)
        );
        assert_eq!(
            retry_after_ms("99999999999999999999999", now),
            Some(u64::MAX)
        );
        for junk in ["", "-5", "1.5", "soon", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(retry_after_ms(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        // The ceiling handed to the random source: 100, 200, 400, 800, then the cap.
        let ceilings: Vec<u64> = (0..6)
            .map(|a| {
                let mut seen = 0;
                backoff_ms(&POLICY, a, |n| {
                    seen = n;
                    0
                });
                seen - 1
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_ms(&POLICY, 2, |n| n - 1), 400);
        assert_eq!(backoff_ms(&POLICY, 40, |n| n - 1), 1000, "no overflow");
    }

    #[test]
    fn next_honours_retry_after_the_cap_the_budget_and_the_deadline() {
        let e = server(503);
        let r = |n: u64| n / 2;
        assert_eq!(next(&POLICY, 0, &e, None, 0, 10_000, r), Next::RetryIn(50));
        assert_eq!(
            next(&POLICY, 0, &e, Some(700), 0, 10_000, r),
            Next::RetryIn(700)
        );
        assert_eq!(
            next(&POLICY, 0, &e, Some(5_000), 0, 10_000, r),
            Next::Stop(StopReason::RetryAfterTooLong)
        );
        assert_eq!(
            next(&POLICY, 3, &e, None, 0, 10_000, r),
            Next::Stop(StopReason::Exhausted)
        );
        assert_eq!(
            next(&POLICY, 0, &e, Some(700), 9_500, 10_000, r),
            Next::Stop(StopReason::Deadline)
        );
        assert_eq!(
            next(
                &POLICY,
                0,
                &oauth("invalid_client", 401),
                None,
                0,
                10_000,
                r
            ),
            Next::Stop(StopReason::NotRetryable)
        );
    }
}
