#!/usr/bin/env bash
# Fuzz the image format sniffer and the qcow2 parser for a bounded time each.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Usage: scripts/fuzz-image.sh [seconds-per-target, default 60]
set -euo pipefail
cd "$(dirname "$0")/../crates/ipa-image"
secs="${1:-60}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi
for t in sniff qcow2; do
  echo "== fuzz target $t for ${secs}s"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=1024
done
