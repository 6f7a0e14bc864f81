#!/usr/bin/env bash
# Build the ipa-rs deploy ramdisk: <out>/ipa-rs.kernel + <out>/ipa-rs.initramfs (+ manifest).
# See docs/ramdisk.md. Nothing is installed on the host: Debian packages are fetched with
# `apt-get download` into the cache and unpacked with `dpkg-deb -x` in scratch directories.
set -euo pipefail
umask 022
export LC_ALL=C

usage() {
    cat <<'EOF'
Usage: scripts/build-ramdisk.sh [options]

Builds a bootable ipa-rs deploy ramdisk from the agent, ipa-init and Debian packages:
  <out>/ipa-rs.kernel      the Debian kernel (vmlinuz, EFI stub)
  <out>/ipa-rs.initramfs   compressed newc cpio: /init = ipa-init, /usr/bin/ipa-agent, tools, modules
  <out>/manifest.json      packages (version, sha256), files, modules, sizes, checksums
  <out>/manifest.txt       the same for humans

Options:
  --features LIST     cargo features of the agent (default for ipa-agent: transport-rest,hw-generic;
                      for another --package: none). Built with --no-default-features.
  --package NAME      cargo package of the agent binary (default ipa-agent); e.g.
                      acme-hardware-manager (examples/vendor-hardware-manager)
  --bin NAME          binary of that package (default ipa-agent); installed as /usr/bin/ipa-agent
  --firmware          add NIC firmware (non-free-firmware; ramdisk/firmware.txt) referenced by the
                      included modules, and the drivers flagged `firmware` in ramdisk/modules.txt
  --out DIR           output directory (default target/ramdisk)
  --compress ALGO     zstd (default) or gzip
  --level N           compression level (default: zstd 19, gzip 9)
  --module-compress ALGO  xz (default) or none: each kernel module is stored as .ko.xz and
                      ipa-init decompresses it when it loads it; the unpacked rootfs is then
                      ~23 MiB smaller, which is what lets a 192 MiB machine unpack it (the
                      kernel's rootfs tmpfs is capped at half the RAM it sees at that point)
  --cache DIR         download/unpack cache (default <out>/cache)
  --kernel PKG        kernel package (default: what linux-image-amd64 depends on)
  --small-agent       on top of cargo profile `ramdisk-agent` (opt-level s, hot-path crates at 3,
                      thin LTO), fat LTO and one codegen unit (CARGO_PROFILE_RAMDISK_AGENT_*;
                      panic stays unwind): a little smaller, one slow full build (~30 min here)
  --init FILE         use FILE as /init instead of building crate ipa-init (debugging)
  --with LIST         add optional tools/modules (flag `optional` in the lists), e.g. ipmitool
  --without LIST      leave out tools (by installed name, e.g. dropbear,smartctl) or modules;
                      tool:NAME / module:NAME when a name is both (nvme); required modules stay
  --no-ca-certificates  leave out /etc/ssl/certs/ca-certificates.crt (Mozilla CA bundle)
  --check-reproducible  assemble the tree a second time from the cache and pack it again;
                      fail unless both initramfs images are byte-identical
  --max-size MB       warn when the initramfs exceeds MB MiB (default 12)
  -h, --help          this text

Environment: SOURCE_DATE_EPOCH (default: commit time of HEAD) is the mtime of every file;
CARGO_TARGET_DIR is honoured.
Lists: ramdisk/modules.txt, ramdisk/tools.txt, ramdisk/packages.txt, ramdisk/firmware.txt;
static files: ramdisk/rootfs/.
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

FEATURES=""
FEATURES_SET=0
PACKAGE=ipa-agent
BIN=ipa-agent
FIRMWARE=0
OUT=target/ramdisk
COMPRESS=zstd
LEVEL=""
MODULE_COMPRESS=xz
CACHE=""
KERNEL_PKG=""
INIT_FILE=""
CA_CERTS=1
CHECK_REPRO=0
MAX_MB=12
WITH=""
WITHOUT=""
SMALL=0

while [[ $# -gt 0 ]]; do
    case $1 in
        --features) FEATURES=$2; FEATURES_SET=1; shift 2 ;;
        --features=*) FEATURES=${1#*=}; FEATURES_SET=1; shift ;;
        --package) PACKAGE=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --firmware) FIRMWARE=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --compress) COMPRESS=$2; shift 2 ;;
        --level) LEVEL=$2; shift 2 ;;
        --module-compress) MODULE_COMPRESS=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --kernel) KERNEL_PKG=$2; shift 2 ;;
        --init) INIT_FILE=$(realpath "$2"); shift 2 ;;
        --small-agent) SMALL=1; shift ;;
        --with) WITH=$2; shift 2 ;;
        --without) WITHOUT=$2; shift 2 ;;
        --no-ca-certificates) CA_CERTS=0; shift ;;
        --check-reproducible) CHECK_REPRO=1; shift ;;
        --max-size) MAX_MB=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build-ramdisk: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $FEATURES_SET == 0 && $PACKAGE == ipa-agent ]]; then
    FEATURES=transport-rest,hw-generic
fi
case $COMPRESS in
    zstd) LEVEL=${LEVEL:-19} ;;
    gzip) LEVEL=${LEVEL:-9} ;;
    *) echo "build-ramdisk: --compress must be zstd or gzip" >&2; exit 2 ;;
