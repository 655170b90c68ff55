//! Builds the components (`components/provider`, `components/interceptor`, each in two
//! flavors) for `wasm32-wasip2` so the host can embed them: `cargo run`/`cargo test`
//! need nothing else but the `wasm32-wasip2` target (`scripts/test.sh` adds it with
//! rustup; this script only says so when it is missing).
//!
//! Also the provider with RS256/PS256 (`token_provider_rsa.wasm`, Spin flavor, the
//! `rsa` feature), which the host runs for a configuration with an RSA key.
//!
//! `TOKEN_PROVIDER_COMPONENTS_DIR=DIR` skips the nested builds and embeds the five
//! `.wasm` files found in DIR instead (a CI cache, an editor's check, a release build
//! made elsewhere): `token_provider.wasm`, `token_provider_rsa.wasm`,
//! `token_provider_wasmtime.wasm`, `token_interceptor.wasm`,
//! `token_interceptor_wasmtime.wasm`.
//!
//! The nested cargo uses its own target directory (no lock contention with the outer
//! build) and a cleared environment (the outer build's RUSTFLAGS, wrappers and target
//! settings must not leak into a wasm build).
//!
//! The core module is linked without the component wrapper; `tools/componentize`
//! (built once per machine into `target/tools`, Rust only) shrinks it with binaryen's
//! `wasm-opt -Oz` and wraps it as a component. `wasm-opt` is binaryen's own build from
//! npm (`npm ci --prefix tools/binaryen`, which `scripts/test.sh` and `spin build` run;
//! or `TOKEN_PROVIDER_WASM_OPT=PATH`): nothing C++ to compile. Without it the
//! components are embedded unshrunk (a warning says so, and
//! `components::wasm_optimized()` is false; the packaging tests require it true).
//!
//! The demo app (`examples/p3-app`, a WASIp3 app with no OAuth code, which the demo
//! and the tests wrap with the interceptor) is built too, and embedded as
//! `TOKEN_PROVIDER_DEMO_APP_WASM`, prebuilt components or not.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

#[path = "src/testkit/process.rs"]
mod process;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    println!("cargo:rerun-if-env-changed={PREBUILT_ENV}");
    println!("cargo:rerun-if-env-changed={WASM_OPT_ENV}");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("examples/p3-app").display()
    );
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_root = env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    check_target_installed();
    // One target directory for every nested build: the components share most of
    // their dependencies (each feature set keeps its own artifacts).
    let nested = target_root.join(format!("component-build{}", checkout_tag(&root)));
    build_demo_app(&root, &nested, &out_dir);
    if let Some(dir) = env::var_os(PREBUILT_ENV) {
        embed_prebuilt(&PathBuf::from(dir), &out_dir);
        return;
    }
    for path in [
        "core",
        "es256",
        "components",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
        "wit-interceptor",
        "wit-p3",
        "tools/componentize",
        "tools/binaryen",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let componentize = build_componentize(&root, &target_root.join("tools"));
    let wasm_opt = find_wasm_opt(&root);
    if wasm_opt.is_none() {
        println!(
            "cargo:warning=no wasm-opt: the components are embedded unshrunk (fine for the demo; `npm ci --prefix tools/binaryen` installs binaryen's prebuilt wasm-opt, as scripts/test.sh does)"
        );
    }
    println!(
        "cargo:rustc-env=TOKEN_PROVIDER_WASM_OPTIMIZED={}",
        wasm_opt.is_some()
    );

    // Each component and flavor built in turn in the shared nested directory, shrunk
    // and wrapped, then copied to stable paths under target/components/ for spin.toml,
    // wac and users. The host embeds its own copy from OUT_DIR (unique per checkout),
    // so two checkouts that share a target directory never embed each other's
    // component.
    let out = target_root.join("components");
    std::fs::create_dir_all(&out).expect("create target/components");
    for build in BUILDS {
        let core = build_core_module(&root, &nested, &build);
        let built = nested.join(build.file);
        run_componentize(&componentize, wasm_opt.as_deref(), &core, &built);
        std::fs::copy(&built, out.join(build.file))
            .expect("copy the component to target/components");
        embed(&build, &built, &out_dir);
    }
}

