//! The WASIp3 Spin app (`examples/spin-p3-app`), as far as CI can prove it without a
//! Spin binary:
//! - its `spin.toml` maps every configuration key, the interceptor's included, into
//!   the app, and plugs the interceptor into `wasi:http/client@0.3.0` with the narrow
//!   capability list;
//! - its build commands run and produce every path the manifest names;
//! - every import of the app and of the interceptor is in Spin 4.1's platform world,
//!   or is the client the interceptor provides.
//!
//! Spin 4.1's platform world (`spin:up@4.1.0`, world `platform` in Spin's
//! `wit/world.wit`) is Spin 3's (read from the spin-sdk 5.2 crate, as for the gateway)
//! plus what 4.x adds for WASIp3 components, listed in [`SPIN_4_1_ADDS`]; each entry
//! is checked to be a real interface of that version in spin-sdk 7's WIT.

use crate::common;
use crate::spin_app::{
    assert_mapped, assert_only_user_keys_mapped, component_imports, credentials_are_secrets,
    spin_platform_imports, spin_sdk_wit, uncommented,
};

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use token_provider_core::KEYS;

const CLIENT: &str = "wasi:http/client@0.3.0";
const NARROW: [&str; 3] = ["allowed_outbound_hosts", "key_value_stores", "variables"];

/// Imports Spin 4.1's platform world has beyond Spin 3's that a WASIp3 app or the
/// interceptor may use (Spin 4.1 imports `wasi:http/client@0.3.0` beside
/// `wasi:http/outgoing-handler@0.2.6`, and the `spin:*@3.0.0` async interfaces; its
/// `crates/factor-wasi` links wasmtime's WASIp3 clocks, whose `wait-for` the
/// interceptor awaits, and no deny adapter plugs `wasi:clocks`).
const SPIN_4_1_ADDS: &[&str] = &[
    "wasi:http/types@0.3.0",
    "wasi:http/client@0.3.0",
    "wasi:clocks/types@0.3.0",
    "wasi:clocks/monotonic-clock@0.3.0",
    "spin:variables/variables@3.0.0",
    "spin:key-value/key-value@3.0.0",
];

fn app_dir() -> PathBuf {
    common::repo_root().join("examples/spin-p3-app")
}

fn manifest() -> toml::Table {
    std::fs::read_to_string(app_dir().join("spin.toml"))
        .unwrap()
        .parse()
        .expect("examples/spin-p3-app/spin.toml is valid TOML")
}

fn app(m: &toml::Table) -> &toml::Table {
    m["component"]["app"].as_table().expect("[component.app]")
}

fn strings(v: &toml::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect()
}

#[test]
fn the_keys_a_user_sets_are_mapped_every_key_can_be_and_the_interceptor_is_plugged_in() {
    let m = manifest();
    assert_eq!(m["spin_manifest_version"].as_integer(), Some(2));
    let vars = app(&m)["variables"].as_table().unwrap();
    assert_only_user_keys_mapped(m["variables"].as_table().unwrap(), vars);
    // Every key the interceptor reads can be set: uncommented, the manifest maps them all.
    let all = uncommented(&app_dir().join("spin.toml"));
    let app_vars = all["variables"].as_table().unwrap();
    let all_vars = app(&all)["variables"].as_table().unwrap();
    assert_mapped(KEYS, app_vars, all_vars);
    assert_eq!(
        all_vars.len(),
        KEYS.len() + 1,
        "every key and api_url, nothing else"
    );
    credentials_are_secrets(app_vars);
    assert_eq!(vars["api_url"].as_str(), Some("{{ api_origin }}"));
    let a = app(&m);
    assert_eq!(strings(&a["key_value_stores"]), ["default"]);
    assert_eq!(
        strings(&a["allowed_outbound_hosts"]),
        ["{{ token_origin }}", "{{ api_origin }}"]
    );
    let deps = a["dependencies"].as_table().unwrap();
    assert_eq!(deps.keys().collect::<Vec<_>>(), [CLIENT]);
    let dep = deps[CLIENT].as_table().unwrap();
    assert_eq!(strings(&dep["inherit_configuration"]), NARROW);
    assert!(
        dep["path"]
            .as_str()
            .unwrap()
            .ends_with("token_interceptor.wasm")
    );
    let trigger = &m["trigger"]["http"].as_array().unwrap()[0];
    assert_eq!(trigger["component"].as_str(), Some("app"));
    assert_eq!(trigger["route"].as_str(), Some("/api/..."));
}

