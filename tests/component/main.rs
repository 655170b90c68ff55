//! The component inside the host: each test instantiates the real `.wasm` (both
//! flavors where it matters) in `token-provider-host` against an in-process token
//! server, oidc-provider (HTTP and TLS), the fault server or redis-server.
//! Run one file with `cargo test --test component <file>::`, e.g. `oidc::`.

use token_provider_tests as common;

mod audit_and_leaks;
mod authorized_client;
mod dpop;
mod faults;
mod flavors;
mod identity_providers;
mod oidc;
mod provider;
