#!/usr/bin/env bash
# Benchmark of the deploy ramdisk under QEMU TCG (a benchmark, not a test): prints a markdown
# table and writes it to target/bench/ramdisk.md (raw data in target/bench/ramdisk-data/).
#
#   1. sizes: initramfs compressed (file) and uncompressed (manifest) vs the 12 MiB target;
#      the kernel apart.
#   2. boot → first lookup vs a bare busybox DHCP baseline: both boot with -kernel/-initrd on the
#      same VM (q35, OVMF code read-only + a per-run VARS copy, 1 vCPU, TCG, virtio-net on a
#      bridge in a private namespace with dnsmasq --no-ping, a 2 GiB virtio disk, virtio-rng) and
#      the same kernel (and the same dynamic busybox with its libc).
#      Ours: guest uptime of the agent's first `GET /v1/lookup`, received by a
#      404 responder on the bridge (crates/ipa-vm-lab/examples/boot-to-lookup.py explains the
#      clock). Baseline: busybox /init that insmods virtio_net (+deps, from the ramdisk), runs
#      `udhcpc -i eth0 -n -q` and prints `BASELINE-LEASE <uptime>`. Target ratio ≤ 1.2×.
#   3. the lab's flows through a real Ironic (crates/ipa-vm-lab/examples/lab-bench.rs):
#      power-on → first heartbeat, inspection, cleaning, deploy of a 1 GiB raw image.
#   4. memory floor: smallest VM memory (of --memory-list, bisected) at which inspection + a
#      1 GiB raw deploy reach `active` (target ≤ 192 MiB; IPA documents ≥ 1.5 GB).
#
# Needs root and the VM lab's packages (scripts/setup-vm-lab.sh), the Ironic venv, a built
# ramdisk (scripts/build-ramdisk.sh; --build makes one). Everything runs in network namespaces
# made here or by the lab (deleted at the end); only processes started here are stopped, by PID.
set -euo pipefail
umask 022
export LC_ALL=C

usage() {
    cat <<'EOF'
Usage: scripts/bench-ramdisk.sh [options]
  --ramdisk DIR        ramdisk to measure (default $IPA_RAMDISK_DIR or target/ramdisk)
  --build              build it first: scripts/build-ramdisk.sh --out target/bench/ramdisk
                       --cache target/ramdisk/cache (then --ramdisk is that directory)
  --memory-ramdisk "DIR..."  ramdisks for the memory floor, each bisected (default: --ramdisk);
                       e.g. "target/bench/ramdisk target/bench/ramdisk-gzip" to compare a
                       `--compress gzip` build (less memory to unpack than zstd-19)
  --runs N             boots per kind for section 2 (default 3; min/median reported)
  --boot-memory MIB    VM memory for section 2 (default 512)
  --flow-memory MIB    VM memory for section 3 (default 512; automated cleaning on)
  --memory-list LIST   candidate sizes for section 4, ascending (default "128 160 192 256")
  --image-mib N        size of the deployed raw image (default 1024)
  --quick              section 4 checks 192 MiB only; section 3 reuses that run (no cleaning)
  --only LIST          sections to run, of sizes,boot,flows,memory (default all)
  --out FILE           markdown output (default target/bench/ramdisk.md)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RAMDISK=${IPA_RAMDISK_DIR:-target/ramdisk}
MEM_RAMDISK=""
BUILD=0
RUNS=3
BOOT_MEM=512
FLOW_MEM=512
MEMORY_LIST="128 160 192 256"
IMAGE_MIB=1024
QUICK=0
ONLY=sizes,boot,flows,memory
OUT=target/bench/ramdisk.md
while [[ $# -gt 0 ]]; do
    case $1 in
        --ramdisk) RAMDISK=$2; shift 2 ;;
        --memory-ramdisk) MEM_RAMDISK="$MEM_RAMDISK $2"; shift 2 ;;
        --build) BUILD=1; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --boot-memory) BOOT_MEM=$2; shift 2 ;;
        --flow-memory) FLOW_MEM=$2; shift 2 ;;
        --memory-list) MEMORY_LIST=$2; shift 2 ;;
        --image-mib) IMAGE_MIB=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench-ramdisk: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "bench-ramdisk: --runs must be 1..99" >&2; exit 2; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-ramdisk: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, taps, libvirt)"
