#!/usr/bin/env bash
# Fuzz the parsers with cargo-fuzz (libFuzzer, nightly): the token response parser, the
# cache entry decoder, the authorized client's URL/origin check, and the discovery
# document parser.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
# Seeds come from fuzz/seeds/ (the hostile-input catalog: fuzz/make_seeds.py); what the
# fuzzer finds goes to fuzz/corpus/ and crashes to fuzz/artifacts/ (both git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token_response cache_entry url_origin discovery_document)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/artifacts/$t.log"
  mkdir -p fuzz/artifacts
  echo "==> fuzz $t for ${seconds}s"
  if cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    result="no crash"
  else
    result="FAILED (crash or build error; see $log and fuzz/artifacts/$t/)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  echo "    $t: $execs executions in ${seconds}s, corpus $corpus inputs, $result"
  [ "$status" -eq 0 ] || tail -30 "$log"
done
exit "$status"
