#!/usr/bin/env bash
# Build telepi's wheel and the wheels of everything it needs (the journald and postgres extras included) into WHEEL_DIR,
# on the control machine, so the host installs with `pip install --no-index` and needs no compiler.
# Usage: build-wheels.sh PROJECT_DIR WHEEL_DIR [PYTHON [MODE]]
# MODE bundle (default): all the wheels; host: telepi's own wheel only (pure Python, for any CPU and Python
# 3.11+), the host installing the rest from the package index (deploy.yml's telepi_wheels: host).
# Leaves the wheels in WHEEL_DIR and all of them in one file, WHEEL_DIR/bundle.tar, which deploy.yml copies
# (one checksum to compare instead of one per wheel).
#
# The wheels must suit the host: same CPU architecture and Python minor version, and a glibc no older than
# this machine's (build on the host's distribution release); deploy.yml checks the first two.
# systemd-python has no binary wheel on PyPI, so it is compiled here: this machine needs a C compiler,
# pkg-config and libsystemd-dev; the host needs libsystemd0 only. Delete WHEEL_DIR to pick up newer releases.
set -euo pipefail
project=$(cd "$1" && pwd)
out=$2
python=${3:-python3}
mode=${4:-bundle}
[[ $mode == bundle || $mode == host ]] || { echo "build-wheels.sh: MODE is bundle or host, not $mode" >&2; exit 2; }
mkdir -p "$out"

# Nothing to build when the sources and the Python are those of the last build: a run that changes nothing
# stays fast. Delete WHEEL_DIR/.sources.sha256 to force a build.
sources=(pyproject.toml README.md telepi)
stamp=$(
    cd "$project"
    find "${sources[@]}" -name __pycache__ -prune -o -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
    "$python" -c 'import sys; print(sys.version)'
    echo "$mode"
    sha256sum "$0" # this script: what it builds
)
stamp=$(sha256sum <<<"$stamp" | cut -d' ' -f1)
if [[ -f "$out/bundle.tar" && -f "$out/.sources.sha256" && "$(cat "$out/.sources.sha256")" == "$stamp" ]]; then
    exit 0
fi
rm -f "$out/.sources.sha256"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
quietly() { "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }; }

# Build from a clean copy: an in-tree build can pick up stale modules from an old build/ directory.
mkdir "$work/src"
tar -C "$project" --exclude=__pycache__ --exclude='*.pyc' -cf - "${sources[@]}" | tar -C "$work/src" -xf -

# A fixed timestamp makes the wheel byte-identical when the code is, so the host sees a change only then.
export SOURCE_DATE_EPOCH=315532800
rm -f "$out"/telepi-*.whl
quietly "$python" -m pip wheel --no-deps --wheel-dir "$out" "$work/src"
wheel=$(ls "$out"/telepi-*.whl)

# Dependencies: reuse what WHEEL_DIR already holds (offline, same bytes as last time); fetch only what is missing.
# In host mode the bundle holds telepi's wheel alone: the dependencies' wheels would bind the host to this
# machine's CPU and Python.
members=(.)
if [[ $mode == host ]]; then
    members=("$(basename "$wheel")")
elif ! "$python" -m pip wheel --quiet --no-index --find-links "$out" --wheel-dir "$out" "$wheel[journald,postgres]" \
    >/dev/null 2>&1; then
    quietly "$python" -m pip wheel --find-links "$out" --wheel-dir "$out" "$wheel[journald,postgres]"
fi

# Byte-identical when the wheels are: sorted, fixed times and owners.
tar -C "$out" --sort=name --mtime=@$SOURCE_DATE_EPOCH --owner=0 --group=0 --numeric-owner --mode=a+r,go-w \
    --format=gnu --exclude=bundle.tar --exclude=.sources.sha256 -cf "$work/bundle.tar" "${members[@]}"
mv "$work/bundle.tar" "$out/bundle.tar"
echo "$stamp" >"$out/.sources.sha256"
