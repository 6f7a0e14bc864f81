#!/usr/bin/env bash
# Image pipeline benchmark (issue 6). Usage: scripts/bench-image.sh [--big] [extra bench args]
#   --big   also run 8 GiB images (needs ~30 GiB free in --dir, default /tmp/ipa-bench)
# Prints a markdown table: ours vs `curl -s URL | dd of=target bs=4M oflag=direct`, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
big=0
args=()
for a in "$@"; do
  if [[ $a == --big ]]; then big=1; else args+=("$a"); fi
done
cargo build --release -q -p ipa-image --example bench
bin="$CARGO_TARGET_DIR/release/examples/bench"
"$bin" --size-gib 2 "${args[@]}"
if [[ $big == 1 ]]; then
  "$bin" --size-gib 8 "${args[@]}"
fi
