#!/usr/bin/env bash
# Install telepi and show what it does on a fresh machine, with no Telegram account.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
# Until the local Telegram and the engine land, the demo is the status report of this repository's
# sessions tree (empty on a fresh clone).
exec .venv/bin/telepi status sessions "$@"
