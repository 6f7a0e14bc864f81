#!/bin/bash
# make-test-os.sh OUTDIR — build the VM lab's bootable UEFI whole-disk test image.
#
# The image is a small GPT disk whose only partition is an EFI System Partition holding a unified
# kernel image (systemd-stub + Debian kernel + a busybox initrd + a built-in command line) as
# \EFI\BOOT\BOOTX64.EFI. Booted (by OVMF, from the disk alone) it prints marker lines on ttyS0,
# reports the config drive (filesystem label config-2) if one is present, and powers the VM off.
# See README.md next to this script.
#
# Environment (all optional):
#   KERNEL            a bzImage with an EFI stub (default: the kernel of the package linux-image-amd64
#                     depends on, downloaded with apt-get download into $CACHE and extracted there)
#   MODULES_DIR       a lib/modules/<version> directory matching $KERNEL (default: from the
#                     linux-image-<version> package of $KERNEL's version, downloaded into $CACHE)
#   CACHE             download/extract cache (default: OUTDIR/cache); safe to share between runs
#   STUB              systemd-stub (linuxx64.efi.stub) to use (default: from the systemd-boot-efi
#                     package downloaded into $CACHE; falls back to the host's copy)
#   BUSYBOX           a static busybox binary (default: from busybox-static downloaded into $CACHE;
#                     falls back to the host's /bin/busybox if it is static)
#   CMDLINE           kernel command line embedded in the UKI
#                     (default: "console=ttyS0 panic=10 loglevel=4")
#   COMPRESS          initrd compression: gzip (default) or zstd (-19; 0.33 MB smaller, slower build)
#   UKI_LAYOUT        compact (default: sections packed after the stub; boots in >= 160 MiB VMs) or
#                     classic (.linux at 0x2000000, .initrd at 0x3000000; ~50 MB image in memory,
#                     boots at 256 MiB, not at 192)
#   KEEP_WORK         set to keep OUTDIR/build/{initrd,modroot,initrd.cpio} for inspection
#   DISK_MIB          disk image size in MiB (default 64)
#   ESP_MIB           ESP size in MiB (default 32; partition 1 starts at 1 MiB, the rest is free)
#   SOURCE_DATE_EPOCH timestamp for every file in the initrd and the ESP (default 1704067200)
#
# Outputs in OUTDIR: testos.raw, testos.qcow2, testos.sha256, testos.json, testos.efi (the UKI).
set -euo pipefail

die() { echo "make-test-os: error: $*" >&2; exit 1; }
log() { echo "make-test-os: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)
CACHE=${CACHE:-$OUTDIR/cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
CMDLINE=${CMDLINE:-console=ttyS0 panic=10 loglevel=4}
COMPRESS=${COMPRESS:-gzip}
UKI_LAYOUT=${UKI_LAYOUT:-compact}
DISK_MIB=${DISK_MIB:-64}
ESP_MIB=${ESP_MIB:-32}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
export LC_ALL=C TZ=UTC

# Fixed identifiers so that two builds from the same inputs are byte-identical.
DISK_GUID=5b0c3a1e-7d4f-4e0a-9c1b-1a2b3c4d5e6f
ESP_GUID=8d4e7a52-3c1b-4f6e-9a0d-2b3c4d5e6f70
FAT_VOLID=1a2b3c4d

MARKER_BOOT="IPA-RS-TESTOS-MARKER"
MARKER_CD="IPA-RS-TESTOS-CONFIGDRIVE"
MARKER_DONE="IPA-RS-TESTOS-DONE"

for t in apt-get dpkg-deb depmod modprobe modinfo objcopy objdump cpio sgdisk mkfs.vfat mmd mcopy \
         qemu-img sha256sum od dd truncate; do
    command -v "$t" >/dev/null || die "missing tool: $t (see README.md for the packages)"
done
case $COMPRESS in gzip|zstd) command -v "$COMPRESS" >/dev/null || die "missing tool: $COMPRESS";;
                  *) die "COMPRESS must be gzip or zstd";; esac
