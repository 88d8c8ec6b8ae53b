#!/usr/bin/env bash
# Create ./.venv and install telepi into it. Works on a fresh Debian/Ubuntu machine with only python3:
# as root it installs the missing system packages itself (python3-venv; libsystemd-dev and pkg-config so
# the optional journald extra can build). Usage: scripts/setup.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-runtime}
python=${PYTHON:-python3}

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing system packages: $*" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
    else
        return 1
    fi
}

if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv || { echo "setup: run 'sudo apt-get install python3-venv' and retry" >&2; exit 1; }
        "$python" -m venv .venv
    fi
fi

extras=""
if [ "$profile" = dev ]; then
    extras="dev"
    # systemd-python (journald logging) builds from source; it is optional, telepi falls back to stderr.
    if pkg-config --exists libsystemd 2>/dev/null || apt_install libsystemd-dev pkg-config; then
        extras="dev,journald"
    fi
fi

# Reinstall only when the project's metadata changed since the last install.
stamp=".venv/.telepi-installed"
want="$profile $extras $(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    if ! .venv/bin/python -m pip install -q -e "$spec" 2>/tmp/telepi-pip.log; then
        if [ "$extras" = "dev,journald" ]; then
            echo "setup: the journald extra did not build (see /tmp/telepi-pip.log); continuing without it" >&2
            .venv/bin/python -m pip install -q -e ".[dev]"
        else
            cat /tmp/telepi-pip.log >&2
            exit 1
        fi
    fi
    echo "$want" >"$stamp"
fi
