//! The components this host embeds (see `build.rs`): the provider and the interceptor,
//! each in two flavors, and the demo app; and compiling them once per process.

use std::sync::OnceLock;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The Spin-flavor component this host was built with; the default.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("TOKEN_PROVIDER_WASM"));

/// The Spin-flavor component built with the `rsa` feature (`token_provider_rsa.wasm`):
/// RS256/PS256 client assertions besides everything the default one does. The host
/// runs it for a configuration with an RSA key ([`needs_rsa`]).
pub static EMBEDDED_RSA_COMPONENT: &[u8] = include_bytes!(env!("TOKEN_PROVIDER_RSA_WASM"));

/// The wasmtime-flavor component (same source, the drafts wasmtime's CLI implements).
pub static EMBEDDED_WASMTIME_COMPONENT: &[u8] =
    include_bytes!(env!("TOKEN_PROVIDER_WASMTIME_WASM"));

/// The token interceptor, Spin flavor (`token_interceptor.wasm`): exports and imports
/// `wasi:http/client@0.3.0`; compose it in front of a WASIp3 app (`wac plug`).
pub static EMBEDDED_INTERCEPTOR: &[u8] = include_bytes!(env!("TOKEN_INTERCEPTOR_WASM"));

/// The token interceptor, wasmtime flavor (`token_interceptor_wasmtime.wasm`).
pub static EMBEDDED_INTERCEPTOR_WASMTIME: &[u8] =
    include_bytes!(env!("TOKEN_INTERCEPTOR_WASMTIME_WASM"));

/// Whether the embedded components were shrunk with binaryen's `wasm-opt` (see
/// `build.rs`: without `tools/binaryen` installed they are not, which only the size
/// shows).
pub fn wasm_optimized() -> bool {
    env!("TOKEN_PROVIDER_WASM_OPTIMIZED") == "true"
}

/// `examples/p3-app`: a WASIp3 app with no OAuth code that forwards each request to the
/// origin its `x-forward-to` header names, through `wasi:http/client@0.3.0`. The demo
/// and the tests wrap it with the interceptor.
pub static EMBEDDED_DEMO_APP: &[u8] = include_bytes!(env!("TOKEN_PROVIDER_DEMO_APP_WASM"));

/// Which build of the component to run. Both have the same exports; they differ in
/// the WASI drafts they import (this host implements both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Flavor {
    /// `token_provider.wasm`: `wasi:keyvalue@0.2.0-draft2`, `wasi:config@0.2.0-draft-2024-09-27` (Spin 3.x/4.x).
    #[default]
    Spin,
    /// `token_provider_wasmtime.wasm`: `wasi:keyvalue@0.2.0-draft`, `wasi:config@0.2.0-rc.1` (wasmtime 48 CLI).
    Wasmtime,
}

impl Flavor {
    pub fn embedded_bytes(self) -> &'static [u8] {
        match self {
            Flavor::Spin => EMBEDDED_COMPONENT,
            Flavor::Wasmtime => EMBEDDED_WASMTIME_COMPONENT,
        }
    }

    /// `spin` or `wasmtime`, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Spin => "spin",
            Flavor::Wasmtime => "wasmtime",
        }
    }
}

pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    // WASIp3 components (apps that send through `wasi:http/client@0.3.0`) need the
    // component model's async ABI; the provider itself is WASIp2.
    config.wasm_component_model_async(true);
    Ok(Engine::new(&config)?)
}