[ "$ESP_MIB" -ge 8 ] && [ "$DISK_MIB" -ge $((ESP_MIB + 2)) ] || die "need ESP_MIB >= 8 and DISK_MIB >= ESP_MIB + 2"

WORK=$OUTDIR/build
rm -rf "$WORK"
mkdir -p "$WORK"

# --- package cache -------------------------------------------------------------------------------
# fetch_pkg NAME -> prints the directory the .deb was extracted into (cached with a stamp).
fetch_pkg() {
    local pkg=$1 deb dir
    deb=$(ls -1 "$CACHE"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$deb" ]; then
        log "apt-get download $pkg"
        (cd "$CACHE" && apt-get download "$pkg" >&2) || return 1
        deb=$(ls -1 "$CACHE"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
        [ -n "$deb" ] || return 1
    fi
    dir=$CACHE/x-$(basename "$deb" .deb)
    if [ ! -e "$dir/.extracted" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir" >&2
        touch "$dir/.extracted"
    fi
    echo "$dir"
}

# bzImage header: "MZ" (EFI stub / PE), "HdrS" at 0x202, version string at 0x200 + u16@0x20e.
kernel_version() {
    local k=$1 off
    [ "$(dd if="$k" bs=1 count=2 2>/dev/null)" = MZ ] || die "$k has no EFI stub (no MZ header)"
    [ "$(dd if="$k" bs=1 skip=$((0x202)) count=4 2>/dev/null)" = HdrS ] || die "$k is not a bzImage"
    off=$(od -An -tu2 -j $((0x20e)) -N2 "$k" | tr -d ' ')
    dd if="$k" bs=1 skip=$((off + 0x200)) count=256 2>/dev/null | tr '\0' '\n' | head -n1 | cut -d' ' -f1
}

# --- kernel and modules --------------------------------------------------------------------------
if [ -n "${KERNEL:-}" ]; then
    [ -f "$KERNEL" ] || die "KERNEL=$KERNEL does not exist"
    KVER=$(kernel_version "$KERNEL")
else
    KPKG=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
    [ -n "$KPKG" ] || die "apt-cache depends linux-image-amd64 names no kernel package"
    KDIR=$(fetch_pkg "$KPKG") || die "cannot download $KPKG"
    KERNEL=$(ls -1 "$KDIR"/boot/vmlinuz-* | head -n1)
    KVER=$(kernel_version "$KERNEL")
fi
[ -n "$KVER" ] || die "cannot read the kernel version of $KERNEL"
log "kernel $KERNEL ($KVER)"

if [ -z "${MODULES_DIR:-}" ]; then
    KDIR=$(fetch_pkg "linux-image-$KVER") || die "cannot download linux-image-$KVER: set MODULES_DIR"
    MODULES_DIR=$KDIR/lib/modules/$KVER
fi
[ -d "$MODULES_DIR" ] || die "MODULES_DIR=$MODULES_DIR is not a directory"
# A private shadow tree (symlinks), so depmod never writes into someone else's directory.
MODROOT=$WORK/modroot
mkdir -p "$MODROOT/lib/modules"
cp -rs "$(cd "$MODULES_DIR" && pwd)" "$MODROOT/lib/modules/$KVER"
# Drop depmod's outputs (inputs modules.order/builtin/builtin.modinfo stay as links).
rm -f "$MODROOT"/lib/modules/"$KVER"/modules.{dep,dep.bin,alias,alias.bin,softdep,symbols,symbols.bin,builtin.bin,builtin.alias.bin,devname}
depmod -b "$MODROOT" "$KVER"
vermagic=$(modinfo -b "$MODROOT" -k "$KVER" -F vermagic isofs | cut -d' ' -f1)
[ "$vermagic" = "$KVER" ] || die "modules in $MODULES_DIR are for '$vermagic', the kernel is $KVER"

# Disk drivers (virtio, SCSI, AHCI, NVMe), the config drive filesystems (iso9660, vfat) and their NLS.
WANT_MODULES="virtio_pci virtio_blk virtio_scsi sd_mod ahci nvme sr_mod isofs vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859_1"

# --- initrd --------------------------------------------------------------------------------------
ROOT=$WORK/initrd
mkdir -p "$ROOT"/{bin,dev,proc,sys,mnt,tmp,etc,lib/modules}
ln -s bin "$ROOT/sbin"
mkdir -p "$ROOT/usr"
ln -s ../bin "$ROOT/usr/bin"
ln -s ../bin "$ROOT/usr/sbin"

: > "$ROOT/etc/testos-modules"
for m in $WANT_MODULES; do
    modprobe -d "$MODROOT" -S "$KVER" --show-depends "$m" | while read -r kind path _; do
        [ "$kind" = insmod ] || continue          # "builtin X" needs nothing
        name=$(basename "$path")
        case $name in
            *.ko) cp -L "$path" "$ROOT/lib/modules/$name" ;;
            *.ko.xz) name=${name%.xz}; xz -dc "$path" > "$ROOT/lib/modules/$name" ;;
            *.ko.zst) name=${name%.zst}; zstd -qdc "$path" > "$ROOT/lib/modules/$name" ;;
            *.ko.gz) name=${name%.gz}; gzip -dc "$path" > "$ROOT/lib/modules/$name" ;;
            *) die "unexpected module file $path" ;;
        esac
        grep -qxF "$name" "$ROOT/etc/testos-modules" || echo "$name" >> "$ROOT/etc/testos-modules"
    done
