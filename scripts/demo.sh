#!/usr/bin/env bash
# The README's demo: adds the components' target if it is missing, then runs
# `token-provider demo` (an offline token server and API on loopback). Extra arguments
# go to the demo, e.g. `./scripts/demo.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
ensure_wasm_target
exec cargo run -p token-provider-host -- demo "$@"
