#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time and print a table (target, execs,
# exec/s, coverage, corpus, crashes). Exits non-zero if any target crashes, leaks, times out or
# fails to build. Needs the nightly toolchain and cargo-fuzz (.ci/run installs it).
#
#   scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]     default 60 s, every target
#
# Seeds: fuzz/seeds/<target>/ (in the repository, never written). What a run finds beyond them
# goes to fuzz/corpus/<target>/ (ignored by git), so repeated runs keep their progress; crash
# inputs go to fuzz/artifacts/<target>/. The table is also written to target/fuzz/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz on the nightly toolchain is missing (cargo install cargo-fuzz --locked)" >&2
    exit 2
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz.sh: no targets" >&2; exit 2; }

out=target/fuzz
mkdir -p "$out"
start=$(date +%s)
echo "== fuzz: building ${#targets[@]} targets (release, address sanitizer)"
cargo +nightly fuzz build -O 2>&1 | tail -n 3

report="$out/report.md"
{
    echo "# Fuzz run: ${secs} s per target, $(date -u +%Y-%m-%dT%H:%MZ), $(cargo +nightly --version)"
    echo
    echo "| target | execs | exec/s | cov (edges) | features | corpus | crashes |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
} >"$report"

failed=()
for t in "${targets[@]}"; do
    seeds="fuzz/seeds/$t"
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    [ -d "$seeds" ] || { echo "fuzz.sh: $t has no seed directory $seeds" >&2; failed+=("$t"); continue; }
    log="$out/$t.log"
    echo "== fuzz $t for ${secs} s"
    touch "$out/.started-$t"
    rc=0
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb bounds memory per input.
    cargo +nightly fuzz run -O "$t" "$corpus" "$seeds" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -close_fd_mask=3 >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(find "$corpus" -type f | wc -l)
    crashes=$(find "fuzz/artifacts/$t" -type f -newer "$out/.started-$t" 2>/dev/null | wc -l)
    if [ "$rc" -ne 0 ]; then
        crashes=$((crashes > 0 ? crashes : 1))
        failed+=("$t")
        echo "fuzz.sh: $t failed (exit $rc); last lines of $log:" >&2
        tail -n 30 "$log" >&2
    fi
    echo "| $t | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $corp | $crashes |" >>"$report"
done

echo
cat "$report"
echo
echo "fuzz.sh: $(( $(date +%s) - start )) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