done
log "modules: $(tr '\n' ' ' < "$ROOT/etc/testos-modules")"

if [ -z "${BUSYBOX:-}" ]; then
    if BBDIR=$(fetch_pkg busybox-static); then
        BUSYBOX=$BBDIR/bin/busybox
    elif [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
        log "warning: using the host's static /bin/busybox"
        BUSYBOX=/bin/busybox
    else
        die "no static busybox (install busybox-static or set BUSYBOX)"
    fi
fi
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 755 "$ROOT/bin/busybox"
# Relative links: absolute ones (busybox --install -s) point into the build host.
for a in $("$ROOT/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"
done
# The initial console; /init also re-opens /dev/console after mounting devtmpfs, so a build
# that cannot mknod (not root) still works.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

cat > "$ROOT/init" <<'INIT'
#!/bin/sh
# ipa-rs VM lab test OS: show that the deployed disk booted, report the config drive, power off.
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
# Keep kernel messages from interleaving with the marker lines.
echo 1 > /proc/sys/kernel/printk
say() { echo "$*" > /dev/console; }
info() { say "IPA-RS-TESTOS-INFO $*"; }
off() { info "uptime $(cut -d' ' -f1 /proc/uptime)s"; say "IPA-RS-TESTOS-DONE"; sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }

say "IPA-RS-TESTOS-MARKER booted $(uname -r) root=$(cat /proc/cmdline)"
info "uptime $(cut -d' ' -f1 /proc/uptime)s"

# Dependency order, resolved at build time. "No such device" is a driver declining this machine
# (crct10dif-pclmul without PCLMULQDQ under TCG), not an error.
failed=""
while read -r m; do
    [ -n "$m" ] || continue
    err=$(insmod "/lib/modules/$m" 2>&1) || case $err in
        *"No such device"*|*"File exists"*) ;;
        *) failed="$failed ${m%.ko}" ;;
    esac
done < /etc/testos-modules
[ -z "$failed" ] || info "insmod failed:$failed"

# Bytes LEN at OFFSET of file $1, without NULs, blanks trimmed, lower-cased.
field() { dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | tr -d '\000' \
          | sed 's/^ *//; s/ *$//' | tr 'A-Z' 'a-z'; }
