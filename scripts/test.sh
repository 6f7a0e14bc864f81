#!/usr/bin/env bash
# The whole test suite, real components included: a real Ironic (PyPI, in a venv), a real
# RabbitMQ (started by the tests on a loopback port, stopped by PID), real libzmq, real HTTP over
# loopback, and the VM lab (crates/ipa-vm-lab): QEMU/OVMF VMs under TCG in a network namespace,
# powered by sushy-tools over libvirt, booted over PXE/iPXE by a real Ironic into the ramdisk
# built here. Nothing touches a real disk, bootloader or power state: VM disks are files.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- <args>  extra arguments for `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

export IPA_IRONIC_VENV="${IPA_IRONIC_VENV:-/opt/ironic-venv}"
# Debian packages (installed if missing when run as root) and Ironic 39.0.0 in a venv.
scripts/setup-test-deps.sh
# The real-Ironic tests find the venv here, and fail (instead of printing SKIP) without it.
export IRONIC_VENV="$IPA_IRONIC_VENV" IRONIC_E2E_REQUIRED=1

# The deploy ramdisk the VM lab boots (kernel + initramfs under target/ramdisk, cached debs).
scripts/build-ramdisk.sh --out target/ramdisk
export IPA_RAMDISK_DIR="$PWD/target/ramdisk"

# 1. Every crate, every feature: unit, integration, conformance, real-component tests.
cargo test --workspace --all-features --locked --no-fail-fast "${extra[@]}"

# 2. The registered-plugin check for the other feature sets of the agent binary.
cargo test -p ipa-agent --locked --test registered_plugins
cargo test -p ipa-agent --locked --no-default-features --test registered_plugins
for f in transport-amqp transport-zmq hw-sim hw-generic hw-mellanox hw-intel-cna hw-container; do
  if grep -q "^$f = \[\"dep:" crates/ipa-agent/Cargo.toml; then
    cargo test -p ipa-agent --locked --no-default-features --features "$f" --test registered_plugins
  fi
done
# 3. The README's first command, verbatim, driven with its curl lines.
tests/readme_commands.sh

echo "all tests passed"
