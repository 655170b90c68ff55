//! What the benchmarks share: building the example components they compare against.

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build `examples/{dir}` and read its `.wasm`.
pub fn example_component(dir: &str, file: &str) -> Vec<u8> {
    let mut cmd = std::process::Command::new("cargo");
    cmd.args(["build", "--quiet", "--manifest-path"])
        .arg(format!("examples/{dir}/Cargo.toml"))
        .args([
            "--target",
            "wasm32-wasip2",
            "--release",
            "--target-dir",
            "target/examples",
        ])
        .current_dir(repo_root());
    token_provider_host::testkit::process::user_environment(&mut cmd);
    assert!(
        cmd.status().unwrap().success(),
        "building examples/{dir} failed"
    );
    std::fs::read(
        repo_root()
            .join("target/examples/wasm32-wasip2/release")
            .join(file),
    )
    .unwrap()
}