# The filesystem label of device $1 if it is iso9660 or FAT (the same rules as ipa-image's fs_label).
label_of() {
    dd if="$1" of=/tmp/pvd bs=2048 skip=16 count=1 2>/dev/null || return 0
    if [ "$(field /tmp/pvd 1 5)" = cd001 ]; then
        FSTYPE=iso9660; field /tmp/pvd 40 32; return 0
    fi
    dd if="$1" of=/tmp/bs bs=512 count=1 2>/dev/null || return 0
    [ "$(od -An -tx1 -j510 -N2 /tmp/bs | tr -d ' ')" = 55aa ] || return 0
    if [ "$(field /tmp/bs 82 5)" = fat32 ]; then FSTYPE=vfat; field /tmp/bs 71 11
    elif [ "$(field /tmp/bs 54 3)" = fat ]; then FSTYPE=vfat; field /tmp/bs 43 11
    fi
}
# First string value of key $1 in JSON file $2 (meta_data.json is flat where uuid/name live).
json_str() { tr ',{}' '\n\n\n' < "$2" | sed -n "s/^[[:space:]]*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" | head -n1; }

disks() { for d in /sys/class/block/*; do
              n=${d##*/}; case $n in loop*|ram*|zram*|dm-*|md*) continue;; esac; echo "$n"; done; }
scan() {
    for n in $(disks); do
        [ -b "/dev/$n" ] || continue
        FSTYPE=""
        l=$(label_of "/dev/$n")
        [ "$l" = config-2 ] || continue
        mkdir -p /mnt/cd
        for t in $FSTYPE iso9660 vfat; do
            mount -t "$t" -o ro "/dev/$n" /mnt/cd 2>/dev/null && { CDDEV=/dev/$n; CDFS=$t; return 0; }
        done
        info "config-2 label on /dev/$n but it does not mount"
    done
    return 1
}
# Wait (up to 10 s) for any disk, then scan; partitions and NVMe namespaces may appear a bit later.
i=0
while [ -z "$(disks)" ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
info "block devices at $(cut -d' ' -f1 /proc/uptime)s: $(disks | tr '\n' ' ')"
CDDEV=""
for try in 1 2 3; do
    scan && break
    CDDEV=""
    [ $try -lt 3 ] && sleep 0.5
done

if [ -n "$CDDEV" ]; then
    md=/mnt/cd/openstack/latest/meta_data.json
    if [ -f "$md" ]; then
        info "config drive $CDDEV ($CDFS)"
        say "IPA-RS-TESTOS-CONFIGDRIVE uuid=$(json_str uuid "$md") name=$(json_str name "$md")"
    else
        info "config drive $CDDEV ($CDFS) has no openstack/latest/meta_data.json"
        say "IPA-RS-TESTOS-CONFIGDRIVE uuid= name="
    fi
    umount /mnt/cd
else
    say "IPA-RS-TESTOS-CONFIGDRIVE none"
fi
off
INIT
chmod 755 "$ROOT/init"

find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
INITRD=$WORK/initrd.img
(cd "$ROOT" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) > "$WORK/initrd.cpio"
case $COMPRESS in
    gzip) gzip -9 -n -c "$WORK/initrd.cpio" > "$INITRD" ;;
    zstd) zstd -q -19 -c "$WORK/initrd.cpio" > "$INITRD" ;;
esac
log "initrd: $(stat -c %s "$WORK/initrd.cpio") bytes cpio, $(stat -c %s "$INITRD") bytes $COMPRESS"

# --- unified kernel image ------------------------------------------------------------------------
if [ -z "${STUB:-}" ]; then
    if SBDIR=$(fetch_pkg systemd-boot-efi); then
        STUB=$SBDIR/usr/lib/systemd/boot/efi/linuxx64.efi.stub
    else
        log "warning: cannot download systemd-boot-efi, using the host's stub"
        STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
    fi
fi
[ -f "$STUB" ] || die "no systemd-stub at $STUB"

printf 'NAME="ipa-rs test OS"\nID=ipa-rs-testos\nVERSION_ID=1\nPRETTY_NAME="ipa-rs VM lab test OS (%s)"\n' \
    "$KVER" > "$WORK/osrel"
