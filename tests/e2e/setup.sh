#!/usr/bin/env bash
# Installs what the end-to-end and Python tests need on a Debian machine:
# Prometheus and promtool (Debian's prometheus package), Chromium (Debian's
# chromium package, for the map page test) and a Python virtual environment
# (.venv at the repository root) with tests/e2e/requirements.txt.
# Run as root. Running it again changes nothing that is already in place.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: installing $* needs root (apt-get)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${apt_updated:-}" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update
    apt_updated=1
  fi
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@"
}

# Prometheus server and promtool. The package may try to start its own
# service; the tests start their own instance on a loopback port of theirs.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  apt_install prometheus
fi
prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1

# Chromium for the map page test (tests/e2e/test_map_page.py), driven by
# Playwright over the DevTools protocol: Debian's browser, not a download.
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1 || true

# Python virtual environment with the pinned requirements.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -m pytest --version
