#!/usr/bin/env bash
# The test command: the suite on the CPU (GPU-only tests skip themselves without CUDA).
#   bash scripts/test.sh          the suite without the end-to-end scenarios (<= 8 min on 2 cores)
#   bash scripts/test.sh --e2e    only the end-to-end scenarios (tests marked e2e; CI runs them too)
#   bash scripts/test.sh --all    both
# Further arguments go to pytest (a test named on the command line still obeys the tier chosen).
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(-m "not e2e")
case "${1:-}" in
    --e2e) tier=(-m e2e); shift ;;
    --all) tier=(); shift ;;
esac
# the test extra as pyproject.toml declares it: anything missing means `scripts/setup.sh test` was not run
if ! .venv/bin/python scripts/check_extra.py test
then
    echo "scripts/test.sh: the test extra is not installed in .venv; run: bash scripts/setup.sh test" >&2
    exit 2
fi
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -q ${tier[@]+"${tier[@]}"} "$@"
