#!/usr/bin/env bash
# The test command: the whole suite on the CPU (GPU-only tests skip themselves without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
# the test extra as pyproject.toml declares it: anything missing means `scripts/setup.sh test` was not run
if ! .venv/bin/python scripts/check_extra.py test
then
    echo "scripts/test.sh: the test extra is not installed in .venv; run: bash scripts/setup.sh test" >&2
    exit 2
fi
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -q "$@"
