#!/usr/bin/env bash
# Set up everything (scripts/setup.sh) and run the default test suite: all tests but the ones
# marked slow, including the aarch64 (qemu), OpenCL (POCL) and RPC tests.
# Usage: bash scripts/test.sh [pytest args...]   e.g. bash scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest "$@"
