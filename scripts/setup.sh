#!/usr/bin/env bash
# Create ./.venv and install telepi into it. Works on a fresh Debian/Ubuntu machine with only python3:
# as root it installs the missing system packages itself (python3-venv; for dev also gcc, python3-dev,
# libsystemd-dev and pkg-config so the journald extra and the deploy's wheels can build, postgresql and chromium
# for the tests). Usage: scripts/setup.sh [runtime|dev]
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

# systemd-python (the journald extra; also in the wheels the deploy builds) compiles from source.
build_tools_present() {
    command -v gcc >/dev/null && pkg-config --exists libsystemd 2>/dev/null &&
        .venv/bin/python -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))'
}

extras=""
if [ "$profile" = dev ]; then
    extras="dev"
    # PostgreSQL's binaries: the tests start their own throwaway server with them (tests/pgserver.py), never
    # the cluster the package may start. Without them the PostgreSQL half of the tests is skipped, said once.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql ||
        echo "setup: the PostgreSQL tests need Debian's postgresql package: run 'sudo apt-get install postgresql' (continuing without it)" >&2
    # Debian's Chromium: tests/engine/test_web.py loads the status page in it, headless. Without it that test is
    # skipped here (said once); under CI it fails, so CI always runs it.
    command -v chromium >/dev/null || apt_install chromium ||
        echo "setup: the status page's browser test needs Debian's chromium package: run 'sudo apt-get install chromium' (continuing without it)" >&2
    if build_tools_present || apt_install gcc python3-dev libsystemd-dev pkg-config; then
        extras="dev,journald"
    else
        echo "setup: the journald extra needs a C compiler and headers: run 'sudo apt-get install gcc python3-dev libsystemd-dev pkg-config' and retry (continuing without it)" >&2
    fi
fi

# Reinstall only when the project's metadata or the wanted extras changed since the last install; the stamp
# records what was installed, so an extra that failed to build is tried again on the next run.
stamp=".venv/.telepi-installed"
hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$profile $extras $hash" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    if ! .venv/bin/python -m pip install -q -e "$spec" 2>/tmp/telepi-pip.log; then
        if [ "$extras" = "dev,journald" ]; then
            echo "setup: the journald extra did not build (see /tmp/telepi-pip.log); continuing without it, the next run tries again" >&2
            .venv/bin/python -m pip install -q -e ".[dev]"
            extras="dev"
        else
            cat /tmp/telepi-pip.log >&2
            exit 1
        fi
    fi
    echo "$profile $extras $hash" >"$stamp"
fi
