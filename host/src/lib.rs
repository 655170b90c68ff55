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

pub mod kv;
pub mod outbound;
pub mod runtime;
mod wasi_impls;

#[cfg(feature = "testkit")]
pub mod testkit;

/// Shared in-memory stderr capture (for reading the audit log).
pub use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

pub use runtime::{
    AccessToken, ApiRequest, ApiResponse, Flavor, HostBuilder, LogSink, OauthError, ProviderError,
    ProviderInstance, ServerError, TokenHost, TokenRequest, TokenSource, describe, source_name,
};
