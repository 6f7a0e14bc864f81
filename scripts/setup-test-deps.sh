#!/usr/bin/env bash
# Everything the test suite needs beyond Rust: Debian packages (installed when missing, if we are
# root; otherwise the apt line is printed) and a stock Ironic from PyPI in a venv.
# Idempotent and quick when everything is present. Used by scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS=(
  pkg-config libzmq3-dev libsodium-dev   # zmq crate links Debian's libzmq (CURVE), see .cargo/config.toml
  rabbitmq-server                        # real broker for the AMQP transport tests
  gdisk parted fdisk dosfstools mtools xorriso genisoimage  # partition tables, config-drive ISOs
  zstd xz-utils bzip2 qemu-utils         # test images in every format
  e2fsprogs util-linux                   # mkfs.ext4, mkswap, wipefs: signatures the metadata wipe must remove
  iproute2 curl wrk python3-venv tar
)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing packages; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
# QEMU, OVMF, libvirt, dnsmasq, sushy-tools and the ramdisk builders' tools (VM lab).
scripts/setup-vm-lab.sh
scripts/setup-ironic-venv.sh "${IPA_IRONIC_VENV:-/opt/ironic-venv}"
