//! The Spin app, as far as CI can prove it without a Spin binary:
//! - `spin.toml` parses; it maps only the keys a user sets, and every other
//!   configuration key is there to uncomment (the secret as a secret, required where
//!   there is no default); it declares the key-value store, the outbound hosts, and the
//!   provider as a component dependency;
//! - its build commands run and produce every path the manifest names;
//! - every import of the provider (Spin flavor) and of the gateway is in Spin's platform
//!   world (read from the spin-sdk crate's WIT), or is satisfied by the provider.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use token_provider_core::{KEYS, UsedBy};
use wasmtime::component::{Component, types::ComponentItem};

const PROVIDER_IMPORT: &str = "oauth2:token-provider/authorized-client@0.1.0";
const OWN_TYPES: &str = "oauth2:token-provider/types@0.1.0";

fn root() -> PathBuf {
    common::repo_root()
}

fn manifest() -> toml::Table {
    std::fs::read_to_string(root().join("spin.toml"))
        .unwrap()
        .parse()
        .expect("spin.toml is valid TOML")
}

/// The keys a Spin manifest maps into the component as shipped: what a user sets.
/// Spin resolves every mapped variable on each request's `get-all`, so the others are
/// left to the component's defaults (docs/performance.md).
pub(crate) const MAPPED: &[&str] = &["token_url", "client_id", "client_secret", "scope"];

