#!/usr/bin/env bash
# Start-up, idle footprint and REST API throughput of the release agent, measured the way
# ../shared/spec/ipa-baselines.md measured IPA (same endpoints, same wrk settings):
#   * start-up: spawn, then GET /v1/status every 10 ms until the first 200 (n=5 fresh processes);
#   * idle RSS and threads 3 s after the first 200;
#   * wrk -t1 -c8 -d10s --latency on /v1/status and /v1/commands/?agent_token=… (one command in the list).
# Needs curl and wrk (Debian packages). Stops only the agents it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p ipa-agent
bin="$CARGO_TARGET_DIR/release/ipa-agent"
port="${PORT:-9911}"
tok="bench-token-0123456789abcdef0123456789"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
echo "binary: $(du -h "$bin" | cut -f1) ($bin)"
echo "| run | start → first /v1/status 200 (ms) | idle RSS MiB | threads |"
echo "|---|---|---|---|"
for i in 1 2 3 4 5; do
  rm -rf "$work/sb"
  t0=$(date +%s%N)
  "$bin" --standalone --sandbox "$work/sb" --listen "127.0.0.1:$port" --token="$tok" \
    --kernel-cmdline none >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1000); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/v1/status" && break
    sleep 0.01
  done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  sleep 3
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)
  thr=$(awk '/Threads/ {print $2}' /proc/$pid/status)
  echo "| $i | $ms | $rss | $thr |"
  if [ "$i" -lt 5 ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; fi
done
curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/v1/commands/?agent_token=$tok&wait=true" \
  -H 'Content-Type: application/json' -d '{"name":"standby.sync","params":{}}' || true
for url in "/v1/status" "/v1/commands/?agent_token=$tok"; do
  echo "== wrk -t1 -c8 -d10s $url"
  wrk -t1 -c8 -d10s --latency "http://127.0.0.1:$port$url" | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors" || true
done
echo "RSS after wrk: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