/// Where a prebuilt binaryen `wasm-opt` is: `TOKEN_PROVIDER_WASM_OPT`, else the one
/// `npm ci --prefix tools/binaryen` installs.
fn find_wasm_opt(root: &std::path::Path) -> Option<PathBuf> {
    if let Some(path) = env::var_os(WASM_OPT_ENV) {
        return Some(PathBuf::from(path));
    }
    let npm = root.join("tools/binaryen/node_modules/.bin/wasm-opt");
    npm.is_file().then_some(npm)
}

/// `examples/p3-app`, built for the demo and the tests, embedded as
/// `TOKEN_PROVIDER_DEMO_APP_WASM`.
fn build_demo_app(root: &std::path::Path, target_dir: &std::path::Path, out_dir: &std::path::Path) {
    let args = [
        "--quiet",
        "--manifest-path",
        "examples/p3-app/Cargo.toml",
        "--target",
        TARGET,
        "--release",
    ];
    cargo_build(root, target_dir, &args, None, "examples/p3-app");
    let built = target_dir.join(TARGET).join("release").join("p3_app.wasm");
    let embedded = out_dir.join("p3_app.wasm");
    std::fs::copy(&built, &embedded).expect("copy the demo app to OUT_DIR");
    println!(
        "cargo:rustc-env=TOKEN_PROVIDER_DEMO_APP_WASM={}",
        embedded.display()
    );
}

/// The variable naming a directory of prebuilt components.
const PREBUILT_ENV: &str = "TOKEN_PROVIDER_COMPONENTS_DIR";
/// The variable naming a `wasm-opt` to shrink the components with.
const WASM_OPT_ENV: &str = "TOKEN_PROVIDER_WASM_OPT";

/// One embedded component: which package, with which features, embedded under which
/// variable and file name.
struct Build {
    env: &'static str,
    file: &'static str,
    package: &'static str,
    features: Option<&'static str>,
}

const BUILDS: [Build; 5] = [
    Build {
        env: "TOKEN_PROVIDER_WASM",
        file: "token_provider.wasm",
        package: "token-provider",
        features: None,
    },
    Build {
        env: "TOKEN_PROVIDER_RSA_WASM",
        file: "token_provider_rsa.wasm",
        package: "token-provider",
        features: Some("rsa"),
    },
    Build {
        env: "TOKEN_PROVIDER_WASMTIME_WASM",
        file: "token_provider_wasmtime.wasm",
        package: "token-provider",
        features: Some("wasmtime-flavor"),
    },
    Build {
        env: "TOKEN_INTERCEPTOR_WASM",
        file: "token_interceptor.wasm",
        package: "token-interceptor",
        features: None,
    },
    Build {
        env: "TOKEN_INTERCEPTOR_WASMTIME_WASM",
        file: "token_interceptor_wasmtime.wasm",
        package: "token-interceptor",
        features: Some("wasmtime-flavor"),
    },
];

/// Copy `component` to OUT_DIR and point the host's `include_bytes!` at the copy.
fn embed(build: &Build, component: &std::path::Path, out_dir: &std::path::Path) {
    let embedded = out_dir.join(build.file);
    std::fs::copy(component, &embedded).expect("copy the component to OUT_DIR");
    println!("cargo:rustc-env={}={}", build.env, embedded.display());
}

/// Embed the five components of `dir` as they are (`TOKEN_PROVIDER_COMPONENTS_DIR`;
/// taken as shrunk).
fn embed_prebuilt(dir: &std::path::Path, out_dir: &std::path::Path) {
    println!("cargo:rustc-env=TOKEN_PROVIDER_WASM_OPTIMIZED=true");
    for build in BUILDS {
        let from = dir.join(build.file);
        println!("cargo:rerun-if-changed={}", from.display());
        assert!(
            from.is_file(),
            "{PREBUILT_ENV}={}: {} is missing (it must hold all five components)",
            dir.display(),
            build.file
        );
        embed(&build, &from, out_dir);
    }
}

