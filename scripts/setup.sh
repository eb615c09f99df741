#!/usr/bin/env bash
# Create ./.venv with everything er-tune needs (torch/torchvision from the pinned local wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# cluster: ray[default] for `ray start` nodes and `ray job submit`; test pulls it in as well
.venv/bin/python -m pip install -q -e ".[cluster,test]"
.venv/bin/python -c "import torch, torchvision, ray, optuna, tensorboardX, pyarrow, aiohttp, grpc; print('er-tune environment ready: torch', torch.__version__, '| ray', ray.__version__, '| optuna', optuna.__version__)"
