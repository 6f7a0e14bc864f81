#!/usr/bin/env bash
# Fleet benchmark: N sandboxed agents on one private RabbitMQ node (AMQP) and dialing one
# controller ROUTER (ZeroMQ + CURVE), driven through ipa-client. See docs/fleet-benchmark.md.
#
#   scripts/bench-fleet.sh                 # N = 100 and 1000, both transports
#   FLEET_N="100" ROUNDS=3 scripts/bench-fleet.sh
#
# Every run is one `fleet bench` process: it starts its own RabbitMQ node (free loopback ports,
# temp dir, PID watcher) and its agent child processes; all of them stop when it exits. This
# script only ever signals the bench processes it started, by PID, and each run is bounded by
# `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

FLEET_N=${FLEET_N:-"100 1000"}
ROUNDS=${ROUNDS:-5}
CONC=${CONC:-64}
SERIAL=${SERIAL:-200}
# lapin keeps 2 x 32 frames of buffer per connection; RabbitMQ's default frame_max (128 KiB)
# makes that 8 MiB per agent. The large runs use a 16 KiB frame (an `ipa-amqp-url` query).
AMQP_QUERY=${AMQP_QUERY:-frame_max=16384}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
OUT=${OUT:-$(mktemp -t fleet-bench.XXXXXX.jsonl)}

cargo build --release -p ipa-client --example fleet
BIN="${CARGO_TARGET_DIR:-target}/release/examples/fleet"

current=""
cleanup() {
    if [[ -n "$current" ]] && kill -0 "$current" 2>/dev/null; then
        kill -TERM "$current" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$current" 2>/dev/null || break; sleep 0.2; done
    fi
}
trap cleanup EXIT INT TERM

run() {
    echo "== fleet bench $*" >&2
    timeout "$RUN_TIMEOUT" "$BIN" bench --rounds "$ROUNDS" --concurrency "$CONC" \
        --serial "$SERIAL" --out "$OUT" "$@" >/dev/null &
    current=$!
    if ! wait "$current"; then
        echo "!! run failed: $*" >&2
    fi
    current=""
}

for n in $FLEET_N; do
    if [[ "$n" -le 100 ]]; then
        run --transport amqp --agents "$n"     # RabbitMQ's default frame_max
    fi
    run --transport amqp --agents "$n" --amqp-query "$AMQP_QUERY"
    run --transport zmq --agents "$n" --procs "${ZMQ_PROCS:-1}"
done

echo "results: $OUT" >&2
python3 - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(v, d=1):
    return "n/a" if v is None else f"{v:.{d}f}"
print("| transport | N | procs | up/seen | serial p50 / p99 / max ms | load p50 / p99 / max ms "
      "| load cmd/s | errors | broker RSS MiB empty → connected → after | agents RSS MiB "
      "(per agent KiB) | agent threads | idle CPU % agents / broker |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    t = r["transport"] + (f" ({r['amqp_query']})" if r.get("amqp_query") else "")
    s, l = r["serial"], r["load"]
    per = r["agents_rss_mib_after"] * 1024 / max(r["agents"], 1)
    print(f"| {t} | {r['agents']} | {r['agent_procs']} | {r['agents_up']}/{r['agents_seen']} "
          f"| {f(s['p50_ms'],2)} / {f(s['p99_ms'],2)} / {f(s['max_ms'],2)} "
          f"| {f(l['p50_ms'])} / {f(l['p99_ms'])} / {f(l['max_ms'])} | {f(l['per_sec'],0)} "
          f"| {s['errors'] + l['errors']} "
          f"| {f(r['broker_rss_mib_empty'])} → {f(r['broker_rss_mib_connected'])} → "
          f"{f(r['broker_rss_mib_after'])} | {f(r['agents_rss_mib_after'])} ({per:.0f}) "
          f"| {r['agents_threads']} "
          f"| {f(r['agents_idle_cpu_pct'])} / {f(r['broker_idle_cpu_pct'])} |")
EOF
