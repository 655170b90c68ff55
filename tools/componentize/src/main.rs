//! `componentize CORE.wasm COMPONENT.wasm`: what `wasm-component-ld` does after linking,
//! with binaryen's `wasm-opt -Oz` in between.
//!
//! `host/build.rs` links the component's core module with `--skip-wit-component`, then
//! runs this on it. `wasm-opt` removes about a sixth of the bytes rustc and `wasm-ld`
//! leave (see docs/performance.md, "Where the bytes are"); it keeps the custom sections
//! that carry the WIT worlds, so `wit-component` can then build the component exactly
//! as the linker would have.

use anyhow::{Context, Result, bail};
use std::path::Path;
use wasm_opt::{Feature, OptimizationOptions};

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--keep-names`: keep the name section (for twiggy on the optimized core module,
    // which stays beside the component as `*.core-opt.wasm`).
    let keep_names = args.first().is_some_and(|a| a == "--keep-names");
    if keep_names {
        args.remove(0);
    }
    let [core, component] = &args[..] else {
        bail!("usage: componentize [--keep-names] CORE.wasm COMPONENT.wasm");
    };
    let (core, component) = (Path::new(core), Path::new(component));
    let optimized = component.with_extension("core-opt.wasm");
    shrink(core, &optimized, keep_names)?;
    let bytes =
        std::fs::read(&optimized).with_context(|| format!("reading {}", optimized.display()))?;
    let encoded = wit_component::ComponentEncoder::default()
        .validate(true)
        .merge_imports_based_on_semver(true)
        .module(&bytes)
        .context("reading the WIT worlds of the optimized core module")?
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
    std::fs::write(component, &encoded)
        .with_context(|| format!("writing {}", component.display()))?;
    let before = std::fs::metadata(core)?.len();
    println!(
        "{}: core module {before} bytes, optimized {} bytes, component {} bytes",
        component.display(),
        bytes.len(),
        encoded.len()
    );
    Ok(())
}

/// `wasm-opt -Oz`, with the features rustc's `wasm32-wasip2` target emits named.
fn shrink(input: &Path, output: &Path, keep_names: bool) -> Result<()> {
    OptimizationOptions::new_optimize_for_size_aggressively()
        .debug_info(keep_names)
        .enable_feature(Feature::BulkMemory)
        .enable_feature(Feature::SignExt)
        .enable_feature(Feature::MutableGlobals)
        .enable_feature(Feature::Multivalue)
        .enable_feature(Feature::ReferenceTypes)
        .enable_feature(Feature::TruncSat)
        .run(input, output)
        .with_context(|| format!("wasm-opt on {}", input.display()))
}