esac
[[ $LEVEL =~ ^[0-9]+$ ]] || { echo "build-ramdisk: --level must be a number" >&2; exit 2; }

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
CACHE=${CACHE:-$OUT/cache}
mkdir -p "$CACHE/debs" "$CACHE/x"
CACHE=$(realpath "$CACHE")
WORK=$OUT/work
LISTS=$ROOT/ramdisk
ARCH=x86_64-linux-gnu
T0=$(date +%s)

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'build-ramdisk: warning: %s\n' "$*" >&2; }
die() { printf 'build-ramdisk: error: %s\n' "$*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb depmod modprobe modinfo readelf strip cpio sha256sum \
    cargo git find sort awk realpath "$COMPRESS" xz; do
    command -v "$tool" >/dev/null || die "host tool '$tool' is missing (Debian: kmod, binutils, cpio, zstd, xz-utils, dpkg, apt)"
done

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds"
export SOURCE_DATE_EPOCH
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=false
if ! git diff --quiet HEAD -- 2>/dev/null; then DIRTY=true; fi

has_feature() { [[ ",$FEATURES," == *",$1,"* ]]; }
in_list() { [[ ",$2," == *",$1,"* || ",$2," == *",${1//_/-},"* || ",$2," == *",${1//-/_},"* ]]; }

# Lines of a list file without comments; `if:FEATURE` lines only when FEATURE is enabled;
# `optional` lines only when named in --with (by their last name field: $2 for tools).
read_list() {
    local line first
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r first _ <<<"$line" || true
        [[ -z ${first:-} ]] && continue
        if [[ $first == if:* ]]; then
            has_feature "${first#if:}" || continue
            line=${line#*"$first"}
            read -r first _ <<<"$line"
        fi
        if [[ $first == optional ]]; then
            line="${line#*optional} optional"
        fi
        echo "$line"
    done <"$1"
}

# wanted KIND NAME FLAGS...: default entries unless --without NAME (or KIND:NAME, KIND = tool
# or module); `optional` ones only with --with. A `required` module is never dropped.
wanted() {
    local kind=$1 name=$2
    shift 2
    if in_list "$name" "$WITHOUT" || in_list "$kind:$name" "$WITHOUT"; then
        if [[ " $* " == *" required "* ]]; then
            in_list "$kind:$name" "$WITHOUT" && warn "--without: $kind $name is required: kept"
            return 0
        fi
        return 1
    fi
    if [[ " $* " == *" optional "* ]]; then
        in_list "$name" "$WITH" || in_list "$kind:$name" "$WITH" || return 1
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# Debian packages: metadata from apt's lists, .deb in the cache, unpacked once.
declare -A PKG_VER PKG_ARCH PKG_SHA PKG_FILE PKG_DIR
PKG_ORDER=()

# pkg_meta NAME... : candidate version, arch and sha256 from `apt-cache show`; names without a
# candidate are left in PKG_MISSING (status 1).
PKG_MISSING=""
pkg_meta() {
    local out name missing=()
    out=$(apt-cache show --no-all-versions "$@" 2>/dev/null) || true
    while IFS=$'\t' read -r name ver arch sha; do
        [[ -n $name ]] || continue
        PKG_VER[$name]=$ver
        PKG_ARCH[$name]=$arch
        PKG_SHA[$name]=$sha
    done < <(awk '
        /^Package: /{p=$2} /^Version: /{v=$2} /^Architecture: /{a=$2} /^SHA256: /{s=$2}
        /^$/{ if (p!="") print p "\t" v "\t" a "\t" s; p=""; v=""; a=""; s="" }
        END{ if (p!="") print p "\t" v "\t" a "\t" s }' <<<"$out")
    for name in "$@"; do
        [[ -n ${PKG_VER[$name]:-} ]] || missing+=("$name")
    done
    PKG_MISSING="${missing[*]}"
    [[ -z $PKG_MISSING ]]
}

# fetch NAME... : download what is not cached (checking sha256), unpack, set PKG_DIR.
fetch() {
    local name f todo=()
    pkg_meta "$@" || die "no APT candidate for: $PKG_MISSING (run apt-get update?)"
    for name in "$@"; do
        f="${name}_${PKG_VER[$name]//:/%3a}_${PKG_ARCH[$name]}.deb"
        PKG_FILE[$name]=$f
        if [[ -f $CACHE/debs/$f ]] && echo "${PKG_SHA[$name]}  $CACHE/debs/$f" | sha256sum -c --status; then
            continue
        fi
        rm -f "$CACHE/debs/$f"
        todo+=("$name=${PKG_VER[$name]}")
    done
    if [[ ${#todo[@]} -gt 0 ]]; then
        log "apt-get download ${#todo[@]} package(s)"
        # The _apt user cannot write into the cache; download as root there (warning silenced).
        (cd "$CACHE/debs" && apt-get download -q "${todo[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
            die "apt-get download failed"
    fi
    for name in "$@"; do
        f=${PKG_FILE[$name]}
        echo "${PKG_SHA[$name]}  $CACHE/debs/$f" | sha256sum -c --status ||
            die "$f: sha256 does not match the APT index"
        local dir=$CACHE/x/${f%.deb}
        if [[ ! -f $dir.done ]]; then
            rm -rf "$dir"
            mkdir -p "$dir"
            dpkg-deb -x "$CACHE/debs/$f" "$dir"
            touch "$dir.done"
        fi
        PKG_DIR[$name]=$dir
        [[ " ${PKG_ORDER[*]} " == *" $name "* ]] || PKG_ORDER+=("$name")
    done
}

# ---------------------------------------------------------------------------------------------
# 1. cargo: the agent (or a vendor binary) and ipa-init.
AGENT_SRC=""
INIT_SRC=""
build_binaries() {
    local tdir
    # Cargo profile `ramdisk-agent` (Cargo.toml): opt-level s, the image-write hot path at 3;
    # its output directory is target/ramdisk-agent/, apart from target/release.
    local profile=ramdisk-agent
    if [[ $SMALL == 1 ]]; then
        export CARGO_PROFILE_RAMDISK_AGENT_LTO=fat CARGO_PROFILE_RAMDISK_AGENT_CODEGEN_UNITS=1
        # Own target dir: the fat-LTO objects do not replace the normal ramdisk-agent build.
        export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/ramdisk-cargo}
    fi
    tdir=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")/$profile
    local args=(build --profile "$profile" --locked -p "$PACKAGE" --bin "$BIN" --no-default-features)
    [[ -n $FEATURES ]] && args+=(--features "$FEATURES")
    log "cargo ${args[*]}"
    cargo "${args[@]}" >&2
    mkdir -p "$WORK/bin"
    # Copy at once: another build in the same target dir may replace the uplifted binary.
    cp "$tdir/$BIN" "$WORK/bin/agent"
    AGENT_SRC=$WORK/bin/agent
    if [[ -n $INIT_FILE ]]; then
        INIT_SRC=$INIT_FILE
        warn "using $INIT_FILE as /init instead of ipa-init"
    else
        [[ -f $ROOT/crates/ipa-init/Cargo.toml ]] ||
            die "crate crates/ipa-init is missing (or pass --init FILE)"
        log "cargo build --profile $profile --locked -p ipa-init --bin ipa-init"
        cargo build --profile "$profile" --locked -p ipa-init --bin ipa-init >&2
        cp "$tdir/ipa-init" "$WORK/bin/init"
        INIT_SRC=$WORK/bin/init
    fi
}

# ---------------------------------------------------------------------------------------------
# 2. kernel package
KVER=""
KDIR=""
resolve_kernel() {
    if [[ -z $KERNEL_PKG ]]; then
        KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
            awk '$1=="Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
        [[ -n $KERNEL_PKG ]] || die "cannot resolve linux-image-amd64 (run apt-get update)"
    fi
    log "kernel package $KERNEL_PKG"
    fetch "$KERNEL_PKG"
    KDIR=${PKG_DIR[$KERNEL_PKG]}
    local vml
    vml=$(find "$KDIR/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | head -n1)
    [[ -n $vml ]] || die "$KERNEL_PKG has no boot/vmlinuz-*"
    KVER=${vml##*/vmlinuz-}
    [[ -d $KDIR/lib/modules/$KVER ]] || die "$KERNEL_PKG has no lib/modules/$KVER"
    # Debian ships no modules.dep: make one in the unpacked package (scratch) for modprobe -S.
    if [[ ! -f $KDIR/lib/modules/$KVER/modules.dep ]]; then
        depmod -b "$KDIR" "$KVER"
    fi
}

# ---------------------------------------------------------------------------------------------
# 3. staging tree
STAGE=""
MODS_INCLUDED=()
MODS_SKIPPED=()
MODS_LOAD=()
FW_FILES=()
FW_MISSING=()
declare -A FILE_PKG   # staged path -> package it came from

install_file() { # src dest(abs in ramdisk) mode [package]
    local dst=$STAGE$2
    mkdir -p "$(dirname "$dst")"
    cp -L "$1" "$dst"
    chmod "$3" "$dst"
    [[ -n ${4:-} ]] && FILE_PKG[$2]=$4
    return 0
}

is_elf() {
    [[ -f $1 && ! -L $1 ]] || return 1
    [[ $(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n') == 7f454c46 ]]
}

stage_modules() {
    local line name flags dep ko rel
    local -A seen=()
    local moddir=$KDIR/lib/modules/$KVER
    MODS_INCLUDED=() MODS_SKIPPED=() MODS_LOAD=()
    while read -r name flags; do
        local required=0 load=0 fwonly=0
        [[ " $flags " == *" required "* ]] && required=1
        [[ " $flags " == *" load "* ]] && load=1
        [[ " $flags " == *" firmware "* ]] && fwonly=1
        if ! wanted module "$name" $flags; then
            MODS_SKIPPED+=("$name (not selected)")
            continue
        fi
        if [[ $fwonly == 1 && $FIRMWARE == 0 ]]; then
            MODS_SKIPPED+=("$name (needs --firmware)")
            continue
        fi
        local deps
        if ! deps=$(modprobe -d "$KDIR" -S "$KVER" --show-depends "$name" 2>/dev/null); then
            [[ $required == 1 ]] && die "required module $name is not in kernel $KVER"
            warn "module $name is not in kernel $KVER: skipped"
            MODS_SKIPPED+=("$name (not in $KVER)")
            continue
        fi
        while read -r kind ko _; do
            [[ $kind == insmod ]] || continue   # `builtin X` lines: nothing to copy
            rel=${ko#"$KDIR"/}
            [[ -n ${seen[$rel]:-} ]] && continue
            seen[$rel]=1
            install_file "$ko" "/$rel" 0644 "$KERNEL_PKG"
        done <<<"$deps"
        MODS_INCLUDED+=("$name")
        [[ $load == 1 ]] && MODS_LOAD+=("${name//-/_}")
    done < <(read_list "$LISTS/modules.txt")
    for f in modules.order modules.builtin modules.builtin.modinfo; do
        install_file "$moddir/$f" "/lib/modules/$KVER/$f" 0644 "$KERNEL_PKG"
    done
    depmod -b "$STAGE" "$KVER"
    # Not needed at run time; keep the tree small and deterministic.
    rm -f "$STAGE/lib/modules/$KVER/modules.symbols" "$STAGE/lib/modules/$KVER/modules.symbols.bin"
    {
        echo "# Loaded by ipa-init after coldplug (generated from ramdisk/modules.txt, flag 'load')."
        printf '%s\n' "${MODS_LOAD[@]}"
    } >"$WORK/ipa-init-modules"
    install_file "$WORK/ipa-init-modules" /etc/ipa-init/modules 0644
}

check_firmware_sources() {
    [[ $FIRMWARE == 1 ]] || return 0
    if ! apt-cache policy 2>/dev/null | grep -q 'non-free-firmware'; then
        die "--firmware: the APT sources of this machine have no 'non-free-firmware' component
  (only: $(apt-cache policy 2>/dev/null | grep -o ',c=[^,]*' | cut -d= -f2 | sort -u | tr '\n' ' '))
  Add it, e.g. 'Components: main non-free-firmware' in /etc/apt/sources.list.d/debian.sources,
  run apt-get update, and build again."
    fi
}

stage_firmware() {
    [[ $FIRMWARE == 1 ]] || return 0
    local pkgs=() p
    while read -r p _; do pkgs+=("$p"); done < <(read_list "$LISTS/firmware.txt")
    pkg_meta "${pkgs[@]}" || die "--firmware: no APT candidate for: $PKG_MISSING"
    fetch "${pkgs[@]}"
    local ko fw found
    while IFS= read -r ko; do
        while IFS= read -r fw; do
            [[ -n $fw ]] || continue
            found=""
            for p in "${pkgs[@]}"; do
                for base in lib/firmware usr/lib/firmware; do
                    if [[ -e ${PKG_DIR[$p]}/$base/$fw ]]; then
                        found=${PKG_DIR[$p]}/$base/$fw
                        install_file "$found" "/lib/firmware/$fw" 0644 "$p"
                        FW_FILES+=("$fw")
                        break 2
                    fi
                done
            done
            [[ -n $found ]] || FW_MISSING+=("${ko##*/}:$fw")
        done < <(modinfo -F firmware "$ko" 2>/dev/null)
    done < <(find "$STAGE/lib/modules" -name '*.ko' | sort)
}

# Each module as .ko.xz (CRC32 check, 1 MiB dictionary: what the kernel's own xz loader would
# accept too), then depmod again so modules.dep names the .ko.xz files. xz per file is smaller
# than the modules inside the zstd-19 archive (measured 5.47 vs 5.71 MB) and the files stay
# compressed in RAM: ipa-init decompresses one when it inserts it (liblzma, in process).
compress_modules() {
    case $MODULE_COMPRESS in
        none) return 0 ;;
        xz) ;;
        *) die "--module-compress: xz or none, not '$MODULE_COMPRESS'" ;;
    esac
    local ko
    while IFS= read -r ko; do
        xz -q -T1 --check=crc32 --lzma2=preset=9e,dict=1MiB "$ko" ||
            die "xz failed on $ko"
    done < <(find "$STAGE/lib/modules" -name '*.ko' | sort)
    depmod -b "$STAGE" "$KVER"
    rm -f "$STAGE/lib/modules/$KVER/modules.symbols" "$STAGE/lib/modules/$KVER/modules.symbols.bin"
}

selected_tools() {
    local pkg src dst why opt
    while read -r pkg src dst why; do
        opt=""
        [[ $why == *" optional" || $why == optional ]] && opt=optional
        why=${why% optional}
        wanted tool "${dst##*/}" $opt || continue
        printf '%s\t%s\t%s\t%s\n' "$pkg" "$src" "$dst" "$why"
    done < <(read_list "$LISTS/tools.txt")
}

stage_tools() {
    local pkg src dst why pkgs=()
    while IFS=$'\t' read -r pkg src dst why; do
        [[ $pkg == symlink ]] && continue
        [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
    done < <(selected_tools)
    fetch "${pkgs[@]}"
    TOOL_ROWS=()
    while IFS=$'\t' read -r pkg src dst why; do
        if [[ $pkg == symlink ]]; then
            mkdir -p "$STAGE$(dirname "$dst")"
            ln -sfn "$src" "$STAGE$dst"
            TOOL_ROWS+=("$dst"$'\t'"-> $src"$'\t'"$why")
            continue
        fi
        local f=${PKG_DIR[$pkg]}/$src
        [[ -e $f ]] || die "$pkg has no $src (ramdisk/tools.txt)"
        install_file "$f" "$dst" 0755 "$pkg"
        TOOL_ROWS+=("$dst"$'\t'"$pkg"$'\t'"$why")
    done < <(selected_tools)
}

# busybox applets as relative symlinks wherever no real program of that name is installed.
stage_busybox() {
    local bb=$STAGE/bin/busybox applet name existing
    [[ -x $bb ]] || die "busybox is not in tools.txt"
    local -A have=()
    while IFS= read -r existing; do have[${existing##*/}]=1; done < <(
        find "$STAGE/bin" "$STAGE/sbin" "$STAGE/usr/bin" "$STAGE/usr/sbin" \( -type f -o -type l \) 2>/dev/null)
    BB_APPLETS=0
    while IFS= read -r applet; do
        name=${applet##*/}
        [[ $name == busybox || $name == linuxrc || -n ${have[$name]:-} ]] && continue
        local dir=${applet%/*}
        [[ $dir == "$applet" ]] && continue
        local up
        up=$(sed 's|[^/]*|..|g' <<<"$dir")
        mkdir -p "$STAGE/$dir"
        ln -s "$up/bin/busybox" "$STAGE/$applet"
        have[$name]=1
        BB_APPLETS=$((BB_APPLETS + 1))
    done < <("$bb" --list-full | sort)
}

# Library closure: every NEEDED soname of every ELF, from the packages of packages.txt.
declare -A LIB_INDEX LIB_PKG
stage_libs() {
    local pkg lp=()
    while read -r pkg _; do lp+=("$pkg"); done < <(read_list "$LISTS/packages.txt")
    fetch "${lp[@]}"
    local f so dir
    for pkg in "${lp[@]}" "${PKG_ORDER[@]}"; do
        for dir in lib/$ARCH usr/lib/$ARCH lib64 lib usr/lib; do
            [[ -d ${PKG_DIR[$pkg]}/$dir ]] || continue
            while IFS= read -r f; do
                so=${f##*/}
                [[ -z ${LIB_INDEX[$so]:-} ]] || continue
                LIB_INDEX[$so]=$f
                LIB_PKG[$so]=$pkg
            done < <(find "${PKG_DIR[$pkg]}/$dir" -maxdepth 1 \( -type f -o -type l \) -name '*.so*' | sort)
        done
    done
    local queue=() seen_libs=" "
    while IFS= read -r f; do is_elf "$f" && queue+=("$f"); done < <(
        find "$STAGE" -path "$STAGE/lib/modules" -prune -o -type f -print | sort)
    for so in ld-linux-x86-64.so.2 libc.so.6; do queue+=("@$so"); done
    UNRESOLVED=()
    while [[ ${#queue[@]} -gt 0 ]]; do
        f=${queue[0]}
        queue=("${queue[@]:1}")
        local needed
        if [[ $f == @* ]]; then
            needed=${f#@}
        else
            needed=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
        fi
        for so in $needed; do
            [[ $seen_libs == *" $so "* ]] && continue
            seen_libs+="$so "
            if [[ -z ${LIB_INDEX[$so]:-} ]]; then
                UNRESOLVED+=("$so (needed by ${f#"$STAGE"})")
                continue
            fi
            local mode=0644
            [[ $so == ld-linux* ]] && mode=0755
            install_file "${LIB_INDEX[$so]}" "/lib/$ARCH/$so" "$mode" "${LIB_PKG[$so]}"
            queue+=("$STAGE/lib/$ARCH/$so")
        done
    done
    mkdir -p "$STAGE/lib64"
    ln -sfn ../lib/$ARCH/ld-linux-x86-64.so.2 "$STAGE/lib64/ld-linux-x86-64.so.2"
}

stage_ca_certs() {
    [[ $CA_CERTS == 1 ]] || return 0
    fetch ca-certificates
    local d=${PKG_DIR[ca-certificates]}/usr/share/ca-certificates
    mkdir -p "$STAGE/etc/ssl/certs"
    find "$d" -name '*.crt' | sort | xargs cat >"$STAGE/etc/ssl/certs/ca-certificates.crt"
    chmod 0644 "$STAGE/etc/ssl/certs/ca-certificates.crt"
    FILE_PKG[/etc/ssl/certs/ca-certificates.crt]=ca-certificates
}

stage_init_files() {
    local manifest=$ROOT/crates/ipa-init/files/MANIFEST src dst mode
    [[ -f $manifest ]] || { warn "no crates/ipa-init/files/MANIFEST: no extra ipa-init files"; return 0; }
    while read -r src dst mode _; do
        [[ -z ${src:-} || $src == \#* ]] && continue
        [[ $dst == /* && $mode =~ ^[0-7]{3,4}$ ]] || die "MANIFEST: bad line '$src $dst $mode'"
        [[ -e $ROOT/crates/ipa-init/files/$src ]] || die "MANIFEST: crates/ipa-init/files/$src is missing"
        if [[ -e $STAGE$dst && $dst != /etc/ipa-init/modules ]]; then
            warn "MANIFEST: $dst from ipa-init replaces the builder's copy"
        fi
        install_file "$ROOT/crates/ipa-init/files/$src" "$dst" "$mode" ipa-init
    done <"$manifest"
    check_init_module_list
}

# ipa-init's own /etc/ipa-init/modules (MANIFEST) wins over the one made from the `load` flags;
# report modules it names that the ramdisk lacks, and `load` modules it does not name.
INIT_LIST_MISSING=()
INIT_LIST_UNNAMED=()
check_init_module_list() {
    local list=$STAGE/etc/ipa-init/modules m
    INIT_LIST_MISSING=() INIT_LIST_UNNAMED=()
    local names
    names=$(init_list_names | tr - _)
    for m in $names; do
        modprobe -d "$STAGE" -S "$KVER" --show-depends "$m" >/dev/null 2>&1 || INIT_LIST_MISSING+=("$m")
    done
    for m in "${MODS_LOAD[@]}"; do
        grep -qx "$m" <<<"$names" || INIT_LIST_UNNAMED+=("$m")
    done
    [[ ${#INIT_LIST_MISSING[@]} -eq 0 ]] ||
        warn "/etc/ipa-init/modules names modules that are not in the ramdisk: ${INIT_LIST_MISSING[*]}"
    [[ ${#INIT_LIST_UNNAMED[@]} -eq 0 ]] ||
        warn "modules flagged 'load' in ramdisk/modules.txt but not in ipa-init's /etc/ipa-init/modules (coldplug or ipa-init.modules= must load them): ${INIT_LIST_UNNAMED[*]}"
    return 0
}

strip_elfs() {
    local f
    while IFS= read -r f; do
        is_elf "$f" || continue
        strip --strip-unneeded "$f" 2>/dev/null || warn "strip failed on ${f#"$STAGE"}"
    done < <(find "$STAGE" -path "$STAGE/lib/modules" -prune -o -type f -print | sort)
}

# Every NEEDED soname of every ELF resolves inside the tree, and the interpreter exists.
verify_elfs() {
    local f so interp problems=()
    for so in "${UNRESOLVED[@]}"; do problems+=("no package of ramdisk/packages.txt provides $so"); done
    while IFS= read -r f; do
        is_elf "$f" || continue
        local rel=${f#"$STAGE"}
        for so in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            [[ -e $STAGE/lib/$ARCH/$so || -e $STAGE/usr/lib/$ARCH/$so || -e $STAGE/lib64/$so ]] ||
                problems+=("$rel: NEEDED $so is not in the ramdisk")
        done
        interp=$(readelf -l "$f" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
        if [[ -n $interp && ! -e $STAGE$interp ]]; then
            problems+=("$rel: interpreter $interp is not in the ramdisk")
        fi
    done < <(find "$STAGE" -path "$STAGE/lib/modules" -prune -o -type f -print | sort)
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '  %s\n' "${problems[@]}" | sort -u >&2
        die "unresolved shared libraries (find a soname's package with 'dpkg -S SONAME' and add it to ramdisk/packages.txt)"
    fi
}

stage_static() {
    # Static files of the builder (passwd, group, shadow, hosts, ...).
    (cd "$LISTS/rootfs" && find . -type f | sort) | while IFS= read -r f; do
        local mode=0644
        [[ $f == ./etc/shadow ]] && mode=0600
        install_file "$LISTS/rootfs/${f#./}" "${f#.}" "$mode"
    done
    cat >"$WORK/os-release" <<EOF
PRETTY_NAME="ipa-rs deploy ramdisk"
NAME="ipa-rs ramdisk"
ID=ipa-rs
ID_LIKE=debian
VERSION_ID="$(awk -F'"' '/^version = /{print $2; exit}' "$ROOT/Cargo.toml")"
BUILD_ID="${COMMIT:0:12}"
VARIANT="$PACKAGE/$BIN ${FEATURES:-no-features}"
HOME_URL="https://opendev.org/openstack/ironic-python-agent"
EOF
    install_file "$WORK/os-release" /etc/os-release 0644
    local d
    for d in proc sys dev run tmp var/lib var/log root mnt home/rescue etc/ipa-rescue-config usr/lib/firmware; do
        mkdir -p "$STAGE/$d"
    done
    chmod 1777 "$STAGE/tmp"
    chmod 0700 "$STAGE/root"
    chmod 0750 "$STAGE/home/rescue"
    # ipa-init runs as PID 1 and chown happens at run time; cpio -R 0:0 makes everything root's.
    ln -sfn ../run "$STAGE/var/run"
}

assemble() { # $1 = staging dir
    STAGE=$1
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    FILE_PKG=()
    stage_static
    install_file "$AGENT_SRC" /usr/bin/ipa-agent 0755 "cargo:$PACKAGE"
    install_file "$INIT_SRC" /init 0755 "cargo:ipa-init"
    stage_modules
    stage_firmware
    compress_modules
    stage_tools
    stage_ca_certs
    stage_init_files
    stage_libs
    strip_elfs
    stage_busybox
    verify_elfs
    # Normalise: modes of directories, every mtime = SOURCE_DATE_EPOCH.
    find "$STAGE" -type d ! -path "$STAGE/tmp" ! -path "$STAGE/root" ! -path "$STAGE/home/rescue" -exec chmod 0755 {} +
    find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# ---------------------------------------------------------------------------------------------
# 4. packing: [uncompressed mini cpio: dev, dev/console] + one compressed newc cpio per part
#    (base, modules, agent). The kernel unpacks concatenated archives in order; the parts make
#    the size breakdown exact.
newc_entry() { # name mode(hex) nlink rdevmajor rdevminor ino
    local name=$1 namesize=$((${#1} + 1)) pad
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$6" "$((16#$2))" 0 0 "$3" "$SOURCE_DATE_EPOCH" 0 0 0 "$4" "$5" "$namesize" 0
    printf '%s\0' "$name"
    pad=$(((4 - (110 + namesize) % 4) % 4))
    [[ $pad -gt 0 ]] && head -c "$pad" /dev/zero
    return 0
}
devnodes_cpio() {
    newc_entry dev 41ED 2 0 0 1
    newc_entry dev/console 2180 1 5 1 2
    newc_entry TRAILER!!! 0 1 0 0 0
}

compress() {
    case $COMPRESS in
        zstd) zstd -q -"$LEVEL" -T1 -c $([[ $LEVEL -gt 19 ]] && echo --ultra) ;;
        gzip) gzip -n -"$LEVEL" -c ;;
    esac
}

PART_NAMES=(base modules agent)
part_of() { # path relative to the root, no leading slash
    case $1 in
        lib/modules | lib/modules/* | lib/firmware | lib/firmware/*) echo modules ;;
        usr/bin/ipa-agent) echo agent ;;
        *) echo base ;;
    esac
}

declare -A PART_RAW PART_COMP
pack() { # staging dir, output file
    local stage=$1 outf=$2 p
    local lists=$WORK/lists
    rm -rf "$lists"
    mkdir -p "$lists"
    for p in "${PART_NAMES[@]}"; do : >"$lists/$p"; done
    (cd "$stage" && find . -mindepth 1 | sed 's|^\./||' | sort) | while IFS= read -r e; do
        echo "$e" >>"$lists/$(part_of "$e")"
    done
    # The agent's and the modules' parent directories are in base; repeat them in the parts
    # so that each archive stands alone (the kernel ignores an existing directory).
    local tmp=$outf.tmp
    devnodes_cpio >"$tmp"
    for p in "${PART_NAMES[@]}"; do
        local list=$lists/$p
        if [[ $p != base ]]; then
            awk -F/ '{ path=""; for (i=1; i<NF; i++) { path = (i==1 ? $1 : path "/" $i); print path } }' \
                "$list" | sort -u >"$list.dirs"
            sort -u "$list.dirs" "$list" -o "$list"
        fi
        (cd "$stage" && cpio -o -H newc --reproducible -R 0:0 --quiet <"$list") >"$WORK/part.$p.cpio"
        PART_RAW[$p]=$(stat -c %s "$WORK/part.$p.cpio")
        compress <"$WORK/part.$p.cpio" >"$WORK/part.$p.c"
        PART_COMP[$p]=$(stat -c %s "$WORK/part.$p.c")
        # Archives must start 4-byte aligned.
        local cur
        cur=$(stat -c %s "$tmp")
        [[ $((cur % 4)) -ne 0 ]] && head -c $((4 - cur % 4)) /dev/zero >>"$tmp"
        cat "$WORK/part.$p.c" >>"$tmp"
        rm -f "$WORK/part.$p.cpio" "$WORK/part.$p.c"
    done
    mv "$tmp" "$outf"
}

# ---------------------------------------------------------------------------------------------
# 5. manifest
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\n'/\\n}
    printf '"%s"' "$s"
}
json_arr() { # items...
    local first=1 x
    printf '['
    for x in "$@"; do
        [[ $first == 1 ]] || printf ', '
        first=0
        json_str "$x"
    done
    printf ']'
}

write_manifest() {
    local img=$OUT/ipa-rs.initramfs kern=$OUT/ipa-rs.kernel
    local img_sha kern_sha img_size kern_size raw_total=0 p
    img_sha=$(sha256sum "$img" | cut -d' ' -f1)
    kern_sha=$(sha256sum "$kern" | cut -d' ' -f1)
    img_size=$(stat -c %s "$img")
    kern_size=$(stat -c %s "$kern")
    for p in "${PART_NAMES[@]}"; do raw_total=$((raw_total + PART_RAW[$p])); done
    local agent_size init_size script_sha
    agent_size=$(stat -c %s "$STAGE/usr/bin/ipa-agent")
    init_size=$(stat -c %s "$STAGE/init")
    script_sha=$(sha256sum "$ROOT/scripts/build-ramdisk.sh" | cut -d' ' -f1)
    local files
    files=$(cd "$STAGE" && find . -mindepth 1 | sed 's|^\./|/|' | sort)
    {
        printf '{\n'
        printf '  "format": 1,\n'
        printf '  "builder": {"script": "scripts/build-ramdisk.sh", "script_sha256": "%s", "commit": "%s", "dirty": %s},\n' \
            "$script_sha" "$COMMIT" "$DIRTY"
        printf '  "source_date_epoch": %s,\n' "$SOURCE_DATE_EPOCH"
        printf '  "agent": {"package": %s, "bin": %s, "features": %s, "profile": "%s", "size": %s, "sha256": "%s"},\n' \
            "$(json_str "$PACKAGE")" "$(json_str "$BIN")" "$(json_arr ${FEATURES//,/ })" \
            "$([[ $SMALL == 1 ]] && echo ramdisk-agent+lto=fat,codegen-units=1 || echo ramdisk-agent)" "$agent_size" \
            "$(sha256sum "$STAGE/usr/bin/ipa-agent" | cut -d' ' -f1)"
        printf '  "init": {"source": %s, "size": %s, "sha256": "%s"},\n' \
            "$(json_str "$([[ -n $INIT_FILE ]] && echo "file:$INIT_FILE" || echo cargo:ipa-init)")" "$init_size" \
            "$(sha256sum "$STAGE/init" | cut -d' ' -f1)"
        printf '  "kernel": {"package": %s, "version": %s, "release": %s, "file": "ipa-rs.kernel", "size": %s, "sha256": "%s"},\n' \
            "$(json_str "$KERNEL_PKG")" "$(json_str "${PKG_VER[$KERNEL_PKG]}")" "$(json_str "$KVER")" "$kern_size" "$kern_sha"
        printf '  "initramfs": {"file": "ipa-rs.initramfs", "compression": "%s", "level": %s, "size": %s, "uncompressed": %s, "sha256": "%s",\n' \
            "$COMPRESS" "$LEVEL" "$img_size" "$raw_total" "$img_sha"
        printf '    "parts": ['
        local first=1
        for p in "${PART_NAMES[@]}"; do
            [[ $first == 1 ]] || printf ', '
            first=0
            printf '{"name": "%s", "uncompressed": %s, "compressed": %s}' "$p" "${PART_RAW[$p]}" "${PART_COMP[$p]}"
        done
        printf ']},\n'
        printf '  "firmware": {"enabled": %s, "files": %s, "missing": %s},\n' \
            "$([[ $FIRMWARE == 1 ]] && echo true || echo false)" "$(json_arr "${FW_FILES[@]}")" "$(json_arr "${FW_MISSING[@]}")"
        printf '  "modules": {"compression": "%s", "included": %s,\n    "skipped": %s,\n    "init_list": {"from": "%s", "names": %s, "load_flagged_not_listed": %s, "listed_not_included": %s}},\n' \
            "$MODULE_COMPRESS" "$(json_arr "${MODS_INCLUDED[@]}")" "$(json_arr "${MODS_SKIPPED[@]}")" \
            "$(file_source /etc/ipa-init/modules)" "$(json_arr $(init_list_names))" \
            "$(json_arr "${INIT_LIST_UNNAMED[@]}")" "$(json_arr "${INIT_LIST_MISSING[@]}")"
        printf '  "packages": [\n'
        first=1
        for p in $(printf '%s\n' "${PKG_ORDER[@]}" | sort); do
            [[ $first == 1 ]] || printf ',\n'
            first=0
            printf '    {"name": %s, "version": %s, "arch": "%s", "deb": %s, "sha256": "%s", "files_in_ramdisk": %s}' \
                "$(json_str "$p")" "$(json_str "${PKG_VER[$p]}")" "${PKG_ARCH[$p]}" \
                "$(json_str "${PKG_FILE[$p]}")" "${PKG_SHA[$p]}" "$(pkg_uses "$p")"
        done
        printf '\n  ],\n  "files": [\n'
        first=1
        local f
        while IFS= read -r f; do
            local s=$STAGE$f type size=0 extra=""
            if [[ -L $s ]]; then
                type=symlink
                extra=", \"target\": $(json_str "$(readlink "$s")")"
            elif [[ -d $s ]]; then
                type=dir
            else
                type=file
                size=$(stat -c %s "$s")
            fi
            [[ $first == 1 ]] || printf ',\n'
            first=0
            printf '    {"path": %s, "type": "%s", "mode": "%s", "size": %s%s%s}' "$(json_str "$f")" "$type" \
                "$(stat -c %a "$s")" "$size" "$extra" \
                "$([[ -n ${FILE_PKG[$f]:-} ]] && printf ', "from": %s' "$(json_str "${FILE_PKG[$f]}")")"
        done <<<"$files"
        printf ',\n    {"path": "/dev/console", "type": "char", "mode": "600", "size": 0, "rdev": "5:1"}'
        printf '\n  ]\n}\n'
    } >"$OUT/manifest.json"

    {
        echo "ipa-rs deploy ramdisk"
        echo "builder:            scripts/build-ramdisk.sh at $COMMIT$([[ $DIRTY == true ]] && echo ' (dirty tree)')"
        echo "SOURCE_DATE_EPOCH:  $SOURCE_DATE_EPOCH"
        echo "agent:              $PACKAGE/$BIN features=[${FEATURES}]$([[ $SMALL == 1 ]] && echo ' small-agent') $(human "$agent_size") ($agent_size bytes, stripped)"
        echo "init:               $([[ -n $INIT_FILE ]] && echo "$INIT_FILE (stand-in)" || echo ipa-init) $(human "$init_size")"
        echo "kernel:             $KERNEL_PKG ${PKG_VER[$KERNEL_PKG]} ($KVER) $(human "$kern_size")  sha256 $kern_sha"
        echo "initramfs:          $COMPRESS -$LEVEL $(human "$img_size") ($img_size bytes; uncompressed $(human "$raw_total"))  sha256 $img_sha"
        echo
        printf '%-10s %14s %14s\n' part uncompressed compressed
        for p in "${PART_NAMES[@]}"; do
            printf '%-10s %14s %14s\n' "$p" "$(human "${PART_RAW[$p]}")" "$(human "${PART_COMP[$p]}")"
        done
        echo
        echo "base part by directory (uncompressed):"
        for d in bin sbin usr/sbin usr/bin lib/$ARCH etc init; do
            [[ -e $STAGE/$d ]] || continue
            printf '  %-22s %s\n' "/$d" "$(human "$(du -sb --apparent-size "$STAGE/$d" | cut -f1)")"
        done
        echo
        echo "tools:"
        local row
        for row in "${TOOL_ROWS[@]}"; do
            IFS=$'\t' read -r dst src why <<<"$row"
            local sz=""
            [[ -f $STAGE$dst && ! -L $STAGE$dst ]] && sz=$(human "$(stat -c %s "$STAGE$dst")")
            printf '  %-24s %-16s %8s  %s\n' "$dst" "$src" "$sz" "$why"
        done
        echo "  + $BB_APPLETS busybox applet links"
        echo
        echo "modules included (${#MODS_INCLUDED[@]}; $(find "$STAGE/lib/modules" -name '*.ko*' | wc -l) module files with dependencies, compression $MODULE_COMPRESS): ${MODS_INCLUDED[*]}"
        echo "modules skipped: ${MODS_SKIPPED[*]:-none}"
        echo "/etc/ipa-init/modules ($(file_source /etc/ipa-init/modules)): $(init_list_names | tr '\n' ' ')"
        [[ ${#INIT_LIST_UNNAMED[@]} -eq 0 ]] || echo "flagged 'load' in ramdisk/modules.txt but not in that list: ${INIT_LIST_UNNAMED[*]}"
        [[ ${#INIT_LIST_MISSING[@]} -eq 0 ]] || echo "named in that list but not in the ramdisk: ${INIT_LIST_MISSING[*]}"
        [[ $FIRMWARE == 1 ]] && echo "firmware files: ${#FW_FILES[@]}; named by modules but not packaged: ${FW_MISSING[*]:-none}"
        echo
        echo "packages:"
        for p in $(printf '%s\n' "${PKG_ORDER[@]}" | sort); do
            printf '  %-32s %-28s %s %4s files\n' "$p" "${PKG_VER[$p]}" "${PKG_SHA[$p]}" "$(pkg_uses "$p")"
        done
        echo
        echo "files:"
        while IFS= read -r f; do
            local s=$STAGE$f
            if [[ -L $s ]]; then
                printf '  %10s  %s -> %s\n' "" "$f" "$(readlink "$s")"
            elif [[ -d $s ]]; then
                printf '  %10s  %s/\n' "" "$f"
            else
                printf '  %10s  %s\n' "$(stat -c %s "$s")" "$f"
            fi
        done <<<"$files"
        printf '  %10s  %s\n' "c 5:1" /dev/console
    } >"$OUT/manifest.txt"
}

pkg_uses() { # number of ramdisk files taken from package $1
    local k n=0
    for k in "${!FILE_PKG[@]}"; do [[ ${FILE_PKG[$k]} == "$1" ]] && n=$((n + 1)); done
    echo "$n"
}
init_list_names() { sed 's/#.*//' "$STAGE/etc/ipa-init/modules" | awk 'NF { print $1 }'; }
file_source() { [[ ${FILE_PKG[$1]:-} == ipa-init ]] && echo "ipa-init MANIFEST" || echo "ramdisk/modules.txt"; }
human() { awk -v b="$1" 'BEGIN{ if (b >= 1048576) printf "%.2f MiB", b/1048576; else printf "%.1f KiB", b/1024 }'; }

# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK"
check_firmware_sources
build_binaries
resolve_kernel
log "assembling the tree (kernel $KVER)"
assemble "$WORK/root"
cp "$KDIR/boot/vmlinuz-$KVER" "$OUT/ipa-rs.kernel"
chmod 0644 "$OUT/ipa-rs.kernel"
log "packing ($COMPRESS -$LEVEL)"
pack "$WORK/root" "$OUT/ipa-rs.initramfs"
write_manifest

if [[ $CHECK_REPRO == 1 ]]; then
    log "reproducibility: assembling and packing a second time"
    first=$(sha256sum "$OUT/ipa-rs.initramfs" | cut -d' ' -f1)
    declare -A SAVE_RAW SAVE_COMP
    for p in "${PART_NAMES[@]}"; do SAVE_RAW[$p]=${PART_RAW[$p]}; SAVE_COMP[$p]=${PART_COMP[$p]}; done
    assemble "$WORK/root2"
    pack "$WORK/root2" "$WORK/ipa-rs.initramfs.2"
    second=$(sha256sum "$WORK/ipa-rs.initramfs.2" | cut -d' ' -f1)
    if [[ $first != "$second" ]]; then
        diff <(cd "$WORK/root" && find . -printf '%p %s %m %T@ %l\n' | sort) \
            <(cd "$WORK/root2" && find . -printf '%p %s %m %T@ %l\n' | sort) >&2 || true
        die "not reproducible: $first != $second"
    fi
    rm -rf "$WORK/root2" "$WORK/ipa-rs.initramfs.2"
    echo "reproducible: two assemblies gave sha256 $first"
    STAGE=$WORK/root
fi

T1=$(date +%s)
img_size=$(stat -c %s "$OUT/ipa-rs.initramfs")
sed -n '1,/^$/p' "$OUT/manifest.txt" | sed '$d'
echo
printf '%-10s %14s %14s\n' part uncompressed compressed
for p in "${PART_NAMES[@]}"; do
    printf '%-10s %14s %14s\n' "$p" "$(human "${PART_RAW[$p]}")" "$(human "${PART_COMP[$p]}")"
done
echo "written: $OUT/ipa-rs.kernel $OUT/ipa-rs.initramfs $OUT/manifest.json $OUT/manifest.txt ($((T1 - T0)) s)"
if [[ $img_size -gt $((MAX_MB * 1048576)) ]]; then
    warn "initramfs is $(human "$img_size"), over the ${MAX_MB} MiB target"
fi
