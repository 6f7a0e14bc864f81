#!/usr/bin/env bash
# Erase benchmark (a benchmark, not a test): the agent's native erase methods next to the
# standard tools, on the same device in the same run, as a markdown table in
# target/bench/erase.md (raw lines in target/bench/erase-data/).
#
#   ours:  zeroout (BLKZEROOUT: the agent's zero pass), discard (BLKDISCARD),
#          overwrite-zero (O_DIRECT zero writes), overwrite-random (the random pass),
#          run by target/release/ipa-erase-bench;
#   tools: blkdiscard, blkdiscard -z, shred -n1 (one random pass, as IPA's shred fallback
#          with agent_erase_devices_zeroize off). GNU coreutils' shred in both places: the
#          ramdisk's shred is busybox's, which writes nothing at all to a block device (it
#          sizes by stat, and ignores -s there), so the host's /usr/bin/shred is copied into
#          the VM's overlay as gnu-shred (it needs only libc, which the ramdisk has).
#
#   1. host: a loop device over a fully allocated file made here (target/bench/), deleted at
#      the end. The file's filesystem decides what discard and zeroout cost (hole punching).
#   2. vm: QEMU (TCG, 1 vCPU) boots our ramdisk (scripts/build-ramdisk.sh) with a
#      virtio-blk disk file made here (discard=unmap, cache=none); ipa-init runs a script
#      instead of the agent (ipa-init.agent=…), which runs every method on /dev/vda, prints
#      the lines on the serial console and powers off. No network, nothing else attached.
#
# Before each method the disk is re-allocated (fallocate on the host file, or a full zeroout
# in the guest after discards) so no method inherits holes from the previous one.
# Needs root (losetup), qemu-system-x86 and a built ramdisk.
set -euo pipefail
umask 022
export LC_ALL=C

usage() {
    cat <<'EOF'
Usage: scripts/bench-erase.sh [options]
  --gib N           disk size in GiB (default 8)
  --runs N          runs per method (default 1; the median is reported)
  --only LIST       host,vm (default both)
  --ramdisk DIR     ramdisk for the vm part (default $IPA_RAMDISK_DIR or target/ramdisk)
  --out FILE        markdown output (default target/bench/erase.md)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
GIB=8
RUNS=1
ONLY=host,vm
RAMDISK=${IPA_RAMDISK_DIR:-target/ramdisk}
OUT=target/bench/erase.md
while [[ $# -gt 0 ]]; do
    case $1 in
    --gib) GIB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --ramdisk) RAMDISK=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $(id -u) == 0 ]] || { echo "bench-erase.sh needs root (losetup)" >&2; exit 1; }

DATA=target/bench/erase-data
mkdir -p "$DATA"
BENCH=target/release/ipa-erase-bench
log() { echo "bench-erase: $*" >&2; }
log "cargo build --release -p ipa-hw-generic --bin ipa-erase-bench"
cargo build --release --locked -q -p ipa-hw-generic --bin ipa-erase-bench
METHODS=(ours:zeroout ours:discard ours:overwrite-zero ours:overwrite-random
    tool:blkdiscard tool:blkdiscard-z tool:shred-n1)

LOOP=""
VMDIR=""
cleanup() {
    [[ -n $LOOP ]] && losetup -d "$LOOP" 2>/dev/null || true
    rm -f target/bench/erase-host.img
    [[ -n $VMDIR ]] && rm -rf "$VMDIR"
}
trap cleanup EXIT

now() { date +%s.%N; }

# One method on DEVICE; prints the seconds it took (the flush included).
run_method() {
    local m=$1 dev=$2 t0 t1
    t0=$(now)
    case $m in
    ours:*) "$BENCH" "${m#ours:}" "$dev" >/dev/null ;;
    tool:blkdiscard) blkdiscard "$dev" ;;
    tool:blkdiscard-z) blkdiscard -z "$dev" ;;
    tool:shred-n1) shred -n1 "$dev" ;;
    esac
    sync
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else print a[int((NR+1)/2)]}'; }

declare -A HOST VM
if [[ ,$ONLY, == *,host,* ]]; then
    img=target/bench/erase-host.img
    rm -f "$img"
    fallocate -l "${GIB}G" "$img"
    LOOP=$(losetup --find --show "$img")
    log "host: $LOOP over $img (${GIB} GiB, $(stat -f -c %T target/bench) filesystem)"
    for m in "${METHODS[@]}"; do
        : >"$DATA/host-$m"
        for ((r = 0; r < RUNS; r++)); do
            # Re-allocate: discards punched holes into the file.
            losetup -d "$LOOP"; LOOP=""
            rm -f "$img"; fallocate -l "${GIB}G" "$img"
            LOOP=$(losetup --find --show "$img")
            run_method "$m" "$LOOP" >>"$DATA/host-$m"
        done
        HOST[$m]=$(median <"$DATA/host-$m")
        log "host $m: ${HOST[$m]} s"
    done
    "$BENCH" verify-zero "$LOOP" >/dev/null 2>&1 || true
