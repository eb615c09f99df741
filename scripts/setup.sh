#!/usr/bin/env bash
# Create ./.venv with everything er-tune needs (torch/torchvision from the pinned local wheels).
#   bash scripts/setup.sh        the package and the cluster extra: what `er-tune tune/report` and
#                                `ray start` nodes need (the README's main command)
#   bash scripts/setup.sh test   also the test extra: pytest, TensorBoard's reader, optuna-dashboard,
#                                moto's S3 server, MLflow and W&B (the README's test command, CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
case "${1:-}" in
    "") EXTRAS="cluster" ;;
    test) EXTRAS="cluster,test" ;;
    *) echo "scripts/setup.sh: unknown argument '$1' (allowed: none, or 'test')" >&2; exit 2 ;;
esac
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# cluster: ray[default] for `ray start` nodes and `ray job submit`
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
.venv/bin/python -c "import torch, torchvision, ray, optuna, tensorboardX, pyarrow, aiohttp, grpc; print('er-tune environment ready: torch', torch.__version__, '| ray', ray.__version__, '| optuna', optuna.__version__)"
