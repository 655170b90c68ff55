//! token-provider: OAuth2 client-credentials tokens as a WebAssembly component.
//!
//! Read `wit/token-provider.wit` first: it is the contract; then docs/architecture.md,
//! the map of these modules. Decisions are pure functions (`retry`, `store::entry`,
//! `token_response`, `config`, …); I/O goes through the `Platform` trait, which
//! `component` implements with WASI calls when built for `wasm32-wasip2` and
//! `testing` fakes for native tests.

pub mod audit;
pub mod authorized;
pub mod client_auth;
pub mod config;
pub mod discovery;
pub mod error;
pub mod http_types;
pub mod intercept;
pub mod memory;
pub mod origin;
pub mod platform;
pub mod provider;
pub mod retry;
pub mod secret;
pub mod store;
pub mod token_request;
pub mod token_response;
#[cfg(any(test, feature = "uri-reference"))]
pub mod uri_reference;

#[cfg(test)]
pub(crate) mod testing;

pub use error::Error;

#[cfg(target_arch = "wasm32")]
mod component;
