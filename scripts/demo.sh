#!/usr/bin/env bash
# Install telepi and watch it clone a chat with no Telegram account: `telepi demo` runs a full clone
# against the built-in local Telegram and reports source vs target per topic and the duplicate count.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
exec .venv/bin/telepi demo "$@"