printf '%s' "$CMDLINE" > "$WORK/cmdline"

align() { echo $(( ($1 + $2 - 1) / $2 * $2 )); }
# "NAME VMA SIZE" (decimal) for every section of a PE file, from objdump -h.
sections() { objdump -h "$1" | while read -r idx name size vma _; do
                 case $idx in [0-9]*) echo "$name $((16#$vma)) $((16#$size))";; esac; done; }
stub_end=0
while read -r _ vma size; do
    [ $((vma + size)) -le "$stub_end" ] || stub_end=$((vma + size))
done < <(sections "$STUB")
ksize=$(stat -c %s "$KERNEL")
isize=$(stat -c %s "$INITRD")
osz=$(stat -c %s "$WORK/osrel")
csz=$(stat -c %s "$WORK/cmdline")
OSREL_VMA=$((0x20000)); CMDLINE_VMA=$((0x30000))
[ "$stub_end" -le $OSREL_VMA ] || die "stub ends at $(printf %#x "$stub_end"), past .osrel"
[ $((OSREL_VMA + osz)) -le $CMDLINE_VMA ] || die ".osrel too large"
case $UKI_LAYOUT in
    # The firmware allocates SizeOfImage (the end of the last section) in one piece when it loads
    # the UKI: with .initrd at 0x3000000 that is ~50 MB, and OVMF with 128 MiB of RAM cannot load
    # it (falls through to network boot). Compact: each section right after the previous one.
    compact) LINUX_VMA=$(align $((CMDLINE_VMA + csz)) $((0x10000)))
             INITRD_VMA=$(align $((LINUX_VMA + ksize)) $((0x10000))) ;;
    # The classic objcopy recipe (systemd's documentation, vm-lab.md).
    classic) LINUX_VMA=$((0x2000000)); INITRD_VMA=$((0x3000000))
             [ $((CMDLINE_VMA + csz)) -le $LINUX_VMA ] || die ".cmdline too large"
             # Move .initrd up if the kernel would run into it.
             [ $((LINUX_VMA + ksize)) -le $INITRD_VMA ] || INITRD_VMA=$(align $((LINUX_VMA + ksize)) $((0x100000))) ;;
    *) die "UKI_LAYOUT must be compact or classic" ;;
