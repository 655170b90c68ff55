//! token-provider: OAuth2 client-credentials tokens as a WebAssembly component.
//!
//! The modules below are a sans-I/O core (plain Rust, tested natively); `component`
//! binds them to WASI (`wasi:http`, `wasi:keyvalue`, `wasi:config`) when built for
//! `wasm32-wasip2`. Read `wit/token-provider.wit` first: it is the contract.

pub mod audit;
pub mod authorized;
pub mod cache;
pub mod config;
pub mod error;
pub mod http_types;
pub mod lease;
pub mod origin;
pub mod platform;
pub mod provider;
pub mod retry;
pub mod secret;
pub mod token_request;
pub mod token_response;

#[cfg(test)]
pub(crate) mod testing;

pub use error::Error;

#[cfg(target_arch = "wasm32")]
mod component;
