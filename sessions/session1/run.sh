#!/usr/bin/env sh
# Run this session in the foreground, without systemd. Ctrl-C stops it cleanly.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ -x "$repo/.venv/bin/telepi" ]; then telepi="$repo/.venv/bin/telepi"; else telepi=telepi; fi
exec "$telepi" run "$here" "$@"
