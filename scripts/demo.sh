#!/usr/bin/env bash
# Install telepi and watch it clone a chat with no Telegram account: `telepi demo` runs a full clone
# against the built-in local Telegram and reports source vs target per topic and the duplicate count.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
status=0
.venv/bin/telepi demo "$@" || status=$?
# The README's next commands say `telepi ...`: say where it is and how to put it on the PATH.
echo "telepi is installed at $PWD/.venv/bin/telepi; to type the README's commands as written: source $PWD/.venv/bin/activate" >&2
exit "$status"
