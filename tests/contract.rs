//! The built component's world: exactly the two exports, and no import beyond the
//! WASI interfaces the design allows.

use token_provider_host::runtime::{EMBEDDED_COMPONENT, embedded};

const ALLOWED_IMPORT_PACKAGES: &[&str] = &[
    "wasi:http",
    "wasi:keyvalue",
    "wasi:config",
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli",
];

fn package(name: &str) -> &str {
    name.split('/').next().unwrap()
}

#[test]
fn exports_provider_and_authorized_client_only() {
    let (engine, component) = embedded();
    let ty = component.component_type();
    let mut exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    exports.sort();
    assert_eq!(
        exports,
        [
            "oauth2:token-provider/authorized-client@0.1.0",
            "oauth2:token-provider/provider@0.1.0"
        ]
    );
}

#[test]
fn imports_only_allowed_wasi_interfaces() {
    let (engine, component) = embedded();
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let foreign: Vec<&String> = imports
        .iter()
        .filter(|n| {
            let pkg = package(n);
            let pkg = pkg.split('@').next().unwrap();
            !ALLOWED_IMPORT_PACKAGES.contains(&pkg) && pkg != "oauth2:token-provider"
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "unexpected imports: {foreign:?} (all: {imports:?})"
    );
    // The Spin flavor's drafts, exactly.
    for needed in [
        "wasi:http/outgoing-handler@0.2.6",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
    ] {
        assert!(
            imports.iter().any(|i| i == needed),
            "{needed} missing from {imports:?}"
        );
    }
    // Types-only interfaces of our own package carry no functions.
    for own in imports.iter().filter(|n| n.starts_with("oauth2:")) {
        assert_eq!(own, "oauth2:token-provider/types@0.1.0");
    }
    // No filesystem and no sockets: the provider reaches nothing but what the host's
    // wasi:http and wasi:keyvalue give it. (wasi:cli comes from Rust's std.)
    for forbidden in ["wasi:filesystem", "wasi:sockets"] {
        assert!(
            !imports.iter().any(|i| i.starts_with(forbidden)),
            "{forbidden} imported: {imports:?}"
        );
    }
}

#[test]
fn component_is_a_reasonable_size() {
    // A guard against accidentally pulling in a large dependency (e.g. IDNA tables),
    // not a benchmark: sizes are reported by the benchmark binary.
    assert!(
        EMBEDDED_COMPONENT.len() < 600 * 1024,
        "component is {} bytes",
        EMBEDDED_COMPONENT.len()
    );
}
