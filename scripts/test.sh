#!/usr/bin/env bash
# Set up (see setup.sh) and run every check: ruff (lint + format), import-linter contracts, mypy --strict, pytest (with a per-test timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check drillkit tests benchmarks
.venv/bin/ruff format --check drillkit tests benchmarks
.venv/bin/lint-imports
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
