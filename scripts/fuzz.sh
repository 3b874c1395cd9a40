#!/usr/bin/env bash
# Bounded fuzzing of every decoder: each cargo-fuzz target runs for SECONDS (default 60).
# cargo-fuzz needs nightly-only sanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain
# build them. Installs cargo-fuzz from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
status=0
for dir in crates/*/fuzz; do
  [ -d "$dir/fuzz_targets" ] || continue
  for target in "$dir"/fuzz_targets/*.rs; do
    name=$(basename "$target" .rs)
    echo "== $dir: $name for ${SECONDS_PER_TARGET}s"
    if ! (cd "$dir/.." && RUSTC_BOOTSTRAP=1 cargo fuzz run "$name" -- \
          -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 2>&1 | tail -5); then
      echo "!! $name found a failure: see $dir/artifacts/$name" >&2
      status=1
    fi
  done
done
exit $status
