//! Sending to APIs with a token: the authorized client (`authorized`: allow-list,
//! destination binding, the token attached, one retry after a 401) and the token
//! interceptor's decisions (`intercept`) with its route table (`routes`), and what a
//! 401 says about the token (`challenge`), and the headers a token goes with (`proof`:
//! `Authorization`, and a DPoP token's proof).

pub(crate) mod authorized;
pub(crate) mod challenge;
pub(crate) mod intercept;
pub(crate) mod proof;
pub(crate) mod routes;

pub(crate) use authorized::SendSettings;
pub(crate) use routes::{InterceptSettings, Unmatched, parse_routes};