fi

if [[ ,$ONLY, == *,vm,* ]]; then
    [[ -f $RAMDISK/ipa-rs.kernel && -f $RAMDISK/ipa-rs.initramfs ]] ||
        { echo "no ramdisk in $RAMDISK (scripts/build-ramdisk.sh)" >&2; exit 1; }
    VMDIR=$(mktemp -d target/bench/erase-vm.XXXXXX)
    mkdir -p "$VMDIR/root/usr/bin"
    cp "$BENCH" "$VMDIR/root/usr/bin/ipa-erase-bench"
    shred --version 2>/dev/null | grep -q coreutils || { echo "GNU shred (coreutils) is needed" >&2; exit 1; }
    cp "$(command -v shred)" "$VMDIR/root/usr/bin/gnu-shred"
    {
        echo '#!/bin/sh'
        echo 'D=/dev/vda; R='"$RUNS"
        echo 'echo BENCH-START $(cat /proc/uptime)'
        echo 'for m in '"${METHODS[*]}"'; do'
        echo '  i=0; while [ $i -lt $R ]; do'
        echo '    ipa-erase-bench zeroout $D >/dev/null 2>&1 || blkdiscard -z $D'
        echo '    t0=$(cut -d" " -f1 /proc/uptime)'
        echo '    case $m in'
        echo '      ours:*) ipa-erase-bench ${m#ours:} $D >/dev/null || echo BENCH-FAIL $m ;;'
        echo '      tool:blkdiscard) blkdiscard $D || echo BENCH-FAIL $m ;;'
        echo '      tool:blkdiscard-z) blkdiscard -z $D || echo BENCH-FAIL $m ;;'
        echo '      tool:shred-n1) gnu-shred -n1 $D || echo BENCH-FAIL $m ;;'
        echo '    esac; sync'
        echo '    t1=$(cut -d" " -f1 /proc/uptime)'
        echo '    echo BENCH $m $t0 $t1'
        echo '    i=$((i+1)); done'
        echo 'done'
        echo 'echo BENCH-END'
        echo 'poweroff'
        echo 'sleep 60'
    } >"$VMDIR/root/bench-erase.sh"
    chmod 755 "$VMDIR/root/bench-erase.sh"
    (cd "$VMDIR/root" && find . | sort | cpio -o -H newc --quiet -R 0:0 | gzip -n) >"$VMDIR/overlay.cpio.gz"
    cat "$RAMDISK/ipa-rs.initramfs" "$VMDIR/overlay.cpio.gz" >"$VMDIR/initramfs"
    fallocate -l "${GIB}G" "$VMDIR/disk.raw"
    log "vm: QEMU TCG, ${GIB} GiB virtio disk (discard=unmap, cache=none)"
    timeout 7200 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 512 -nodefaults \
        -display none -no-reboot -serial "file:$VMDIR/console.log" -nic none \
        -kernel "$RAMDISK/ipa-rs.kernel" -initrd "$VMDIR/initramfs" \
        -append "console=ttyS0 loglevel=4 ipa-init.agent=/bench-erase.sh ipa-init.net_timeout=1" \
        -drive "file=$VMDIR/disk.raw,if=virtio,format=raw,cache=none,discard=unmap,detect-zeroes=off" \
        -device virtio-rng-pci || true
    cp "$VMDIR/console.log" "$DATA/vm-console.log"
    grep -q BENCH-END "$DATA/vm-console.log" || { echo "the VM did not finish; see $DATA/vm-console.log" >&2; exit 1; }
    for m in "${METHODS[@]}"; do
        grep "^BENCH $m " "$DATA/vm-console.log" | awk '{print $4 - $3}' >"$DATA/vm-$m"
        VM[$m]=$(median <"$DATA/vm-$m")
        grep -q "BENCH-FAIL $m" "$DATA/vm-console.log" && VM[$m]="failed"
        log "vm $m: ${VM[$m]} s"
    done
fi

{
    echo "# Erase benchmark: ${GIB} GiB, median of $RUNS run(s), $(date -u +%F)"
    echo
    echo "| method | what it is | host loop device (s) | VM virtio-blk, TCG (s) |"
    echo "|---|---|---|---|"
    for m in "${METHODS[@]}"; do
        case $m in
        ours:zeroout) what="agent: BLKZEROOUT (zero pass)" ;;
        ours:discard) what="agent: BLKDISCARD" ;;
        ours:overwrite-zero) what="agent: O_DIRECT zero writes" ;;
        ours:overwrite-random) what="agent: one random pass" ;;
        tool:blkdiscard) what="blkdiscard" ;;
        tool:blkdiscard-z) what="blkdiscard -z" ;;
        tool:shred-n1) what="GNU shred -n1 (one random pass)" ;;
        esac
        echo "| $m | $what | ${HOST[$m]:--} | ${VM[$m]:--} |"
    done
} | tee "$OUT"
