#!/usr/bin/env bash
# Install a stock Ironic from PyPI into a venv (default /opt/ironic-venv): the test oracle for
# every Ironic flow. Idempotent: does nothing when the venv already has ironic 39.0.0.
set -euo pipefail
VENV="${1:-${IPA_IRONIC_VENV:-/opt/ironic-venv}}"
IRONIC_VERSION="${IRONIC_VERSION:-39.0.0}"
installed=$("$VENV/bin/pip" show ironic 2>/dev/null || true)   # no pipe: grep -q + pipefail = SIGPIPE
if [ -x "$VENV/bin/ironic-api" ] && grep -qx "Version: $IRONIC_VERSION" <<<"$installed"; then
  echo "ironic $IRONIC_VERSION already in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "ironic==$IRONIC_VERSION"
echo "installed ironic $IRONIC_VERSION into $VENV"
