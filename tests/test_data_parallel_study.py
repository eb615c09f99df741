"""Data-parallel study settings: resources.workers validated and recorded, the ImageNet-100 study's cost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from search_spaces import describe
from search_spaces.parse import parse_document
from search_spaces.study import StudyError

ROOT = Path(__file__).resolve().parents[1]
IMAGENET100 = ROOT / "search_spaces" / "studies" / "imagenet100_table2_gpu.yaml"
BASE = {"name": "dp", "methods": ["simclr"], "variants": ["er"],
        "data": {"dataset": "shapes", "train_size": 64, "eval_size": 16}, "grid": {"batch_size": [16]},
        "schedule": {"max_epochs": 2, "asha": {"grace_period": 1, "reduction_factor": 2}}}


def study_with(resources):
    return parse_document({**BASE, "resources": resources}, path="dp.yaml", raw="")


def test_workers_become_every_trial_world_size():
    study = study_with({"workers": 4, "cpu": 2, "gpu": 0})
    assert study.base["world_size"] == 4
    assert (study.resources.trial_cpu, study.resources.trial_gpu) == (8, 0)
    assert study_with({"cpu": 1}).base["world_size"] == 1


@pytest.mark.parametrize("resources, key, allowed", [
    ({"workers": 0}, "resources.workers", ">= 1"),
    ({"workers": 1.5}, "resources.workers", "integer"),
    ({"workers": 2, "gpu": 0.5}, "resources.gpu", "integer >= 1 per worker"),
    ({"workers": 3}, "batch_size", "multiple of world_size"),  # 16 does not split over 3 workers
    ({"images_per_s": -1}, "resources.images_per_s", ">= 0"),
])
def test_bad_worker_settings_name_the_key_and_what_is_allowed(resources, key, allowed):
    with pytest.raises(StudyError) as error:
        study_with(resources)
    assert key in str(error.value) and allowed in str(error.value)


def test_world_size_is_not_a_trial_setting():
    with pytest.raises(StudyError, match="world_size"):
        parse_document({**BASE, "trial": {"world_size": 2}}, path="dp.yaml", raw="")


def test_imagenet100_study_lists_the_100_synsets_and_prints_its_assumed_gpu_hours(tmp_path):
    text = IMAGENET100.read_text()
    synsets = re.findall(r"n\d{8}", text)
    assert len(synsets) == 100 == len(set(synsets))
    for split in ("train", "val"):  # a stand-in root: validation checks the folder layout only
        folder = tmp_path / split / synsets[0]
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(b"")
    document = yaml.safe_load(text)
    document["data"]["root"] = str(tmp_path)
    study = parse_document(document, path=str(IMAGENET100), raw=text)
    assert study.resources.workers == 8 and study.base["world_size"] == 8
    assert study.base["backbone"] == "resnet50"
    plan = describe(study)
    # 20 groups x (4 search trials + 8 seeds) x 400 epochs x 126,689 images at 8,000 images/s, x 8 GPUs
    hours = 20 * (4 + 8) * 400 * 126_689 / 8000 / 3600
    assert f"{hours:,.0f} trial-hours x 8 GPU(s) per trial = {hours * 8:,.0f} GPU-hours" in plan
    assert "ASSUMED throughput" in plan
