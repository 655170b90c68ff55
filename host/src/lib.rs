//! wasmtime host for the token-provider component: load it, give it outbound HTTP,
//! a shared key-value store and configuration, and call it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use token_provider_host::{TokenHost, TokenRequest};
//! let host = TokenHost::builder()
//!     .config("token_url", "https://auth.example.com/oauth/token")
//!     .config("client_id", "my-service")
//!     .config("client_secret", std::env::var("CLIENT_SECRET")?)
//!     .build()?;
//! let token = host.instance().await?.get_token(&TokenRequest::default_request()).await??;
//! println!("expires at {}", token.expires_at);
//! # Ok(()) }
//! ```
//!
//! The crate root is what an embedder needs. [`kv`] holds the key-value backends,
//! [`outbound`] the TLS settings, [`components`] the embedded builds, [`bindings`] the
//! generated code. [`keyvalue`] and [`config`] are the host side of the components'
//! `wasi:keyvalue` and `wasi:config` imports, wasmtime-style (a context in the
//! embedder's own store state, a borrowed view, `add_to_linker` with a function that
//! lends it), for an embedder that links the components into its own `Linker`.
//!
//! The `testkit` feature (on by default through the `cli` feature that builds the
//! `token-provider` binary) adds the token servers, the Redis launcher and the load run
//! that the tests, the benchmarks and the CLI use, and the instrumentation they read
//! ([`HostBuilder::phases`], [`HostBuilder::memory_peak`],
//! [`HostBuilder::config_get_all`], [`HostBuilder::clock_offset_ms`]); embedders leave
//! both off (`default-features = false`).

pub mod bindings;
pub mod components;
pub mod compose;
pub mod config;
pub mod keyvalue;
pub mod kv;
// Test and benchmark instrumentation: public with the test kit only.
#[cfg(feature = "testkit")]
pub mod memory_peak;
#[cfg(not(feature = "testkit"))]
#[allow(dead_code)]
mod memory_peak;
pub mod outbound;
#[cfg(feature = "testkit")]
pub mod phases;
#[cfg(not(feature = "testkit"))]
#[allow(dead_code)]
mod phases;
pub mod reuse;
mod runtime;
pub mod serve;
mod types;

#[cfg(feature = "testkit")]
pub mod testkit;

/// Shared in-memory stderr capture (for reading the audit log).
pub use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

pub use components::Flavor;
#[cfg(feature = "testkit")]
pub use memory_peak::MemoryPeak;
#[cfg(feature = "testkit")]
pub use phases::Phases;
pub use runtime::{HostBuilder, Inherit, LogSink, ProviderInstance, State, TokenHost};
pub use types::{
    AccessToken, ApiRequest, ApiResponse, OauthError, Proven, ProviderError, ServerError,
    TokenRequest, TokenSource, describe, source_name,
};