for t in qemu-system-x86_64 ip dnsmasq python3 cpio zstd gzip modprobe cargo readelf; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/setup-vm-lab.sh)"
done

BENCH=$ROOT/target/bench
DATA=$BENCH/ramdisk-data
mkdir -p "$BENCH" "$DATA"
if [[ $BUILD == 1 ]]; then
    log "scripts/build-ramdisk.sh --out target/bench/ramdisk --cache target/ramdisk/cache"
    scripts/build-ramdisk.sh --out target/bench/ramdisk --cache target/ramdisk/cache >"$DATA/build.log" 2>&1 ||
        die "ramdisk build failed (see $DATA/build.log)"
    RAMDISK=target/bench/ramdisk
fi
RAMDISK=$(realpath "$RAMDISK")
MEM_RAMDISKS=()
for d in ${MEM_RAMDISK:-$RAMDISK}; do
    [[ -f $d/manifest.json ]] || die "$d/manifest.json is missing (--memory-ramdisk)"
    MEM_RAMDISKS+=("$(realpath "$d")")
done
for f in ipa-rs.kernel ipa-rs.initramfs manifest.json; do
    [[ -f $RAMDISK/$f ]] || die "$RAMDISK/$f is missing (scripts/build-ramdisk.sh --out $RAMDISK)"
done
KERNEL=$RAMDISK/ipa-rs.kernel
INITRD=$RAMDISK/ipa-rs.initramfs

# Results, filled by the sections (markdown rows).
declare -a ROWS_SIZE=() ROWS_BOOT=() ROWS_FLOW=() ROWS_MEM=() NOTES=()

mj() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); exec(sys.argv[2])' "$@"; }
mib() { awk -v b="$1" 'BEGIN{printf "%.2f", b/1048576}'; }

# min and median of numbers on stdin ("min median n")
stats() {
    sort -g | awk '{v[NR]=$1} END{ if (NR==0) {print "- - 0"; exit}
        m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.2f %.2f %d\n", v[1], m, NR }'
}

