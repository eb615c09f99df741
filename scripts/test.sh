#!/usr/bin/env bash
# The test command: the whole suite on the CPU (GPU-only tests skip themselves without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -q "$@"