esac
UKI=$OUTDIR/testos.efi
objcopy \
    --add-section .osrel="$WORK/osrel" --change-section-vma .osrel=$(printf %#x $OSREL_VMA) \
    --add-section .cmdline="$WORK/cmdline" --change-section-vma .cmdline=$(printf %#x $CMDLINE_VMA) \
    --add-section .linux="$KERNEL" --change-section-vma .linux=$(printf %#x $LINUX_VMA) \
    --add-section .initrd="$INITRD" --change-section-vma .initrd=$(printf %#x $INITRD_VMA) \
    "$STUB" "$UKI.tmp"
# objcopy stamps the PE header with the current time: put the stub's 0 back, then redo the PE
# checksum (16-bit one's-complement-style sum of the file without the checksum field, plus its length).
put_u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($2 & 255)) $(($2 >> 8 & 255)) \
                $(($2 >> 16 & 255)) $(($2 >> 24 & 255)))" | dd of="$1" bs=1 seek="$3" conv=notrunc status=none; }
pe=$(od -An -tu4 -j 60 -N4 "$UKI.tmp" | tr -d ' ')
put_u32 "$UKI.tmp" 0 $((pe + 8))
sum=$(od -An -tu2 -v -w2 "$UKI.tmp" | awk -v skip=$(( (pe + 88) / 2 )) '
    NR - 1 != skip && NR - 1 != skip + 1 { s += $1; if (s > 4294967295) s = s % 65536 + int(s / 65536) }
    END { while (s > 65535) s = s % 65536 + int(s / 65536); print s }')
put_u32 "$UKI.tmp" $((sum + $(stat -c %s "$UKI.tmp"))) $((pe + 88))
mv "$UKI.tmp" "$UKI"
# Check the result: every section present, none overlapping.
prev_end=0; prev=""; seen=""
while read -r name vma size; do
    [ "$vma" -ge "$prev_end" ] || die "UKI sections $prev and $name overlap"
    prev_end=$((vma + size)); prev=$name; seen="$seen $name"
done < <(sections "$UKI" | sort -k2,2n)
for sec in .osrel .cmdline .linux .initrd; do
    case " $seen " in *" $sec "*) ;; *) die "UKI has no $sec section";; esac
done
log "UKI $UKI: $(stat -c %s "$UKI") bytes (.linux $ksize at $(printf %#x $LINUX_VMA), .initrd $isize at $(printf %#x $INITRD_VMA))"

# --- ESP and disk --------------------------------------------------------------------------------
ESP=$WORK/esp.img
# --invariant first: it would otherwise replace the volume id given with -i.
mkfs.vfat --invariant -i "$FAT_VOLID" -n EFI -C "$ESP" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1 MTOOLSRC=/dev/null
touch -d "@$SOURCE_DATE_EPOCH" "$UKI"
mmd -i "$ESP" ::/EFI ::/EFI/BOOT
mcopy -m -i "$ESP" "$UKI" ::/EFI/BOOT/BOOTX64.EFI

RAW=$OUTDIR/testos.raw
rm -f "$RAW" "$RAW.tmp"
truncate -s "${DISK_MIB}M" "$RAW.tmp"
# (not -q: sgdisk 1.0.9 then silently writes nothing)
sgdisk -o -U "$DISK_GUID" \
    -n "1:2048:+${ESP_MIB}M" -t 1:EF00 -c "1:EFI System" -u "1:$ESP_GUID" "$RAW.tmp" >/dev/null 2>&1 \
    || die "sgdisk failed"
sgdisk -i 1 "$RAW.tmp" 2>/dev/null | grep -q 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B' \
    || die "no ESP in the partition table of $RAW.tmp"
dd if="$ESP" of="$RAW.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
mv "$RAW.tmp" "$RAW"
QCOW=$OUTDIR/testos.qcow2
rm -f "$QCOW"
qemu-img convert -q -f raw -O qcow2 "$RAW" "$QCOW"

(cd "$OUTDIR" && sha256sum testos.raw testos.qcow2) > "$OUTDIR/testos.sha256"
raw_sha=$(sed -n 's/ .*testos.raw$//p' "$OUTDIR/testos.sha256")
qcow_sha=$(sed -n 's/ .*testos.qcow2$//p' "$OUTDIR/testos.sha256")
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
cat > "$OUTDIR/testos.json" <<JSON
{
  "raw": "testos.raw",
  "qcow2": "testos.qcow2",
  "raw_sha256": "$raw_sha",
  "qcow2_sha256": "$qcow_sha",
  "raw_size": $(stat -c %s "$RAW"),
  "qcow2_size": $(stat -c %s "$QCOW"),
  "uki": "testos.efi",
  "kernel_version": "$KVER",
  "cmdline": "$(esc "$CMDLINE")",
  "disk_guid": "$DISK_GUID",
  "esp_partition_guid": "$ESP_GUID",
  "esp_bytes": $((ESP_MIB * 1024 * 1024)),
  "markers": {
    "booted": "$MARKER_BOOT booted $KVER root=$(esc "$CMDLINE")",
    "booted_prefix": "$MARKER_BOOT booted ",
    "configdrive_prefix": "$MARKER_CD ",
    "configdrive_none": "$MARKER_CD none",
    "configdrive_found": "$MARKER_CD uuid=<uuid> name=<name>",
    "info_prefix": "IPA-RS-TESTOS-INFO ",
    "done": "$MARKER_DONE"
  }
}
JSON
[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK/modroot" "$WORK/initrd" "$WORK/initrd.cpio"
log "wrote $RAW ($(stat -c %s "$RAW") bytes), $QCOW ($(stat -c %s "$QCOW") bytes), testos.sha256, testos.json"
