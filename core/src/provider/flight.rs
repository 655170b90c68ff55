//! Single flight inside one instance: while a request of this instance fetches or
//! renews the token of a cache key, the instance's other requests for that key wait
//! for its outcome (a cold fetch) or keep serving the valid token (a renewal) instead
//! of starting their own. Across instances the lease does the same (`single_flight`).
//! Only an instance that serves requests concurrently (WASIp3) ever sees a flight in
//! progress; the waiting is a future woken when the flight lands, so it blocks nothing.

use super::token::IssuedToken;
use crate::error::Error;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A fetch or renewal in progress, and its outcome once it lands.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    outcome: RefCell<Option<Result<IssuedToken, Error>>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Flight {
    /// Whether its outcome is known (a landed flight left in memory is no flight).
    pub(crate) fn landed(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    fn land(&self, outcome: Result<IssuedToken, Error>) {
        *self.outcome.borrow_mut() = Some(outcome);
        for waker in self.waiters.take() {
            waker.wake();
        }
    }
}

/// Waiting for a flight to land: its outcome.
pub(crate) struct Landing(pub(crate) Rc<Flight>);

impl Future for Landing {
    type Output = Result<IssuedToken, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.0.outcome.borrow().as_ref() {
            return Poll::Ready(outcome.clone());
        }
        let mut waiters = self.0.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The flight this request runs for a key. Dropped without landing (the request was
/// cancelled, the instance is going away), it lands with an error, so no waiter waits
/// for ever. A landed flight left in the instance's memory counts as none.
pub(crate) struct Boarded(pub(crate) Rc<Flight>);

/// What a waiter gets when the request it waited on went away mid-fetch.
pub(crate) const ABANDONED: &str = "the request fetching this token in this instance was cancelled";

/// Whether a flight's outcome is that its request went away (nothing was learned).
pub(crate) fn abandoned(e: &Error) -> bool {
    matches!(e, Error::Transport(m) if m == ABANDONED)
}

impl Boarded {
    pub(crate) fn land(self, outcome: &Result<IssuedToken, Error>) {
        self.0.land(outcome.clone());
    }
}

impl Drop for Boarded {
    fn drop(&mut self) {
        if !self.0.landed() {
            self.0.land(Err(Error::Transport(ABANDONED.to_string())));
        }
    }
}
