#!/bin/bash
# boot-test.sh OUTDIR — boot the image make-test-os.sh wrote into OUTDIR under QEMU (TCG, q35, OVMF)
# and check its marker lines:
#   1. testos.raw as built               -> IPA-RS-TESTOS-CONFIGDRIVE none
#   2. a copy + an iso9660 config-2 partition at the end          -> uuid/name from meta_data.json
#   3. a copy + a FAT (vfat) config-2 partition at the end       -> uuid/name
#   4. testos.qcow2 (format=qcow2)       -> none
#   5. as 2 on an NVMe disk, 6. as 2 on a SATA (AHCI) disk (CASES="5 6"; not run by default)
# Every boot must power the VM off by itself within TIMEOUT (default 180) seconds.
# Environment: TIMEOUT, MEM (MiB, default 256), OVMF_CODE, OVMF_VARS, CASES (e.g. "1 4").
set -euo pipefail
die() { echo "boot-test: error: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUT=$(cd "$1" && pwd)
TIMEOUT=${TIMEOUT:-180}
MEM=${MEM:-256}
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS=${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
CASES=${CASES:-1 2 3 4}
T=$OUT/boot-test
rm -rf "$T"; mkdir -p "$T"
UUID=0b7e8f0c-3a7d-4c55-9f2e-6d1c2b3a4f50
NAME=ipa-rs-lab-node-1

# meta_data.json as Ironic writes it (one line, more keys than we read).
mkdir -p "$T/cd/openstack/latest"
printf '{"uuid": "%s", "admin_pass": "x", "hostname": "%s", "name": "%s", "launch_index": 0, "availability_zone": "nova", "public_keys": {"k": "ssh-ed25519 AAAA"}, "meta": {"name": "not-this"}}\n' \
    "$UUID" "$NAME" "$NAME" > "$T/cd/openstack/latest/meta_data.json"
# The same options Ironic uses to build a config drive.
genisoimage -o "$T/cd.iso" -ldots -allow-lowercase -allow-multidot -l -publisher ironic -quiet -J -r \
    -V config-2 "$T/cd" 2>/dev/null
mkfs.vfat -C "$T/cd.fat" 2048 -n config-2 >/dev/null 2>&1
MTOOLS_SKIP_CHECK=1 mcopy -s -i "$T/cd.fat" "$T/cd/openstack" ::/

# add_part DISK DATA: append DATA as the last GPT partition of DISK (in the image's free space).
add_part() {
    local disk=$1 data=$2 sectors first
    sectors=$(( ($(stat -c %s "$data") + 511) / 512 ))
    sgdisk -n "2:-$((sectors))s:0" -t 2:0700 -c 2:config-2 "$disk" >/dev/null 2>&1 || die "sgdisk -n failed"
    first=$(sgdisk -i 2 "$disk" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
    dd if="$data" of="$disk" bs=512 seek="$first" conv=notrunc status=none
}

# boot NAME DRIVE-ARGS: run QEMU, print "NAME total=… kernel=… marker=… done=…" (seconds after start).
boot() {
    local name=$1 drive=$2 log=$T/$1.console.log start rc=0 pid
    cp "$OVMF_VARS" "$T/$name.vars.fd"
    : > "$log"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    timeout "$TIMEOUT" qemu-system-x86_64 -M q35 -m "$MEM" -nographic -no-reboot -display none \
        -drive if=pflash,format=raw,readonly=on,file="$OVMF_CODE" \
        -drive if=pflash,format=raw,file="$T/$name.vars.fd" \
        $drive -serial file:"$log" -monitor none > "$T/$name.qemu.log" 2>&1 &
    pid=$!
    declare -A at=()
    local pats=(bds:"BdsDxe: starting" kernel:"EFI stub:" marker:"IPA-RS-TESTOS-MARKER" done:"IPA-RS-TESTOS-DONE")
    while kill -0 "$pid" 2>/dev/null; do
        for p in "${pats[@]}"; do
            [ -n "${at[${p%%:*}]:-}" ] || ! grep -qa "${p#*:}" "$log" \
                || at[${p%%:*}]=$(echo "$(date +%s.%N) - $start" | bc)
        done
        sleep 0.2
    done
    wait "$pid" || rc=$?
    local total; total=$(echo "$(date +%s.%N) - $start" | bc)
    for p in "${pats[@]}"; do     # lines that appeared in the last poll interval
        [ -n "${at[${p%%:*}]:-}" ] || ! grep -qa "${p#*:}" "$log" || at[${p%%:*}]=$total
    done
    [ "$rc" -eq 0 ] || { tail -n 30 "$log" >&2; die "$name: QEMU exit $rc (124 = timeout: no power-off)"; }
    printf '%s: total=%.1fs firmware->loader=%.1fs efi-stub=%.1fs marker=%.1fs done=%.1fs\n' "$name" \
        "$total" "${at[bds]:-0}" "${at[kernel]:-0}" "${at[marker]:-0}" "${at[done]:-0}"
    grep -qa '^IPA-RS-TESTOS-MARKER booted ' "$log" || die "$name: no marker line"
    grep -qa '^IPA-RS-TESTOS-DONE' "$log" || die "$name: no DONE line"
}
expect() { tr -d '\r' < "$T/$1.console.log" | grep -qaxF "$2" || { grep -a IPA-RS "$T/$1.console.log" >&2; die "$1: expected '$2'"; }; }

for c in $CASES; do case $c in
1)  cp "$OUT/testos.raw" "$T/plain.raw"
    boot plain "-drive file=$T/plain.raw,if=virtio,format=raw"
    expect plain "IPA-RS-TESTOS-CONFIGDRIVE none" ;;
2)  cp "$OUT/testos.raw" "$T/iso.raw"; add_part "$T/iso.raw" "$T/cd.iso"
    boot iso "-drive file=$T/iso.raw,if=virtio,format=raw"
    expect iso "IPA-RS-TESTOS-CONFIGDRIVE uuid=$UUID name=$NAME" ;;
3)  cp "$OUT/testos.raw" "$T/fat.raw"; add_part "$T/fat.raw" "$T/cd.fat"
    boot fat "-drive file=$T/fat.raw,if=virtio,format=raw"
    expect fat "IPA-RS-TESTOS-CONFIGDRIVE uuid=$UUID name=$NAME" ;;
4)  cp "$OUT/testos.qcow2" "$T/plain.qcow2"
    boot qcow2 "-drive file=$T/plain.qcow2,if=virtio,format=qcow2"
    expect qcow2 "IPA-RS-TESTOS-CONFIGDRIVE none" ;;
5)  cp "$OUT/testos.raw" "$T/nvme.raw"; add_part "$T/nvme.raw" "$T/cd.iso"
    boot nvme "-drive file=$T/nvme.raw,if=none,id=d0,format=raw -device nvme,serial=testos1,drive=d0"
    expect nvme "IPA-RS-TESTOS-CONFIGDRIVE uuid=$UUID name=$NAME" ;;
6)  cp "$OUT/testos.raw" "$T/sata.raw"; add_part "$T/sata.raw" "$T/cd.iso"
    boot sata "-drive file=$T/sata.raw,if=none,id=d0,format=raw -device ide-hd,drive=d0,bus=ide.0"
    expect sata "IPA-RS-TESTOS-CONFIGDRIVE uuid=$UUID name=$NAME" ;;
*)  die "unknown case $c" ;;
esac; done
rm -f "$T"/*.raw "$T"/*.qcow2 "$T"/*.vars.fd
echo "boot-test: all passed (console logs in $T)"