/// "" for the checkout that owns the target directory, else a tag from its path, so
/// nested component builds of different checkouts never share an output file.
fn checkout_tag(root: &std::path::Path) -> String {
    if env::var_os("CARGO_TARGET_DIR").is_none() {
        return String::new();
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    format!("-{:08x}", h.finish() as u32)
}

/// The component's core module, linked without the component wrapper (the WIT worlds
/// stay in custom sections for `componentize`).
fn build_core_module(
    root: &std::path::Path,
    target_dir: &std::path::Path,
    build: &Build,
) -> PathBuf {
    let mut args = vec![
        "--package",
        build.package,
        "--lib",
        "--target",
        TARGET,
        "--profile",
        "component",
    ];
    if let Some(f) = build.features {
        args.extend(["--features", f]);
    }
    let flags = format!("-Clink-arg=--skip-wit-component{}", remapped_paths(root));
    let rustflags = ("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", flags.as_str());
    let what = format!("{} ({:?}) for {TARGET}", build.package, build.features);
    cargo_build(root, target_dir, &args, Some(rustflags), &what);
    // rustc names the core module after the package, `-` written as `_`.
    let lib = format!("{}.wasm", build.package.replace('-', "_"));
    let wasm = target_dir.join(TARGET).join("component").join(lib);
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    wasm
}

/// `--remap-path-prefix` flags that cut the checkout's path and cargo's registry
/// source directory out of the source paths a component carries (in its panic
/// locations): about 2–3 KB less in each component, and the same bytes from every checkout and
/// machine. A path with a space is left as it is (the flags are space-separated).
fn remapped_paths(root: &std::path::Path) -> String {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut prefixes = vec![root.to_path_buf()];
    if let Some(home) = cargo_home {
        // One directory per registry (`index.crates.io-<hash>`), and git checkouts.
        let registries = std::fs::read_dir(home.join("registry").join("src"));
        prefixes.extend(registries.into_iter().flatten().flatten().map(|e| e.path()));
        prefixes.push(home.join("git").join("checkouts"));
    }
    prefixes
        .iter()
        .filter_map(|p| p.to_str())
        .filter(|p| !p.contains(' '))
        .map(|p| format!(" --remap-path-prefix={}/=", p.trim_end_matches('/')))
        .collect()
}

/// `tools/componentize`, built in release into `target_dir` (once: later builds find
/// it up to date).
fn build_componentize(root: &std::path::Path, target_dir: &std::path::Path) -> PathBuf {
    let args = [
        "--quiet",
        "--locked",
        "--release",
        "--manifest-path",
        "tools/componentize/Cargo.toml",
    ];
    cargo_build(root, target_dir, &args, None, "tools/componentize");
    target_dir.join("release").join("componentize")
}

/// `cargo build ARGS --target-dir TARGET_DIR` from `root`, in the user's environment
/// (plus `extra_env`), not the build script's; panics naming `what` if it fails.
fn cargo_build(
    root: &std::path::Path,
    target_dir: &std::path::Path,
    args: &[&str],
    extra_env: Option<(&str, &str)>,
    what: &str,
) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    process::user_environment(&mut cmd);
    if let Some((key, value)) = extra_env {
        cmd.env(key, value);
    }
    cmd.current_dir(root)
        .arg("build")
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build {what}: {e}"));
    assert!(status.success(), "building {what} failed");
}

fn run_componentize(
    tool: &std::path::Path,
    wasm_opt: Option<&std::path::Path>,
    core: &std::path::Path,
    component: &std::path::Path,
) {
    let mut cmd = Command::new(tool);
    match wasm_opt {
        Some(path) => cmd.arg("--wasm-opt").arg(path),
        None => cmd.arg("--no-wasm-opt"),
    };
    let status = cmd
        .arg(core)
        .arg(component)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("could not run tools/componentize");
    assert!(
        status.success(),
        "tools/componentize failed on {}",
        core.display()
    );
}

/// The `wasm32-wasip2` standard library must be installed: `scripts/test.sh` adds it
/// (`rustup target add wasm32-wasip2`); a build script does not change the toolchain.
fn check_target_installed() {
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output();
    if let Ok(out) = sysroot {
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if PathBuf::from(&sysroot)
            .join("lib/rustlib")
            .join(TARGET)
            .exists()
        {
            return;
        }
    }
    panic!(
        "the {TARGET} target is missing: run `rustup target add {TARGET}` (scripts/test.sh does), or set {PREBUILT_ENV} to a directory of prebuilt components"
    );
}
