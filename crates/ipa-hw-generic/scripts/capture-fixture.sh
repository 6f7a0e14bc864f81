#!/bin/sh
# Record a read-only fixture of this machine for ipa-hw-generic's tests:
#   capture-fixture.sh <dest-dir>
# Copies the sysfs/procfs/udev subset the generic manager reads, keeping relative symlinks
# (so /sys/class/net/X/device etc. resolve inside the fixture) and writes ipa-fixture.json with
# what only ioctls/netlink give (permanent MACs, first addresses, architecture).
# Nothing on this machine is modified. IPMI device nodes become plain marker files.
set -u
DEST=${1:?usage: capture-fixture.sh <dest-dir>}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

cpf() { # copy a readable regular file
    [ -f "$1" ] && [ -r "$1" ] || return 0
    mkdir -p "$DEST$(dirname "$1")"
    cat "$1" > "$DEST$1" 2>/dev/null || rm -f "$DEST$1"
}
cpl() { # recreate a symlink with its (relative) target
    [ -L "$1" ] || return 0
    mkdir -p "$DEST$(dirname "$1")"
    ln -sfn "$(readlink "$1")" "$DEST$1"
}
mkd() { mkdir -p "$DEST$1"; }

for f in /proc/cpuinfo /proc/meminfo /proc/cmdline /proc/sys/kernel/hostname \
         /sys/devices/system/cpu/present /sys/firmware/dmi/tables/DMI; do cpf "$f"; done
for c in /sys/devices/system/cpu/cpu[0-9]*; do
    for f in topology/physical_package_id topology/core_id cpufreq/cpuinfo_max_freq; do cpf "$c/$f"; done
done
for n in /sys/devices/system/node/node[0-9]*; do cpf "$n/cpulist"; cpf "$n/meminfo"; done
for f in /sys/class/dmi/id/*; do [ "$(basename "$f")" = uevent ] || cpf "$f"; done
[ -d /sys/firmware/efi ] && mkd /sys/firmware/efi

# Network interfaces.
for i in /sys/class/net/*; do
    cpl "$i"; r=$(readlink -f "$i")
    for f in address carrier speed type; do cpf "$r/$f"; done
    [ -d "$r/bonding" ] && mkd "$r/bonding"
    if [ -L "$r/device" ]; then
        cpl "$r/device"; d=$(readlink -f "$r/device")
        for f in vendor device numa_node; do cpf "$d/$f"; done
        cpl "$d/driver"
    fi
done

# Block devices, udev data, by-path links.
for b in /sys/block/*; do
    cpl "$b"; r=$(readlink -f "$b"); k=$(basename "$b")
    for f in dev size ro removable queue/rotational queue/logical_block_size \
             queue/physical_block_size md/level dm/uuid dm/name; do cpf "$r/$f"; done
    for h in "$r"/holders/* "$r"/slaves/*; do cpl "$h"; done
    [ -e "$r/dev" ] && cpf "/run/udev/data/b$(cat "$r/dev")"
    if [ -L "$r/device" ]; then
        cpl "$r/device"; d=$(readlink -f "$r/device")
        for f in model vendor serial wwid type; do cpf "$d/$f"; done
        for s in "$d"/scsi_device/*; do [ -e "$s" ] && mkd "$s"; done
    fi
    for p in "$r/$k"*; do
        [ -f "$p/partition" ] || continue
        for f in dev size partition; do cpf "$p/$f"; done
        cpf "/run/udev/data/b$(cat "$p/dev")"
    done
done
for l in /dev/disk/by-path/*; do cpl "$l"; done
[ -d /sys/class/sas_host ] && for h in /sys/class/sas_host/*; do cpl "$h"; done

# PCI and USB (for the inspection collectors).
for p in /sys/bus/pci/devices/*; do
    cpl "$p"; r=$(readlink -f "$p")
    for f in vendor device class revision numa_node; do cpf "$r/$f"; done
done
for u in /sys/bus/usb/devices/*; do
    cpl "$u"; r=$(readlink -f "$u")
    for f in busnum devnum product manufacturer; do cpf "$r/$f"; done
done

# IPMI device markers.
for d in /dev/ipmi* /dev/ipmi/* /dev/ipmidev/*; do
    [ -c "$d" ] && mkdir -p "$DEST$(dirname "$d")" && : > "$DEST$d"
done

# What files cannot tell: permanent MACs, first addresses, architecture.
{
    printf '{\n  "architecture": "%s",\n  "permanent_macs": {' "$(uname -m)"
    sep=""
    for i in /sys/class/net/*; do
        n=$(basename "$i")
        m=$(ethtool -P "$n" 2>/dev/null | awk '{print $3}') || m=""
        [ -n "$m" ] || m=$(cat "$i/address" 2>/dev/null || true)
        printf '%s\n    "%s": "%s"' "$sep" "$n" "$m"; sep=","
    done
    printf '\n  },\n  "addresses": {'
    sep=""
    for i in /sys/class/net/*; do
        n=$(basename "$i")
        v4=$(ip -o -4 addr show dev "$n" 2>/dev/null | awk 'NR==1{split($4,a,"/"); print a[1]}')
        v6=$(ip -o -6 addr show dev "$n" 2>/dev/null | awk 'NR==1{split($4,a,"/"); print a[1]}')
        case "$v6" in fe80*) v6="$v6%$n";; esac
        j4=null; [ -n "$v4" ] && j4="\"$v4\""
        j6=null; [ -n "$v6" ] && j6="\"$v6\""
        printf '%s\n    "%s": {"ipv4": %s, "ipv6": %s}' "$sep" "$n" "$j4" "$j6"; sep=","
    done
    printf '\n  }\n}\n'
} > "$DEST/ipa-fixture.json"
# git drops empty directories; several mean something in sysfs (firmware/efi, holders, ...).
find "$DEST" -type d -empty -exec touch {}/.keep \;
echo "fixture written to $DEST"
