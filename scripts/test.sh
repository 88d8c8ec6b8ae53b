#!/usr/bin/env bash
# Install everything needed and run the whole test suite: lint, types, tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check telepi tests
.venv/bin/ruff format --check telepi tests
.venv/bin/mypy
.venv/bin/pytest -q -ra "$@"