/// The manifest at `path` with every line of its `# --- more keys: uncomment to set ---`
/// blocks uncommented: what a user gets who sets every key.
pub(crate) fn uncommented(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut out, mut inside, mut blocks) = (String::new(), false, 0);
    for line in text.lines() {
        match line {
            "# --- more keys: uncomment to set ---" => (inside, blocks) = (true, blocks + 1),
            "# --- end ---" => inside = false,
            _ if inside => {
                let uncommented = line.strip_prefix("# ");
                out.push_str(uncommented.unwrap_or_else(|| panic!("not a commented key: {line}")));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    assert_eq!(
        blocks,
        2,
        "{}: the app's and the component's blocks",
        path.display()
    );
    out.parse()
        .unwrap_or_else(|e| panic!("{} uncommented: {e}", path.display()))
}

/// `component_vars` maps each of `keys` to its app variable, which has the key's
/// default (or is required where there is none).
pub(crate) fn assert_mapped<'a>(
    keys: impl IntoIterator<Item = &'a token_provider_core::Key>,
    app_vars: &toml::Table,
    component_vars: &toml::Table,
) {
    for key in keys {
        let (key, default) = (&key.name, &key.default);
        let mapped = component_vars
            .get(*key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{key} not mapped"));
        if *key == "allowed_origins" {
            assert_eq!(mapped, "{{ api_origin }}");
            continue;
        }
        assert_eq!(
            mapped,
            format!("{{{{ {key} }}}}"),
            "component variable {key}"
        );
        let var = app_vars
            .get(*key)
            .and_then(|v| v.as_table())
            .unwrap_or_else(|| panic!("app variable {key}"));
        match default {
            None => assert_eq!(
                var.get("required").and_then(|v| v.as_bool()),
                Some(true),
                "{key} must be required"
            ),
            Some(d) => assert_eq!(
                var.get("default").and_then(|v| v.as_str()),
                Some(*d),
                "default of {key}"
            ),
        }
    }
}

/// A manifest as shipped maps the [`MAPPED`] keys (each to its app variable, with the
/// key's default), `allowed_origins` and `api_url`, and nothing else.
pub(crate) fn assert_only_user_keys_mapped(app_vars: &toml::Table, component_vars: &toml::Table) {
    let mut names: Vec<&str> = component_vars.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = MAPPED.to_vec();
    expected.extend(["allowed_origins", "api_url"]);
    expected.sort_unstable();
    assert_eq!(names, expected);
    let shipped = KEYS.iter().filter(|k| MAPPED.contains(&k.name));
    assert_mapped(shipped, app_vars, component_vars);
}

fn gateway(m: &toml::Table) -> &toml::Table {
    m["component"]["gateway"]
        .as_table()
        .expect("[component.gateway]")
}

#[test]
fn only_the_keys_a_user_sets_are_mapped_and_every_other_key_can_be_uncommented() {
    let m = manifest();
    assert_eq!(m["spin_manifest_version"].as_integer(), Some(2));
    let component_vars = gateway(&m)["variables"].as_table().unwrap();
    assert_only_user_keys_mapped(m["variables"].as_table().unwrap(), component_vars);

    // Every key the provider reads can be set: uncommented, the manifest maps them all.
    let m = uncommented(&root().join("spin.toml"));
    let app_vars = m["variables"].as_table().unwrap();
    let component_vars = gateway(&m)["variables"].as_table().unwrap();
    // The gateway's dependency is the provider: the interceptor's keys are not its.
    let provider_keys = KEYS.iter().filter(|k| k.used_by == UsedBy::Both);
    assert_mapped(provider_keys.clone(), app_vars, component_vars);
    assert_eq!(
        component_vars.len(),
        provider_keys.count() + 1,
        "the provider's keys and api_url, nothing else"
    );
    let credentials = credentials_are_secrets(app_vars);
    for (name, var) in app_vars {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        if var.get("secret").and_then(|v| v.as_bool()) == Some(true) {
            assert!(
                credentials.contains(&name.as_str()),
                "only the credentials are secrets: {name}"
            );
        }
    }
}

#[test]
fn permissions_and_the_dependency_are_declared() {
    let m = manifest();
    let g = gateway(&m);
    let stores: Vec<&str> = g["key_value_stores"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(stores, ["default"]);
    let hosts: Vec<&str> = g["allowed_outbound_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(hosts, ["{{ token_origin }}", "{{ api_origin }}"]);
    let dep = g["dependencies"][PROVIDER_IMPORT]
        .as_table()
        .expect("provider dependency");
    // The narrowest list that works: what the provider uses, nothing more.
    let inherited: Vec<&str> = dep["inherit_configuration"]
        .as_array()
        .expect("inherit_configuration is a list of capability sets")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        inherited,
        ["allowed_outbound_hosts", "key_value_stores", "variables"]
    );
    assert!(
        dep["path"]
            .as_str()
            .unwrap()
            .ends_with("token_provider.wasm")
    );
    let trigger = &m["trigger"]["http"].as_array().unwrap()[0];
    assert_eq!(trigger["component"].as_str(), Some("gateway"));
    // The Redis runtime config example parses and points `default` at Redis.
    let rc: toml::Table = std::fs::read_to_string(root().join("runtime-config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        rc["key_value_store"]["default"]["type"].as_str(),
        Some("redis")
    );
}

/// Run the manifest's build commands as `spin build` would (from the app directory).
fn spin_build(m: &toml::Table) {
    for c in gateway(m)["build"]["command"].as_array().unwrap() {
        common::run_from_root(c.as_str().unwrap());
    }
}

pub(crate) fn component_imports(
    engine: &wasmtime::Engine,
    path: &Path,
) -> (Vec<String>, Vec<String>, Component) {
    let component =
        Component::from_file(engine, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    (imports, exports, component)
}

/// The spin-sdk crate a Rust component at `manifest` depends on: its version and its
/// `wit/` directory (read through `cargo metadata`).
pub(crate) fn spin_sdk_wit(manifest: &Path) -> (String, PathBuf) {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sdk = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "spin-sdk")
        .unwrap_or_else(|| panic!("spin-sdk in the dependencies of {}", manifest.display()));
    let wit_dir = Path::new(sdk["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .join("wit");
    (sdk["version"].as_str().unwrap().to_string(), wit_dir)
}

/// Imports of Spin's `spin:up/platform` world, from the spin-sdk crate the gateway uses.
pub(crate) fn spin_platform_imports() -> BTreeSet<String> {
    let (_, wit_dir) = spin_sdk_wit(&root().join("examples/spin-gateway/Cargo.toml"));
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(&wit_dir)
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit_dir.display()));
    assert_eq!(resolve.packages[pkg].name.namespace, "spin");
    let world = resolve.packages[pkg].worlds["platform"];
    resolve.worlds[world]
        .imports
        .iter()
        .filter_map(|(key, item)| match item {
            wit_parser::WorldItem::Interface { id, .. } => resolve.id_of(*id),
            _ => Some(resolve.name_world_key(key)),
        })
        .collect()
}

/// A types-only interface import: no functions, nothing for a host to provide.
fn is_types_only(engine: &wasmtime::Engine, component: &Component, name: &str) -> bool {
    component.component_type().imports(engine).any(|(n, item)| {
        n == name
            && matches!(&item.ty, ComponentItem::ComponentInstance(inst)
                if inst.exports(engine).all(|(_, e)| matches!(e.ty, ComponentItem::Type(_))))
    })
}

/// Spin satisfies `import` if its platform world has it, a dependency (`provided`)
/// exports it, or it is our types-only interface.
fn satisfied_on_spin(
    engine: &wasmtime::Engine,
    component: &Component,
    spin: &BTreeSet<String>,
    provided: &[&str],
    import: &str,
) -> bool {
    spin.contains(import)
        || provided.contains(&import)
        || (import == OWN_TYPES && is_types_only(engine, component, import))
}

#[test]
fn spin_build_produces_every_path_and_all_imports_are_in_spins_world() {
    let m = manifest();
    spin_build(&m);
    let g = gateway(&m);
    let source = root().join(g["source"].as_str().unwrap());
    let provider = root().join(g["dependencies"][PROVIDER_IMPORT]["path"].as_str().unwrap());
    assert!(
        source.exists(),
        "{} missing after spin build",
        source.display()
    );
    assert!(
        provider.exists(),
        "{} missing after spin build",
        provider.display()
    );

    let spin = spin_platform_imports();
    assert!(
        spin.contains("wasi:keyvalue/store@0.2.0-draft2")
            && spin.contains("wasi:http/outgoing-handler@0.2.6"),
        "{spin:?}"
    );
    let engine = token_provider_host::components::new_engine().unwrap();

    let (p_imports, p_exports, p_component) = component_imports(&engine, &provider);
    let missing: Vec<&String> = p_imports
        .iter()
        .filter(|i| !satisfied_on_spin(&engine, &p_component, &spin, &[], i))
        .collect();
    assert!(
        missing.is_empty(),
        "provider imports that Spin lacks: {missing:?}"
    );
    assert!(
        p_exports.iter().any(|e| e == PROVIDER_IMPORT),
        "{p_exports:?}"
    );

    let (g_imports, g_exports, g_component) = component_imports(&engine, &source);
    assert!(
        g_imports.iter().any(|i| i == PROVIDER_IMPORT),
        "the gateway imports the provider: {g_imports:?}"
    );
    let missing: Vec<&String> = g_imports
        .iter()
        .filter(|i| !satisfied_on_spin(&engine, &g_component, &spin, &[PROVIDER_IMPORT], i))
        .collect();
    assert!(
        missing.is_empty(),
        "gateway imports that neither Spin nor the provider satisfy: {missing:?}"
    );
    assert!(
        g_exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
        "{g_exports:?}"
    );

    // The check bites: the wasmtime flavor's drafts are not Spin's.
    let wt = token_provider_host::components::EMBEDDED_WASMTIME_COMPONENT;
    let wt = Component::new(&engine, wt).unwrap();
    let wt_missing: Vec<String> = wt
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_string())
        .filter(|i| !spin.contains(i) && i != OWN_TYPES)
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

/// Every credential of the key table (its `Secret` keys) is a Spin secret variable of
/// the app (`app_vars`, the manifest's `[variables]`); returns their names.
pub fn credentials_are_secrets(app_vars: &toml::Table) -> Vec<&'static str> {
    let credentials: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.kind == token_provider_core::Kind::Secret)
        .map(|k| k.name)
        .collect();
    assert!(credentials.len() >= 4, "{credentials:?}");
    for credential in credentials.iter().copied() {
        assert_eq!(
            app_vars[credential]["secret"].as_bool(),
            Some(true),
            "{credential}"
        );
    }
    credentials
}
