# Sourced by scripts/demo.sh and scripts/test.sh: the components' target, which the
# build does not install (host/build.rs stops and says so when it is missing).
ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> adding the wasm32-wasip2 target (rustup, once)"
    rustup target add wasm32-wasip2
  fi
}