# ---------------------------------------------------------------------------------------------
# Cleanup of everything started here (namespace, dnsmasq, example runs).
NS=""
DNSMASQ_PID=""
CHILD_PID=""
TMP=$(mktemp -d /tmp/ipa-bench-ramdisk.XXXXXX)
cleanup() {
    set +e
    if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID"
        for _ in $(seq 1 100); do kill -0 "$CHILD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$CHILD_PID" 2>/dev/null
    fi
    if [[ -n $DNSMASQ_PID ]]; then
        kill -TERM "$DNSMASQ_PID" 2>/dev/null
        wait "$DNSMASQ_PID" 2>/dev/null
    fi
    [[ -n $NS ]] && ip netns del "$NS" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# 1. sizes
section_sizes() {
    log "1. sizes"
    local csize kern
    csize=$(stat -c %s "$INITRD")
    kern=$(stat -c %s "$KERNEL")
    local line
    line=$(mj "$RAMDISK/manifest.json" '
i=d["initramfs"]; k=d["kernel"]
print(i["compression"], i["level"], i["uncompressed"], len(d["modules"]["included"]), k["package"], d["agent"]["size"])')
    read -r comp level unc nmods kpkg agent <<<"$line"
    local verdict="over by $(awk -v b="$csize" 'BEGIN{printf "%.2f", b/1048576-12}') MiB"
    (( csize <= 12 * 1048576 )) && verdict="within"
    ROWS_SIZE+=("| initramfs, compressed ($comp -$level) | $(mib "$csize") MiB ($csize B) | ≤ 12 MiB | $verdict |")
    ROWS_SIZE+=("| initramfs, uncompressed (manifest) | $(mib "$unc") MiB | – | RAM the unpacked rootfs occupies |")
    while read -r name u c; do
        ROWS_SIZE+=("| · part \`$name\` | $(mib "$c") MiB compressed, $(mib "$u") MiB uncompressed | – | |")
    done < <(mj "$RAMDISK/manifest.json" '
for p in d["initramfs"].get("parts", []): print(p["name"], p["uncompressed"], p["compressed"])')
    ROWS_SIZE+=("| agent binary (in part \`agent\`) | $(mib "$agent") MiB | – | stripped |")
    ROWS_SIZE+=("| kernel ($kpkg, apart) | $(mib "$kern") MiB ($kern B) | – | $nmods modules selected |")
}

# ---------------------------------------------------------------------------------------------
# 2. boot → first lookup vs busybox DHCP baseline
make_baseline() { # $1 = output initramfs
    local out=$1 st=$TMP/baseline-root work=$RAMDISK/work/root kver
    [[ -x $work/bin/busybox ]] || die "$work/bin/busybox missing: the ramdisk's work dir is needed (build it with scripts/build-ramdisk.sh --out $RAMDISK)"
    kver=$(ls "$work/lib/modules")
    rm -rf "$st"
    mkdir -p "$st"/{bin,dev,proc,sys,run,tmp,etc,lib/modules}
    cp "$work/bin/busybox" "$st/bin/busybox"
    # Debian's dynamic busybox: its loader and libraries, from the same ramdisk.
    local interp lib
    interp=$(readelf -l "$st/bin/busybox" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    if [[ -n $interp ]]; then
        mkdir -p "$st$(dirname "$interp")" "$st/lib/x86_64-linux-gnu"
        cp -L "$work$interp" "$st$interp"
        for lib in $(readelf -d "$st/bin/busybox" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            cp -L "$work/lib/x86_64-linux-gnu/$lib" "$st/lib/x86_64-linux-gnu/$lib" ||
                die "$lib (needed by busybox) is not in $work/lib/x86_64-linux-gnu"
        done
    fi
    local a
    for a in $("$st/bin/busybox" --list); do
        [[ $a == busybox ]] || ln -s busybox "$st/bin/$a"
    done
    mknod -m 600 "$st/dev/console" c 5 1
    # The NIC driver and its dependencies, in load order, from the same ramdisk.
    local order=() ko seen=" "
    while read -r kind ko _; do
        [[ $kind == insmod ]] || continue
        [[ $seen == *" $ko "* ]] && continue
        seen+="$ko "
        order+=("$ko")
    done < <(modprobe -d "$work" -S "$kver" --show-depends virtio_pci
             modprobe -d "$work" -S "$kver" --show-depends virtio_net)
    local insmods=""
    for ko in "${order[@]}"; do
        cp "$ko" "$st/lib/modules/"
        insmods+="insmod /lib/modules/${ko##*/}"$'\n'
    done
    cat >"$st/bin/udhcpc.script" <<'EOF'
#!/bin/sh
case $1 in
    bound|renew) ip addr add "$ip/${mask:-24}" dev "$interface"
                 [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface" ;;
esac
exit 0
EOF
    chmod 755 "$st/bin/udhcpc.script"
    cat >"$st/init" <<EOF
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
$insmods
ip link set lo up
ip link set eth0 up
if udhcpc -i eth0 -n -q -s /bin/udhcpc.script; then
    echo "BASELINE-LEASE \$(cut -d' ' -f1 /proc/uptime)"
else
    echo "BASELINE-NOLEASE \$(cut -d' ' -f1 /proc/uptime)"
fi
poweroff -f
EOF
    chmod 755 "$st/init"
    local comp level
    read -r comp level < <(mj "$RAMDISK/manifest.json" 'print(d["initramfs"]["compression"], d["initramfs"]["level"])')
    if [[ $comp == zstd ]]; then
        (cd "$st" && find . | sort | cpio -o -H newc -R 0:0 --quiet | zstd -q -"$level" -T1 -c) >"$out"
    else
        (cd "$st" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -n -"$level" -c) >"$out"
    fi
    echo "${#order[@]} modules: $(printf '%s ' "${order[@]##*/}"); $comp -$level; $(stat -c %s "$out") bytes"
}

section_boot() {
    log "2. boot → first lookup vs busybox DHCP baseline ($RUNS runs each, ${BOOT_MEM} MiB, TCG)"
    local baseline=$TMP/baseline.initramfs info
    info=$(make_baseline "$baseline")
    NOTES+=("baseline initramfs: $info")
    NS=ipabench-$$
    local p="10.251.$(( $$ % 250 ))"
    local host=$p.1 port=6385
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$NS" addr add "$host/24" dev br0
    ip -n "$NS" link set br0 up
    ip -n "$NS" tuntap add tapb0 mode tap
    ip -n "$NS" link set tapb0 master br0 up
    ip netns exec "$NS" dnsmasq -k --conf-file=/dev/null --port=0 --bind-interfaces --interface=br0 \
        --except-interface=lo --dhcp-range="$p.50,$p.99,1h" --no-ping --dhcp-authoritative \
        --dhcp-leasefile="$TMP/dnsmasq.leases" --pid-file="$TMP/dnsmasq.pid" \
        --log-facility="$TMP/dnsmasq.log" --log-dhcp &
    DNSMASQ_PID=$!
    sleep 0.5
    kill -0 "$DNSMASQ_PID" 2>/dev/null || die "dnsmasq did not start: $(tail -5 "$TMP/dnsmasq.log" 2>/dev/null)"
    local harness=$ROOT/crates/ipa-vm-lab/examples/boot-to-lookup.py
    local append="console=ttyS0 ipa-api-url=http://$host:$port ipa-debug=1"
    local i kind json
    : >"$DATA/boot.jsonl"
    for i in $(seq 1 "$RUNS"); do
        for kind in baseline ours; do
            local rd=$INITRD
            [[ $kind == baseline ]] && rd=$baseline
            log "   boot $i/$RUNS: $kind"
            json=$(ip netns exec "$NS" python3 "$harness" --mode "$kind" --kernel "$KERNEL" --initrd "$rd" \
                --append "$append" --bridge-ip "$host" --port "$port" --tap tapb0 --memory "$BOOT_MEM" \
                --timeout 300 --console "$DATA/boot-$kind-$i.console") || true
            [[ -n $json ]] || json='{"mode":"'$kind'","error":"harness failed"}'
            echo "$json" >>"$DATA/boot.jsonl"
            log "   $json"
        done
    done
    kill -TERM "$DNSMASQ_PID" 2>/dev/null; wait "$DNSMASQ_PID" 2>/dev/null || true
    DNSMASQ_PID=""
    ip netns del "$NS"; NS=""

    local col
    pick() { python3 -c '
import json,sys
for l in open(sys.argv[1]):
    d=json.loads(l)
    if d.get("mode")==sys.argv[2] and sys.argv[3] in d: print(d[sys.argv[3]])' "$DATA/boot.jsonl" "$@"; }
    read -r bmin bmed bn < <(pick baseline lease_uptime | stats)
    read -r lmin lmed ln < <(pick ours first_lookup_uptime | stats)
    read -r omin omed on < <(pick ours lease_uptime | stats)
    read -r smin smed sn < <(pick ours agent_start_uptime | stats)
    read -r wmin wmed wn < <(pick ours looking_up_uptime_from_agent_wallclock | stats)
    read -r kbmin kbmed kbn < <(pick baseline run_init_uptime | stats)
    read -r komin komed kon < <(pick ours run_init_uptime | stats)
    read -r mmin mmed mn < <(pick ours modules_loaded_uptime | stats)
    read -r imin imed in_ < <(pick ours init_start_uptime | stats)
    read -r fmin fmed fn < <(pick ours qemu_start_uptime | stats)
    read -r gmin gmed gn < <(pick baseline qemu_start_uptime | stats)
    local rmed rmin verdict
    rmed=$(awk -v a="$lmed" -v b="$bmed" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }')
    rmin=$(awk -v a="$lmin" -v b="$bmin" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }')
    verdict=$(awk -v r="$rmed" 'BEGIN{ print (r+0 <= 1.2 && r != "-") ? "within" : "over" }')
    ROWS_BOOT+=("| busybox baseline: DHCP lease (guest uptime) | $bmin | $bmed | $bn | \`BASELINE-LEASE\` from /proc/uptime |")
    ROWS_BOOT+=("| busybox baseline: kernel \`Run /init\` | $kbmin | $kbmed | $kbn | printk stamp (1 MB initrd unpacked) |")
    ROWS_BOOT+=("| ipa-rs: kernel \`Run /init\` | $komin | $komed | $kon | printk stamp (initramfs unpacked) |")
    ROWS_BOOT+=("| ipa-rs: ipa-init starts (PID 1) | $imin | $imed | $in_ | ipa-init's own stamp |")
    ROWS_BOOT+=("| ipa-rs: modules loaded (coldplug + module list) | $mmin | $mmed | $mn | \`loaded N modules in … ms\` |")
    ROWS_BOOT+=("| ipa-rs: DHCP lease (ipa-init's lease line) | $omin | $omed | $on | stamp of the \`eth0 …: a.b.c.d/24\` line |")
    ROWS_BOOT+=("| ipa-rs: \`starting /usr/bin/ipa-agent\` | $smin | $smed | $sn | |")
    ROWS_BOOT+=("| **ipa-rs: first \`GET /v1/lookup\`** | **$lmin** | **$lmed** | $ln | host receive time − uptime-0 offset |")
    ROWS_BOOT+=("| · cross-check from the agent's wall-clock log | $wmin | $wmed | $wn | \`starting\` stamp + (\`looking up the node\` − agent's first line), agent clock |")
    ROWS_BOOT+=("| **ratio first lookup / baseline lease** | $rmin | **$rmed** | | target ≤ 1.2×: **$verdict** (min column: ratio of the minima) |")
    ROWS_BOOT+=("| firmware: QEMU start → kernel uptime 0 (ours / baseline) | $(awk -v a="$fmed" 'BEGIN{printf "%.2f", -a}') | $(awk -v a="$gmed" 'BEGIN{printf "%.2f", -a}') | | medians, not in the uptimes above |")
}

# ---------------------------------------------------------------------------------------------
# 3 + 4. lab runs through the example binary.
LAB_BIN=""
build_example() {
    [[ -n $LAB_BIN ]] && return 0
    log "cargo build -p ipa-vm-lab --example lab-bench"
    cargo build -q -p ipa-vm-lab --example lab-bench >&2
    LAB_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/lab-bench
    cp "$LAB_BIN" "$TMP/lab-bench"   # another build may replace it while we run
    LAB_BIN=$TMP/lab-bench
}

# The lab shares the host's libvirt state directories: wait (bounded) until no other lab runs.
wait_lab_idle() {
    local i
    for i in $(seq 1 240); do
        if ! ip netns list | grep -q '^ipalab-' && ! pgrep -x libvirtd >/dev/null; then
            return 0
        fi
        (( i == 1 )) && log "   another VM lab is running (ip netns list / libvirtd): waiting up to 60 min"
        sleep 15
    done
    die "another VM lab kept running for 60 min"
}

# lab_run NAME MEMORY_MIB RAMDISK [extra args] → log in $DATA/lab-NAME.log; status 0 = active
lab_run() {
    local name=$1 mem=$2 rd=$3
    shift 3
    build_example
    wait_lab_idle
    log "   lab run $name: ${mem} MiB, ramdisk $rd $*"
    local t0=$SECONDS rc=0
    "$LAB_BIN" --ramdisk "$rd" --memory "$mem" --image-mib "$IMAGE_MIB" \
        --image-dir "$BENCH/image-${IMAGE_MIB}mib" --log-dir "$DATA/lab-$name" "$@" \
        >"$DATA/lab-$name.log" 2>&1 &
    CHILD_PID=$!
    # Bounded: the example has its own per-step timeouts; this is the backstop.
    local waited=0
    while kill -0 "$CHILD_PID" 2>/dev/null && (( waited < 5400 )); do sleep 5; waited=$((waited + 5)); done
    if kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID"; sleep 30; kill -KILL "$CHILD_PID" 2>/dev/null || true
    fi
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    log "   lab run $name: rc=$rc in $((SECONDS - t0)) s; $(grep -h '^LAB-RESULT' "$DATA/lab-$name.log" | tail -1)"
    return $rc
}

timing() { # timing NAME LABEL → seconds or "-"
    awk -v l="LAB-TIMING $2:" 'index($0, l) == 1 { v = $(NF-1) } END { print (v == "" ? "-" : v) }' "$DATA/lab-$1.log"
}

flow_rows() { # flow_rows NAME MEMORY
    local n=$1 m=$2 label
    local labels=("lab setup" "image build" "power-on → first heartbeat" "manage" "inspection"
        "power-on → first heartbeat (inspection)" "automated cleaning"
        "power-on → first heartbeat (automated cleaning)" "automated cleaning: first heartbeat → ramdisk powered off"
        "provide (no cleaning)" "deploy 1 GiB raw (to active)" "deploy $IMAGE_MIB MiB raw (to active)"
        "power-on → first heartbeat (deploy)" "deploy: first heartbeat → ramdisk powered off"
        "deploy: agent image write + verify"
        "active → deployed OS marker" "total")
    for label in "${labels[@]}"; do
        local v
        v=$(timing "$n" "$label")
        [[ $v == - ]] && continue
        ROWS_FLOW+=("| $label | $v | ${m} MiB |")
    done
    local info
    while IFS= read -r info; do
        NOTES+=("flows (${m} MiB): ${info#LAB-INFO }")
    done < <(grep -h '^LAB-INFO' "$DATA/lab-$n.log")
}

section_flows() {
    log "3. lab flows (${FLOW_MEM} MiB, automated cleaning on)"
    if lab_run flows "$FLOW_MEM" "$RAMDISK" --clean --expect-marker; then
        flow_rows flows "$FLOW_MEM"
    else
        flow_rows flows "$FLOW_MEM"
        ROWS_FLOW+=("| **failed**: $(grep -h '^LAB-RESULT' "$DATA/lab-flows.log" | tail -1 | cut -c1-200) | | ${FLOW_MEM} MiB |")
    fi
}

declare -A MEM_RESULT=()
MEM_RD=""
MEM_TAG=""
mem_try() { # mem_try MIB → 0 when active (ramdisk $MEM_RD, results under $MEM_TAG)
    local m=$1 k="$MEM_TAG:$1"
    [[ -n ${MEM_RESULT[$k]:-} ]] && { [[ ${MEM_RESULT[$k]} == ok ]]; return; }
    if lab_run "mem-$MEM_TAG-$m" "$m" "$MEM_RD"; then
        MEM_RESULT[$k]=ok
    else
        MEM_RESULT[$k]="fail: $(grep -h '^LAB-RESULT' "$DATA/lab-mem-$MEM_TAG-$m.log" | tail -1 |
            sed 's/^LAB-RESULT fail memory=[0-9]* reason=//' | cut -c1-160)"
    fi
    [[ ${MEM_RESULT[$k]} == ok ]]
}

section_memory() {
    local rd
    for rd in "${MEM_RAMDISKS[@]}"; do
        MEM_RD=$rd
        local comp
        comp=$(mj "$rd/manifest.json" 'i=d["initramfs"]; print(i["compression"] + "-" + str(i["level"]), "%.2f" % (i["size"]/1048576))')
        local algo=${comp%% *} size=${comp#* }
        MEM_TAG=$algo
        log "4. memory floor ($algo initramfs, $size MiB; inspection + ${IMAGE_MIB} MiB raw deploy)"
        local sizes=($MEMORY_LIST)
        local floor=""
        if [[ $QUICK == 1 ]]; then
            mem_try 192 && floor="≤ 192"
        else
            # Binary search over the ascending list for the smallest size that completes.
            local lo=0 hi=$(( ${#sizes[@]} - 1 )) best=-1 mid
            while (( lo <= hi )); do
                mid=$(( (lo + hi) / 2 ))
                if mem_try "${sizes[$mid]}"; then best=$mid; hi=$((mid - 1)); else lo=$((mid + 1)); fi
            done
            if (( best == 0 )); then
                floor="≤ ${sizes[0]} (smallest tried)"
            elif (( best > 0 )); then
                floor="${sizes[$best]} (${sizes[$((best - 1))]} fails)"
            fi
        fi
        local m
        for m in "${sizes[@]}"; do
            local r=${MEM_RESULT[$MEM_TAG:$m]:-} d i w
            [[ -n $r ]] || continue
            d=$(timing "mem-$MEM_TAG-$m" "deploy 1 GiB raw (to active)")
            [[ $d == - ]] && d=$(timing "mem-$MEM_TAG-$m" "deploy $IMAGE_MIB MiB raw (to active)")
            i=$(timing "mem-$MEM_TAG-$m" "inspection")
            w=$(timing "mem-$MEM_TAG-$m" "deploy: agent image write + verify")
            [[ $r == ok ]] && r="**active**"
            ROWS_MEM+=("| $algo, $size MiB | $m MiB | $r | $i | $d | $w |")
        done
        ROWS_MEM+=("| **$algo floor** | **${floor:-none of $MEMORY_LIST}** | target ≤ 192 MiB (IPA: ≥ 1.5 GB) | | | |")
        if [[ $QUICK == 1 && ${MEM_RESULT[$MEM_TAG:192]:-} == ok && ${#ROWS_FLOW[@]} -eq 0 ]]; then
            flow_rows "mem-$MEM_TAG-192" 192
        fi
    done
}

want sizes && section_sizes
want boot && section_boot
if want flows && [[ $QUICK == 0 ]]; then section_flows; fi
want memory && section_memory

# ---------------------------------------------------------------------------------------------
{
    echo "# ipa-rs deploy ramdisk benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- 2>/dev/null || echo '+dirty'),"
    echo "QEMU $(qemu-system-x86_64 --version | awk 'NR==1{print $4}') TCG (no KVM), $(nproc) host cores shared with other work: times are noisy."
    echo "Ramdisk: \`${RAMDISK#"$ROOT"/}\` (built $(mj "$RAMDISK/manifest.json" 'print(d["builder"]["commit"][:12])'))."
    if [[ ${#ROWS_SIZE[@]} -gt 0 ]]; then
        echo
        echo "## 1. Size"
        echo
        echo "| what | size | target | |"
        echo "|---|---|---|---|"
        printf '%s\n' "${ROWS_SIZE[@]}"
    fi
    if [[ ${#ROWS_BOOT[@]} -gt 0 ]]; then
        echo
        echo "## 2. Boot to first lookup vs busybox DHCP baseline"
        echo
        echo "Guest uptime in seconds (kernel clock; firmware time before it is not included), q35 + OVMF,"
        echo "1 vCPU, ${BOOT_MEM} MiB, direct kernel boot, same kernel and VM for both, dnsmasq --no-ping."
        echo
        echo "| event | min s | median s | runs | how |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${ROWS_BOOT[@]}"
    fi
    if [[ ${#ROWS_FLOW[@]} -gt 0 ]]; then
        echo
        echo "## 3. Lab flows (real Ironic, redfish via sushy-tools, PXE → iPXE, TCG)"
        echo
        echo "| step | seconds | VM memory |"
        echo "|---|---|---|"
        printf '%s\n' "${ROWS_FLOW[@]}"
    fi
    if [[ ${#ROWS_MEM[@]} -gt 0 ]]; then
        echo
        echo "## 4. Memory floor: inspection + ${IMAGE_MIB} MiB raw deploy to \`active\`"
        echo
        echo "| initramfs | VM memory | result | inspection s | deploy s | agent write s |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${ROWS_MEM[@]}"
    fi
    if [[ ${#NOTES[@]} -gt 0 ]]; then
        echo
        printf -- '- %s\n' "${NOTES[@]}"
    fi
    echo
    echo "Raw data: \`target/bench/ramdisk-data/\` (boot.jsonl, stamped consoles, lab-*.log)."
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
