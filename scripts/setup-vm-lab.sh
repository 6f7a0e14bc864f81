#!/usr/bin/env bash
# What the VM lab (crates/ipa-vm-lab) and the ramdisk builder need on the host: QEMU (TCG),
# OVMF, iPXE, dnsmasq, libvirt (started by the tests, never as a service), tools the builders
# run (kmod's depmod, cpio, zstd, objcopy, sgdisk, mtools), and sushy-tools (Redfish BMC
# emulator) in a venv made from Debian's python3 so it uses Debian's python3-libvirt.
# Idempotent; quick when everything is present. Called by scripts/setup-test-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SUSHY_VENV="${SUSHY_VENV:-/opt/sushy-venv}"
APT_PKGS=(
  qemu-system-x86 ovmf ipxe                  # the VMs: TCG, UEFI firmware, iPXE for PXE clients
  dnsmasq-base                               # DHCP + TFTP on the lab bridge
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients python3-libvirt
  python3-venv iproute2                      # sushy-tools venv; namespaces, bridges
  kmod cpio zstd binutils gdisk dosfstools mtools genisoimage  # ramdisk and test-image builders
  busybox-static dhcpcd-base                 # ipa-init tests: DHCPv4/DHCPv6 clients in a chroot
  socat openssl                              # Ironic behind TLS (Metal3 style), its private CA
)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing qemu-system-x86 removes a preinstalled backported qemu-utils; the tests need qemu-img.
if ! command -v qemu-img >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends qemu-utils >/dev/null
fi
command -v qemu-img >/dev/null
if [ ! -x "$SUSHY_VENV/bin/sushy-emulator" ]; then
  echo "installing sushy-tools into $SUSHY_VENV"
  /usr/bin/python3 -m venv --system-site-packages "$SUSHY_VENV"
  "$SUSHY_VENV/bin/pip" install -q --disable-pip-version-check sushy-tools==2.2.0
fi
"$SUSHY_VENV/bin/python" -c 'import libvirt, sushy_tools' 
