//! `componentize [--keep-names] [--wasm-opt PATH | --no-wasm-opt | --require-wasm-opt]
//! CORE.wasm COMPONENT.wasm`: what `wasm-component-ld` does after linking, with binaryen's
//! `wasm-opt -Oz` in between when one is found.
//!
//! `host/build.rs` and `spin build` link a component's core module with
//! `--skip-wit-component`, then run this on it. `wasm-opt` removes about a sixth of the
//! bytes rustc and `wasm-ld` leave (see docs/performance.md, "Where the bytes are"); it
//! keeps the custom sections that carry the WIT worlds, so `wit-component` can then build
//! the component exactly as the linker would have.
//!
//! Which `wasm-opt`: `--wasm-opt PATH`, else `$WASM_OPT`, else the one npm installs in
//! `tools/binaryen` (`npm ci --prefix tools/binaryen`: binaryen's own build, pinned,
//! nothing to compile). Without one the core module is wrapped as it is, larger, and a
//! line says so; `--require-wasm-opt` makes that an error (what ships is optimized), and
//! `--no-wasm-opt` skips the pass.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The features rustc's `wasm32-wasip2` target emits, named for `wasm-opt`.
const FEATURES: [&str; 6] = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-multivalue",
    "--enable-reference-types",
    "--enable-nontrapping-float-to-int",
];

struct Args {
    keep_names: bool,
    wasm_opt: Option<PathBuf>,
    skip: bool,
    require: bool,
    core: PathBuf,
    component: PathBuf,
}

fn args() -> Result<Args> {
    let usage = "usage: componentize [--keep-names] [--wasm-opt PATH | --no-wasm-opt | --require-wasm-opt] CORE.wasm COMPONENT.wasm";
    let (mut keep_names, mut wasm_opt, mut files) = (false, None, vec![]);
    let (mut skip, mut require) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // Keep the name section (for twiggy on the optimized core module, which
            // stays beside the component as `*.core-opt.wasm`).
            "--keep-names" => keep_names = true,
            "--wasm-opt" => wasm_opt = Some(PathBuf::from(args.next().context(usage)?)),
            "--require-wasm-opt" => require = true,
            "--no-wasm-opt" => skip = true,
            _ if a.starts_with("--") => bail!("{usage}"),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let [core, component] = <[PathBuf; 2]>::try_from(files).map_err(|_| anyhow::anyhow!(usage))?;
    Ok(Args {
        keep_names,
        wasm_opt,
        skip,
        require,
        core,
        component,
    })
}

fn main() -> Result<()> {
    let args = args()?;
    let optimized = args.component.with_extension("core-opt.wasm");
    let wasm_opt = if args.skip {
        None
    } else {
        find_wasm_opt(args.wasm_opt.clone())
    };
    let bytes = match wasm_opt {
        Some(wasm_opt) => {
            shrink(&wasm_opt, &args.core, &optimized, args.keep_names)?;
            std::fs::read(&optimized).with_context(|| format!("reading {}", optimized.display()))?
        }
        None if args.require => bail!(
            "no wasm-opt: run `npm ci --prefix tools/binaryen` (binaryen's own build, pinned), or pass --wasm-opt PATH"
        ),
        None => {
            println!(
                "componentize: no wasm-opt (npm ci --prefix tools/binaryen installs it): {} is not size-optimized",
                args.component.display()
            );
            let _ = std::fs::remove_file(&optimized);
            std::fs::read(&args.core).with_context(|| format!("reading {}", args.core.display()))?
        }
    };
    let encoded = wit_component::ComponentEncoder::default()
        .validate(true)
        .merge_imports_based_on_semver(true)
        .module(&bytes)
        .context("reading the WIT worlds of the core module")?
        // As wasm-component-ld: the reactor adapter for any `wasi_snapshot_preview1`
        // import (the encoder drops it when none is left, as here); its world also sets
        // the `wasi:cli` versions the component imports.
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("adding the wasi_snapshot_preview1 adapter")?
        .encode()
        .context("encoding the component")?;
    let encoded = without_debug_sections(&encoded)?;
    std::fs::write(&args.component, &encoded)
        .with_context(|| format!("writing {}", args.component.display()))?;
    let before = std::fs::metadata(&args.core)?.len();
    println!(
        "{}: core module {before} bytes, optimized {} bytes, component {} bytes",
        args.component.display(),
        bytes.len(),
        encoded.len()
    );
    Ok(())
}

/// Custom sections at the component's top level that only name things for debuggers
/// and say which tools made it: wit-component writes them, no host reads them (the
/// core module's own names are gone already unless `--keep-names`).
const DEBUG_SECTIONS: &[&str] = &["component-name", "producers"];

/// `component` without its top-level [`DEBUG_SECTIONS`] (about 9 KB for the provider).
fn without_debug_sections(component: &[u8]) -> Result<Vec<u8>> {
    let mut reader = wasmparser::BinaryReader::new(component, 0);
    let header = reader.read_bytes(8).context("component header")?;
    let mut out = header.to_vec();
    while !reader.eof() {
        let start = reader.original_position();
        let id = reader.read_u8().context("section id")?;
        let size = reader.read_var_u32().context("section size")? as usize;
        let body = reader.read_bytes(size).context("section body")?;
        let end = reader.original_position();
        if id == 0 {
            let name = wasmparser::BinaryReader::new(body, 0)
                .read_string()
                .context("custom section name")?;
            if DEBUG_SECTIONS.contains(&name) {
                continue;
            }
        }
        out.extend_from_slice(&component[start as usize..end as usize]);
    }
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&out)
        .context("the component without its debug sections")?;
    Ok(out)
}

/// The `wasm-opt` to run, if there is one.
fn find_wasm_opt(given: Option<PathBuf>) -> Option<PathBuf> {
    let npm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../binaryen/node_modules/.bin/wasm-opt");
    given
        .or_else(|| std::env::var_os("WASM_OPT").map(PathBuf::from))
        .or_else(|| npm.is_file().then_some(npm))
}

/// `wasm-opt -Oz` with the target's features (names kept with `-g`).
fn shrink(wasm_opt: &Path, input: &Path, output: &Path, keep_names: bool) -> Result<()> {
    let mut cmd = Command::new(wasm_opt);
    cmd.arg("-Oz").args(FEATURES);
    if keep_names {
        cmd.arg("-g");
    }
    cmd.arg(input).arg("-o").arg(output);
    let status = cmd.status().with_context(|| {
        format!(
            "running {} (it needs node on PATH when npm installed it)",
            wasm_opt.display()
        )
    })?;
    if !status.success() {
        bail!("{} failed on {}", wasm_opt.display(), input.display());
    }
    Ok(())
}
