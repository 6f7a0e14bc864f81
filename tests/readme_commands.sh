#!/usr/bin/env bash
# Runs the README's first command exactly as written (taken from README.md), then the two curl
# lines it documents, and checks the answers: /v1/status within a second of process start, and
# the simulated inventory from poll.get_hardware_info. Stops the agent by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=$(grep -m1 '^cargo run -p ipa-agent' README.md)
[ -n "$cmd" ] || { echo "README.md has no 'cargo run -p ipa-agent' line" >&2; exit 1; }
port=$(sed -n 's/.*--listen 127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$cmd")
token=$(sed -n 's/.*--token \([^ ]*\).*/\1/p' <<<"$cmd")
sandbox=$(sed -n 's/.*--sandbox \([^ ]*\).*/\1/p' <<<"$cmd")
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
  echo "port $port is already in use; not starting a second agent" >&2; exit 1
fi
cargo build -q -p ipa-agent            # build first: the one-second budget is for start-up
log=$(mktemp)
bash -c "exec $cmd" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
t0=$(date +%s%N)
for _ in $(seq 1 400); do
  if curl -sf -o /dev/null "http://127.0.0.1:$port/v1/status"; then break; fi
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "agent exited" >&2; exit 1; }
  sleep 0.01
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
status=$(curl -sf "http://127.0.0.1:$port/v1/status")
echo "status answered ${ms} ms after start: $status"
inv=$(curl -sf -X POST "http://127.0.0.1:$port/v1/commands/?agent_token=$token&wait=true" \
  -H 'Content-Type: application/json' -d '{"name":"poll.get_hardware_info","params":{}}')
python3 - "$inv" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["command_status"] == "SUCCEEDED", r
inv = r["command_result"]
assert inv["interfaces"][0]["mac_address"] == "52:54:00:12:34:56", inv["interfaces"]
assert inv["disks"][0]["name"] == "/dev/vda", inv["disks"]
print("inventory ok:", len(inv["interfaces"]), "NIC,", len(inv["disks"]), "disk")
PY
kill -TERM $pid; wait $pid || { echo "agent exit status $?" >&2; exit 1; }
trap 'rm -f "$log"' EXIT
[ -f "$sandbox/disks/vda" ] || { echo "sandbox disk missing" >&2; exit 1; }
if grep -q -- "$token" "$log" && [ ${#token} -gt 4 ]; then echo "token in log" >&2; exit 1; fi
[ "$ms" -le 1000 ] || echo "WARNING: /v1/status took ${ms} ms (budget 1000 ms)"
echo "README command 1: ok"