/// An engine that instantiates from a pool of preallocated instance slots (memories,
/// tables, stacks reused between instances), as Spin's engine does: a fresh instance
/// per request then costs what it costs in Spin. For the benchmarks' emulation of a
/// Spin request; components must be compiled for the engine they run on.
pub fn new_pooled_engine() -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    // WASIp3 components (apps that send through `wasi:http/client@0.3.0`) need the
    // component model's async ABI; the provider itself is WASIp2.
    config.wasm_component_model_async(true);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(100)
        .total_core_instances(200)
        .total_memories(200)
        .total_tables(200)
        .total_stacks(100)
        .max_memory_size(64 << 20);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Whether a configuration signs with an RSA key (`client_assertion_alg` RS256 or PS256,
/// or a `client_private_key`, or with `dpop = on` a `dpop_private_key`, that is not one
/// of the default build's keys) or names a `client_certificate` (which only that build
/// reads), so that it needs [`EMBEDDED_RSA_COMPONENT`]. A key that is no key at all
/// also gets that build, whose error then names every kind it reads.
pub fn needs_rsa(config: &std::collections::HashMap<String, String>) -> bool {
    let set = |key: &str| config.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    if matches!(set("client_assertion_alg"), Some("RS256" | "PS256"))
        || set("client_certificate").is_some()
    {
        return true;
    }
    // Natively the core may or may not have `rsa` (a dev-dependency turns it on for the
    // benchmarks): an RSA key either fails to load or loads as RS256.
    let rsa_key = |pem: &str| {
        use token_provider_core::internal::{Alg, PrivateKey};
        PrivateKey::from_pem(pem, None)
            .map_or(true, |key| matches!(key.alg(), Alg::Rs256 | Alg::Ps256))
    };
    // A Google service account's key file holds its (RSA) key: read it as the
    // component will (a file that does not parse is the component's error to give).
    let account_key = || {
        let file = set("service_account_key")?;
        let account = token_provider_core::internal::ServiceAccount::parse(file).ok()?;
        Some(rsa_key(account.private_key.expose()))
    };
    set("client_private_key").is_some_and(rsa_key)
        || account_key() == Some(true)
        || (set("dpop") == Some("on") && set("dpop_private_key").is_some_and(rsa_key))
}

/// The embedded RSA build ([`EMBEDDED_RSA_COMPONENT`]), compiled once per process on
/// the same engine as [`embedded`]'s.
pub fn embedded_rsa() -> (Engine, Component) {
    static RSA: OnceLock<Component> = OnceLock::new();
    let (engine, _) = embedded(Flavor::Spin);
    let component = RSA
        .get_or_init(|| {
            Component::new(&engine, EMBEDDED_RSA_COMPONENT).expect("the RSA build compiles")
        })
        .clone();
    (engine, component)
}

/// An embedded component, compiled once per process and flavor (one shared engine).
pub fn embedded(flavor: Flavor) -> (Engine, Component) {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    static SPIN: OnceLock<Component> = OnceLock::new();
    static WASMTIME: OnceLock<Component> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| new_engine().expect("engine")).clone();
    let cell = match flavor {
        Flavor::Spin => &SPIN,
        Flavor::Wasmtime => &WASMTIME,
    };
    let component = cell
        .get_or_init(|| {
            Component::new(&engine, flavor.embedded_bytes()).expect("embedded component compiles")
        })
        .clone();
    (engine, component)
}

#[cfg(test)]
mod tests {
    use super::needs_rsa;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_an_rsa_key_or_algorithm_picks_the_rsa_build() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let rsa = std::fs::read_to_string(root.join("rsa-2048.pem")).unwrap();
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        assert!(!needs_rsa(&config(&[])));
        assert!(!needs_rsa(&config(&[
            ("client_secret", "s"),
            ("client_private_key", " ")
        ])));
        assert!(!needs_rsa(&config(&[("client_private_key", &p256)])));
        assert!(!needs_rsa(&config(&[("client_assertion_alg", "ES256")])));
        assert!(needs_rsa(&config(&[("client_private_key", &rsa)])));
        assert!(needs_rsa(&config(&[("client_assertion_alg", "PS256")])));
        assert!(needs_rsa(&config(&[("client_assertion_alg", "RS256")])));
        assert!(needs_rsa(&config(&[
            ("client_private_key", &p256),
            ("client_certificate", "-----BEGIN CERTIFICATE-----"),
        ])));
        assert!(needs_rsa(&config(&[
            ("dpop", "on"),
            ("dpop_private_key", &rsa)
        ])));
        assert!(!needs_rsa(&config(&[
            ("dpop", "off"),
            ("dpop_private_key", &rsa)
        ])));
        assert!(!needs_rsa(&config(&[
            ("dpop", "on"),
            ("dpop_private_key", &p256)
        ])));
        // Not a key at all: the RSA build's error names every kind it reads.
        assert!(needs_rsa(&config(&[(
            "client_private_key",
            "-----BEGIN PRIVATE KEY-----"
        )])));
    }
}