/// The interfaces of every package in the WIT directory of the spin-sdk 7 crate the
/// app depends on (its own and its `deps/`).
fn spin_sdk_7_interfaces() -> BTreeSet<String> {
    let (version, wit) = spin_sdk_wit(&app_dir().join("Cargo.toml"));
    assert_eq!(version, "7.0.0");
    let mut resolve = wit_parser::Resolve::default();
    resolve
        .push_dir(&wit)
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    resolve
        .interfaces
        .iter()
        .filter_map(|(id, _)| resolve.id_of(id))
        .collect()
}

#[test]
fn spin_build_produces_every_path_and_all_imports_are_in_spin_4_1s_world() {
    let m = manifest();
    let a = app(&m);
    let workdir = app_dir().join(a["build"]["workdir"].as_str().unwrap());
    for command in strings(&a["build"]["command"]) {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", command]).current_dir(&workdir);
        token_provider_host::testkit::process::user_environment(&mut cmd);
        assert!(cmd.status().unwrap().success(), "{command}");
    }
    let source = app_dir().join(a["source"].as_str().unwrap());
    let interceptor = app_dir().join(a["dependencies"][CLIENT]["path"].as_str().unwrap());
    for path in [&source, &interceptor] {
        assert!(path.exists(), "{} missing after spin build", path.display());
    }

    let sdk7 = spin_sdk_7_interfaces();
    for added in SPIN_4_1_ADDS {
        assert!(sdk7.contains(*added), "{added} is not in spin-sdk 7's WIT");
    }
    let mut spin = spin_platform_imports();
    spin.extend(SPIN_4_1_ADDS.iter().map(|s| s.to_string()));

    let engine = token_provider_host::components::new_engine().unwrap();
    let (i_imports, i_exports, _) = component_imports(&engine, &interceptor);
    assert_eq!(
        i_exports,
        [CLIENT],
        "the interceptor exports the client only"
    );
    let missing: Vec<&String> = i_imports.iter().filter(|i| !spin.contains(*i)).collect();
    assert!(
        missing.is_empty(),
        "interceptor imports Spin 4.1 lacks: {missing:?}"
    );
    for needed in [
        CLIENT,
        "wasi:clocks/monotonic-clock@0.3.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
    ] {
        assert!(
            i_imports.iter().any(|i| i == needed),
            "{needed}: {i_imports:?}"
        );
    }

    let (a_imports, a_exports, _) = component_imports(&engine, &source);
    assert!(a_imports.iter().any(|i| i == CLIENT), "{a_imports:?}");
    let missing: Vec<&String> = a_imports.iter().filter(|i| !spin.contains(*i)).collect();
    assert!(
        missing.is_empty(),
        "app imports Spin 4.1 lacks: {missing:?}"
    );
    assert_eq!(a_exports, ["wasi:http/handler@0.3.0"]);
    // No OAuth anywhere in the app: it imports nothing of the provider's.
    assert!(
        !a_imports.iter().any(|i| i.starts_with("oauth2:")),
        "{a_imports:?}"
    );

    // The composition Spin would make loads in this host's linker (which has
    // wasmtime's wasi:http@0.3.0), and imports only what the two did.
    let app_bytes = std::fs::read(&source).unwrap();
    let composed =
        token_provider_host::compose::wrap(&app_bytes, &std::fs::read(&interceptor).unwrap())
            .expect("the interceptor plugs into the app");
    let path = workdir.join("target/spin/spin_p3_app_wrapped.wasm");
    std::fs::write(&path, composed).unwrap();
    let (c_imports, c_exports, _) = component_imports(&engine, &path);
    assert_eq!(c_exports, ["wasi:http/handler@0.3.0"]);
    let missing: Vec<&String> = c_imports.iter().filter(|i| !spin.contains(*i)).collect();
    assert!(
        missing.is_empty(),
        "composition imports Spin 4.1 lacks: {missing:?}"
    );

    // The check bites: the wasmtime flavor's drafts are not Spin's.
    let wt = token_provider_host::components::EMBEDDED_INTERCEPTOR_WASMTIME;
    let wt = wasmtime::component::Component::new(&engine, wt).unwrap();
    let wt_missing: Vec<String> = wt
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_string())
        .filter(|i| !spin.contains(i))
        .collect();
    assert_eq!(
        wt_missing,
        [
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/atomics@0.2.0-draft",
            "wasi:config/store@0.2.0-rc.1"
        ]
    );
}
