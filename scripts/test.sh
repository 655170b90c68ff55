#!/usr/bin/env bash
# The project's test command (README quick start, CI): installs what a fresh machine
# lacks, then checks formatting and lints for both targets and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 target, rustfmt, clippy"
. scripts/lib/toolchain.sh
ensure_wasm_target
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

step "test peer: oidc-provider (npm ci in tests/peers/oidc)"
command -v node >/dev/null || { echo "node is required for the oidc-provider tests" >&2; exit 1; }
(cd tests/peers/oidc && npm ci --no-audit --no-fund --loglevel=error)

step "size pass: binaryen's prebuilt wasm-opt (npm ci in tools/binaryen; no C++ compiler)"
npm ci --prefix tools/binaryen --no-audit --no-fund --loglevel=error

step "test peer: redis-server (Debian package redis-server)"
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt_get() { apt-get "$@"; }; else apt_get() { sudo apt-get "$@"; }; fi
  export DEBIAN_FRONTEND=noninteractive
  apt_get install -y --no-install-recommends redis-server >/dev/null \
    || { apt_get update >/dev/null && apt_get install -y --no-install-recommends redis-server >/dev/null; }
fi
redis-server --version

step "format"
cargo fmt --all -- --check
for example in examples/*/Cargo.toml fuzz/Cargo.toml tools/*/Cargo.toml; do cargo fmt --manifest-path "$example" -- --check; done

step "lint: the core, the host and the tests (the workspace's default members; the component crates are wasm32-only)"
cargo clippy --all-targets -- -D warnings
# The host library as an embedder links it: no CLI, no test kit.
cargo clippy -p token-provider-host --lib --no-default-features -- -D warnings

step "lint: tools/componentize (its own target dir, as build.rs builds it)"
cargo clippy --locked --release --manifest-path tools/componentize/Cargo.toml --target-dir target/tools -- -D warnings

step "lint: the components (provider and interceptor, both flavors) and examples for wasm32-wasip2"
for flavor in "" "--features wasmtime-flavor"; do
  # shellcheck disable=SC2086 # an empty flavor is no argument
  cargo clippy -p token-provider -p token-interceptor -p token-provider-wasi --lib --target wasm32-wasip2 $flavor -- -D warnings
done
# The signing algorithms' build features: the RSA build, and the core without RSA and with EdDSA.
cargo clippy -p token-provider -p token-interceptor --lib --target wasm32-wasip2 --features rsa -- -D warnings
cargo clippy -p token-provider-core --lib --no-default-features -- -D warnings
cargo clippy -p token-provider-core --all-targets --features eddsa -- -D warnings
for example in examples/*/Cargo.toml; do
  cargo clippy --manifest-path "$example" --target wasm32-wasip2 --target-dir target/examples -- -D warnings
done

step "tests"
cargo test "$@"
if [ $# -eq 0 ]; then
  # EdDSA is an opt-in feature (not in the embedded component): its signer, its parser
  # and its DPoP proofs.
  cargo test -p token-provider-core --lib --features eddsa -- client_auth dpop
  # The benchmark's Spin emulation, as a test: one request per app, answers and spans.
  cargo test -p token-provider-host --bench spin
fi

if [ $# -eq 0 ]; then
  step "fuzz smoke run (cargo fuzz, 15 s per target; longer: scripts/fuzz.sh 600)"
  scripts/fuzz.sh 15
fi
