"""``er-tune train``: argument errors exit 2 before anything is written; a tiny run prints a summary."""

import json
import re
import os
import subprocess
import sys

import pytest

from er_tune.cli import main

TINY = ["--set", "image_size=16", "--set", "train_size=64", "--set", "eval_size=32",
        "--set", "batch_size=32", "--set", "knn_bank_size=32", "--set", "knn_k=5",
        "--set", "projector_dim=16", "--set", "projector_hidden_dim=32"]


@pytest.mark.parametrize("extra, fragment", [
    (["--set", "batch_sise=64"], "did you mean 'batch_size'"),
    (["--set", "ema=2"], "allowed: 0 <= ema <= 1"),
    (["--variant", "best"], "allowed: original, er"),
    (["--dataset", "imagenet"], "allowed: shapes, digits"),
    (["--dataset", "cifar10", "--set", "data_root=/nonexistent/cifar"], "does not exist"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, extra, fragment):
    out = tmp_path / "trial"
    code = main(["train", "--method", "byol", "--epochs", "1", "--out", str(out)] + extra)
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def test_unknown_method_exits_2(tmp_path, capsys):
    assert main(["train", "--method", "mae", "--out", str(tmp_path / "t")]) == 2
    assert "allowed: simclr, byol, dino, swav, deepcluster" in capsys.readouterr().err


def test_train_runs_and_prints_summary(tmp_path):
    out = tmp_path / "trial"
    result = subprocess.run(
        [sys.executable, "-m", "er_tune.cli", "train", "--method", "dino", "--variant", "er",
         "--epochs", "2", "--out", str(out)] + TINY,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch   1" in result.stdout and "epoch   2" in result.stdout
    assert re.search(r"status: (completed|collapsed) after 2 epochs", result.stdout)
    assert re.search(r"linear_top1 [01]\.\d{4}", result.stdout)
    params = json.loads((out / "params.json").read_text())
    assert params["method"] == "dino" and params["variant"] == "er" and params["epochs"] == 2
    assert len((out / "result.json").read_text().splitlines()) == 2
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out))
