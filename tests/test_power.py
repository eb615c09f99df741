"""Power statements (er_core/power.py) and their printout in ``er-tune validate``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from er_core import power
from er_tune.cli import main


def study_with(tmp_path, seeds, **changes):
    """A 4-cell study (byol, dino x ema 0.0, 0.9), independent of the shipped studies."""
    doc = {"name": "power", "data": {"dataset": "shapes", "image_size": 16, "train_size": 256,
                                     "eval_size": 64},
           "methods": ["byol", "dino"], "variants": ["original", "er"],
           "grid": {"ema": [0.0, 0.9]}, "schedule": {"max_epochs": 6}}
    doc.update({"seeds": list(range(seeds)), **changes})
    path = tmp_path / f"s{seeds}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_collapse_detectable_and_min_seeds():
    assert power.min_detectable_collapse(3, 3) == (3, pytest.approx(1 / 32))
    assert power.min_detectable_collapse(3, 3, m=2) is None  # 1/32 > 0.025
    assert power.min_seeds_collapse(m=1) == 3 and power.min_seeds_collapse(m=4) == 4
    k, p = power.min_detectable_collapse(8, 8, m=4)  # p <= 0.0125
    assert k == 5 and p == pytest.approx(power.collapse_pvalue(0, 8, 5, 8))
    assert power.collapse_pvalue(0, 8, 4, 8) > 0.0125
    assert power.collapse_power(0.0, 0.0, 8) == 0.0
    assert power.collapse_power(0.0, 1.0, 8, m=4) == pytest.approx(1.0)
    # exact power equals a Monte-Carlo estimate through the same p-values
    rng = np.random.default_rng(0)
    a, b = rng.binomial(6, 0.1, 4000), rng.binomial(6, 0.8, 4000)
    mc = np.mean([power.collapse_pvalue(x, 6, y, 6) <= 0.05 for x, y in zip(a, b)])
    assert power.collapse_power(0.1, 0.8, 6) == pytest.approx(mc, abs=0.025)


def test_logrank_min_pvalue_and_seeds():
    assert power.logrank_min_pvalue(3, 3) == pytest.approx(0.1)  # 2 / C(6, 3)
    assert power.logrank_min_pvalue(4, 4) == pytest.approx(2 / 70)
    assert power.logrank_min_pvalue(10, 10) == pytest.approx(2 / 184_756)  # all splits enumerated
    assert power.logrank_min_pvalue(10, 10, imputed=True) == pytest.approx(1 / 2_000)
    assert power.sign_flip_min_pvalue(3) == pytest.approx(0.25)
    assert power.min_seeds_logrank(m=1) == 4 and power.min_seeds_logrank(m=4) == 5


@pytest.mark.parametrize("n", [3, 5, 10])
def test_knn_min_detectable_effect_has_its_power(n):
    eff = power.knn_min_detectable_effect(n)
    assert power.knn_power(eff, n) == pytest.approx(0.8, abs=1e-8)
    d = np.random.default_rng(n).normal(eff, 1.0, (20_000, n))
    mc = (sps.ttest_1samp(d, 0.0, axis=1).pvalue <= 0.05).mean()
    assert mc == pytest.approx(0.8, abs=0.015)
    assert power.knn_min_detectable_effect(1) is None
    assert power.knn_min_detectable_effect(10) == pytest.approx(0.996, abs=0.002)  # G*Power: d = 0.996


def test_validate_prints_power_and_warns(tmp_path, capsys):
    assert main(["validate", study_with(tmp_path, 3)]) == 0  # warnings never fail
    out = capsys.readouterr().out
    assert "verdict power (3 seeds per variant, 4 compared cells)" in out
    assert "Holm over 4 cell(s): a single difference needs p <= 0.0125" in out
    assert "cannot decide: even 3/3 vs 0/3 gives p = 0.0313; needs >= 4 seeds" in out
    assert "warning: 3 seeds per variant cannot give any collapse-count verdict" in out
    assert "warning: 3 seeds per variant cannot give any time-to-collapse verdict" in out
    eff3 = power.knn_min_detectable_effect(3, 0.05, 4)
    assert f">= {eff3:.2f} sd of the paired differences" in out


def test_validate_enough_seeds_no_warning(tmp_path, capsys):
    assert main(["validate", study_with(tmp_path, 8)]) == 0
    out = capsys.readouterr().out
    # Holm over 4 cells when all have collapses (p <= 0.0125), over 1 in the only cell with any:
    # the report's collapse_min_detectable states the same figure at its own m
    assert "detects 5/8 vs 0/8 (rate difference >= 0.62" in out
    assert "4/8 (>= 0.50, p = 0.0279) in the only cell with any" in out
    assert "warning" not in out
    assert main(["validate", study_with(tmp_path, 8), "--alpha", "0.2"]) == 0
    assert "Holm over 4 cell(s): a single difference needs p <= 0.05" in capsys.readouterr().out
    assert main(["validate", study_with(tmp_path, 8), "--alpha", "2"]) == 2
    assert "--alpha" in capsys.readouterr().err


def test_validate_single_variant_has_no_comparison(tmp_path, capsys):
    assert main(["validate", study_with(tmp_path, 3, variants=["er"])]) == 0
    assert "no ER-vs-original comparison" in capsys.readouterr().out
    assert math.comb(6, 3) == 20
