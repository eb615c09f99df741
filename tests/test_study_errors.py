"""Every study-file mistake is caught before Ray starts, naming the file, the key and what is allowed."""

import copy
from pathlib import Path

import pytest
import yaml

from er_tune.cli import main
from er_core.config import COMMON_KEYS
from search_spaces import (StudyError, applies, condition_groups, describe, load_study, parse_study, replicate_configs,
                           trial_config)
from search_spaces.plan import searched_params
from search_spaces.parse import with_methods

STUDIES = Path(__file__).resolve().parents[1] / "search_spaces" / "studies"
BASE = yaml.safe_load((STUDIES / "smoke.yaml").read_text())
# smoke's SimCLR-specific entries would fail first in the cases that change the methods
BASE["tune"] = {"lr": BASE["tune"]["lr"]}


def mutate(**changes):
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        keys = path.split("__")
        target = doc
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if value is DELETE:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value
    return doc


DELETE = object()

BAD = [
    # (id, document, key path in the message, fragment of the message)
    ("unknown-top-key", {**BASE, "methodz": ["simclr"]}, "methodz", "did you mean 'methods'"),
    ("unknown-data-key", mutate(data__datset="shapes"), "data.datset", "did you mean 'dataset'"),
    ("unknown-dataset", mutate(data__dataset="imagenet"), "data.dataset", "allowed: shapes"),
    ("unknown-method", mutate(methods=["simclr", "mocov3"]), "methods[1]", "allowed: simclr, byol"),
    ("unknown-variant", mutate(variants=["er", "both"]), "variants[1]", "allowed: original, er"),
    ("unknown-backbone", mutate(model__backbone="vit"), "model.backbone", "allowed: auto, convnet"),
    ("empty-methods", mutate(methods=[]), "methods", "non-empty list"),
    ("empty-seeds", mutate(seeds=[]), "seeds", "non-empty list"),
    ("duplicate-seeds", mutate(seeds=[0, 0]), "seeds", "duplicate"),
    ("negative-seed", mutate(seeds=[-1]), "seeds[0]", ">= 0"),
    ("ema-out-of-range", mutate(methods=["byol"], grid={"ema": [0.5, 1.5], "batch_size": [32]}), "grid.ema",
     "0 <= ema <= 1"),
    ("batch-size-one", mutate(grid={"batch_size": [1]}), "grid.batch_size", ">= 2"),
    ("batch-larger-than-data", mutate(grid={"batch_size": [1024]}), "grid.batch_size", "exceeds train_size"),
    ("ema-axis-for-simclr", mutate(grid={"ema": [0.9]}), "grid.ema", "applies to none of the listed methods"),
    ("empty-grid-values", mutate(grid={"batch_size": []}), "grid.batch_size", "non-empty list"),
    ("unknown-grid-axis", mutate(grid={"batchsize": [32]}), "grid.batchsize", "did you mean 'batch_size'"),
    ("zero-epochs", mutate(schedule__max_epochs=0), "schedule.max_epochs", ">= 1"),
    ("string-epochs", mutate(schedule__max_epochs="ten"), "schedule.max_epochs", "must be an integer"),
    ("grace-beyond-budget", mutate(schedule__asha__grace_period=5), "schedule.asha.grace_period",
     "exceeds schedule.max_epochs"),
    ("reduction-factor-one", mutate(schedule__asha__reduction_factor=1), "schedule.asha.reduction_factor", ">= 2"),
    ("kappa-for-no-er", mutate(variants=["original"], tune={"kappa": {"loguniform": [1, 10]}}), "tune.kappa",
     "used by none of the listed"),
    ("dead-kappa-for-dino-er", mutate(methods=["simclr", "dino"], tune={"kappa": {"loguniform": [1, 10],
                                                                                   "variants": ["er"]}}),
     "tune.kappa", "is not read by dino/er (objective dino_er)"),
    ("dead-temperature-for-byol", mutate(methods=["byol", "swav"], tune={"temperature": {"uniform": [0.1, 0.5]}}),
     "tune.temperature", "is not read by byol/original"),
    ("dead-teacher-temperature-for-simclr", mutate(methods=["simclr", "dino"],
                                                   tune={"teacher_temperature": {"uniform": [0.02, 0.07]}}),
     "tune.teacher_temperature", "is not read by simclr/original"),
    ("dead-queue-for-swav-er", mutate(methods=["swav"], tune={"queue_length": {"choice": [0, 64]}}),
     "tune.queue_length", "is not read by swav/er"),
    ("dead-key-lists-what-the-pair-reads", mutate(methods=["dino", "simclr"], tune={"kappa": {"loguniform": [1, 10]}}),
     "tune.kappa", "allowed: keys dino/original reads: augment, backbone"),
    ("unknown-objective-restriction", mutate(tune={"kappa": {"loguniform": [1, 10], "objectives": ["dino_er"]}}),
     "tune.kappa.objectives[0]", "allowed: simclr, simclr_er"),
    ("objectives-with-variants", mutate(tune={"kappa": {"loguniform": [1, 10], "objectives": ["simclr_er"],
                                                        "variants": ["er"]}}),
     "tune.kappa.objectives", "cannot be combined"),
    ("searched-and-grid", mutate(tune={"batch_size": {"choice": [16, 32]}}), "tune.batch_size", "also a grid axis"),
    ("loguniform-nonpositive", mutate(tune={"lr": {"loguniform": [0, 1]}}), "tune.lr.loguniform", "low > 0"),
    ("low-above-high", mutate(tune={"lr": {"uniform": [0.5, 0.1]}}), "tune.lr.uniform", "must be below high"),
    ("two-distributions", mutate(tune={"lr": {"uniform": [0.1, 0.5], "loguniform": [0.1, 0.5]}}), "tune.lr",
     "exactly one distribution"),
    ("unknown-distribution", mutate(tune={"lr": {"normal": [0.1, 0.5]}}), "tune.lr.normal", "allowed: loguniform"),
    ("searched-value-invalid", mutate(tune={"temperature": {"uniform": [-1.0, 0.5], "objectives": ["simclr"]}}),
     "tune.temperature", "> 0"),
    ("unknown-metric", mutate(search__metric="accuracy"), "search.metric", "allowed: knn_top1"),
    ("bad-mode", mutate(search__mode="maximize"), "search.mode", "allowed: max, min"),
    ("zero-samples", mutate(search__num_samples=0), "search.num_samples", ">= 1"),
    ("search-seed-is-a-replicate-seed", mutate(search__trial_seed=1), "search.trial_seed",
     "allowed: a seed not in [0, 1], or share_replicate_seed: true"),
    ("negative-search-seed", mutate(search__trial_seed=-3), "search.trial_seed", ">= 0"),
    ("share-seed-not-a-bool", mutate(search__share_replicate_seed="yes"), "search.share_replicate_seed",
     "allowed: true"),
    ("unknown-asha-mode", mutate(schedule__asha__mode="sync"), "schedule.asha.mode", "allowed: async"),
    ("unknown-collapse-key", mutate(collapse__patience=3), "collapse.patience", "allowed:"),
    ("collapse-threshold-range", mutate(collapse__cluster_threshold=2.0), "collapse", "collapse.cluster_threshold"),
    ("negative-gpu", mutate(resources__gpu=-1), "resources.gpu", ">= 0"),
    ("no-resources", mutate(resources={"cpu": 0, "gpu": 0}), "resources", "cpu > 0 or gpu > 0"),
    ("reserved-trial-key", mutate(trial__seed=3), "trial.seed", "set by the study's own sections"),
    ("unknown-trial-key", mutate(trial__learning_rate=0.1), "trial.learning_rate", "allowed:"),
    ("invalid-trial-value", mutate(trial__optimizer="adam"), "trial", "allowed: sgd, lars"),
    ("missing-root", mutate(data__dataset="cifar10", data__root="/nonexistent/cifar"), "data.root", "does not exist"),
    ("root-required", mutate(data__dataset="stl10"), "data.root", "is required"),
    ("bad-name", mutate(name="my study!"), "name", "letters, digits"),
    ("missing-methods", mutate(methods=DELETE), "methods", "is required"),
    ("not-a-mapping", ["a", "list"], "", "must be a mapping"),
    ("reference-not-a-grid-value", mutate(grid={"batch_size": [32, 64]}, reference={"batch_size": 128}),
     "reference.batch_size", "128 is not a value of grid.batch_size; allowed: 32, 64"),
    ("reference-unknown-axis", mutate(reference={"batch_size": 32, "ema": 0.9}), "reference.ema",
     "unknown key; allowed: batch_size"),
    ("reference-missing-axis", mutate(methods=["byol"], grid={"ema": [0.8, 0.99], "batch_size": [32]},
                                      reference={"ema": 0.99}), "reference.batch_size",
     "is missing: the reference names one value per grid axis; allowed: batch_size: one of [32], "
     "ema: one of [0.8, 0.99]"),
    ("reference-without-grid", mutate(grid=DELETE, reference={"batch_size": 32}), "reference", "needs a grid"),
    ("reference-not-a-mapping", mutate(reference=[32]), "reference", "must be a mapping"),
]


@pytest.mark.parametrize("document, key, fragment", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_study_is_rejected_with_file_key_and_allowed_values(tmp_path, document, key, fragment):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(StudyError) as error:
        load_study(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: {key}"), message
    assert fragment in message, message


def test_at_least_25_distinct_bad_files():
    assert len({case[0] for case in BAD}) == len(BAD) >= 25


def test_unparseable_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmethods: [simclr\n")
    with pytest.raises(StudyError, match=r"<yaml>: unparseable YAML at line \d+, column \d+"):
        load_study(str(path))


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(StudyError, match="cannot be read"):
        load_study(str(tmp_path / "nope.yaml"))
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(StudyError, match="is empty"):
        load_study(str(tmp_path / "empty.yaml"))


def test_search_and_replicate_seeds_are_disjoint_unless_the_study_says_so(tmp_path, capsys):
    study = parse_study(copy.deepcopy(BASE), path="smoke.yaml")
    assert study.seeds == (0, 1) and study.search.trial_seed == 2  # default: one past the largest
    shared = parse_study(mutate(search__trial_seed=0, search__share_replicate_seed=True), path="s.yaml")
    assert shared.search.trial_seed == 0
    assert "training seed 0 (also a replicate seed)" in describe(shared)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(mutate(search__trial_seed=7)))
    assert main(["validate", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "training seed 7" in printed and "also a replicate seed" not in printed
    assert "training seeds [0, 1]" in printed
    path.write_text(yaml.safe_dump(mutate(search__trial_seed=1)))
    assert main(["validate", str(path)]) == 2
    assert "search.trial_seed: 1 is also a replicate seed" in capsys.readouterr().err


def test_validate_command_exit_codes(tmp_path, capsys):
    assert main(["validate", str(STUDIES / "demo.yaml")]) == 0
    assert "condition groups: 4" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate(methods=["simclr", "mocov3"])))
    assert main(["validate", str(bad)]) == 2
    assert f"{bad}: methods[1]" in capsys.readouterr().err


def test_reference_stresses_every_other_cell_and_drops_the_axes_a_method_does_not_read(tmp_path, capsys):
    from search_spaces.study import stressed_cells

    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(mutate(methods=["byol", "simclr"], seeds=list(range(8)),
                                          grid={"ema": [0.8, 0.99], "batch_size": [32, 64]},
                                          reference={"ema": 0.99, "batch_size": 64}), sort_keys=False))
    study = load_study(str(path))
    rows = [(r.method, dict(r.reference), dict(r.cell), r.axes) for r in stressed_cells(study)]
    assert rows == [("byol", {"ema": 0.99, "batch_size": 64}, {"ema": 0.8, "batch_size": 64}, ("ema",)),
                    ("byol", {"ema": 0.99, "batch_size": 64}, {"ema": 0.99, "batch_size": 32}, ("batch_size",)),
                    ("byol", {"ema": 0.99, "batch_size": 64}, {"ema": 0.8, "batch_size": 32},
                     ("ema", "batch_size")),
                    ("simclr", {"batch_size": 64}, {"batch_size": 32}, ("batch_size",))]
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "simclr: reference batch_size=64 (reads no ema); stressed: batch_size=32 [batch_size]" in out
    from er_core.power import drop_min_detectable
    found = drop_min_detectable(8, 0.05, 4)
    assert f"Holm over 4 row(s) per metric, 8 seeds): |original_drop - er_drop| >= {found:.3f}" in out
    assert "assuming a seed sd of 0.01 in each of the four arms" in out
    # one arm sd 0.01, 8 seeds, alpha 0.05/4: the paired-t figure in sd units times the contrast sd 0.02
    assert found == pytest.approx(drop_min_detectable(8, 0.05, 4, arm_sd=1.0) * 0.01)
    assert 0.02 < found < 0.05
    path.write_text(yaml.safe_dump(mutate()))
    assert main(["validate", str(path)]) == 0
    assert "robustness: no reference: in the study, so the report will have no robustness table" \
        in capsys.readouterr().out


def test_shipped_studies_expand_to_the_planned_groups():
    demo = load_study(str(STUDIES / "demo.yaml"))
    names = [g.name for g in condition_groups(demo)]
    assert names == [f"swav/{v}/batch_size={b}" for v in ("original", "er") for b in (16, 32)]
    text = describe(demo)
    assert "phase search: 8 trials" in text and "phase replicate: 24 trials" in text
    smoke = load_study(str(STUDIES / "smoke.yaml"))
    assert [g.name for g in condition_groups(smoke)] == ["simclr/original/batch_size=32", "simclr/er/batch_size=32"]


def test_with_methods_keeps_only_the_tune_entries_the_new_methods_read():
    document = yaml.safe_load((STUDIES / "demo.yaml").read_text())
    assert sorted(document["tune"]) == ["entropy_weight", "lr", "temperature"]
    byol = with_methods(document, ["byol"])
    assert byol["methods"] == ["byol"] and sorted(byol["tune"]) == ["lr"]
    assert [d.name for d in parse_study(byol, path="byol.yaml").tune] == ["lr"]
    swav = with_methods(document, ["swav", "simclr"])
    assert sorted(swav["tune"]) == ["entropy_weight", "lr", "temperature"]
    assert document["methods"] == ["swav"]  # the source document is not changed
    with pytest.raises(StudyError, match="tune.temperature"):  # what the narrowing prevents
        parse_study(dict(document, methods=["byol"]), path="unnarrowed.yaml")


def test_trial_configs_record_group_phase_seed_and_share_budget():
    demo = load_study(str(STUDIES / "demo.yaml"))
    groups = condition_groups(demo)
    config = trial_config(demo, groups[2], phase="search", seed=0, hparams={"lr": 0.9, "entropy_weight": 2.0})
    assert (config["group"], config["phase"], config["method"], config["variant"], config["batch_size"]) == \
        ("swav/er/batch_size=16", "search", "swav", "er", 16)
    assert config["grid_axes"] == ["batch_size"] and config["searched"] == ["entropy_weight", "lr"]
    assert config["lr"] == 0.9 and config["entropy_weight"] == 2.0 and config["epochs"] == 7
    replicate = replicate_configs(demo, {"swav/er/batch_size=16": {"lr": 0.9, "entropy_weight": 2.0}})
    assert len(replicate) == len(groups) * len(demo.seeds)
    best = [c for c in replicate if c["group"] == "swav/er/batch_size=16"]
    assert [c["seed"] for c in best] == [0, 1, 2, 3, 4, 5] and all(c["lr"] == 0.9 for c in best)
    # both variants of a method: same seeds, same epochs
    for method in demo.methods:
        per_variant = {v: sorted((c["seed"], c["epochs"]) for c in replicate if c["method"] == method
                                 and c["variant"] == v) for v in demo.variants}
        assert per_variant["original"] == per_variant["er"]


def test_dead_dimension_exits_2_naming_file_key_and_the_pairs_that_read_it(tmp_path, capsys):
    bad = tmp_path / "dead.yaml"
    bad.write_text(yaml.safe_dump(mutate(methods=["simclr", "byol", "dino"],
                                         tune={"kappa": {"loguniform": [1, 10], "variants": ["er"]}})))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: tune.kappa: is not read by dino/er" in err and "(simclr/er, byol/er)" in err
    assert "keys dino/er reads: " in err and "entropy_weight" in err.split("keys dino/er reads: ")[1]
    good = tmp_path / "scoped.yaml"
    good.write_text(yaml.safe_dump(mutate(methods=["simclr", "byol", "dino"],
                                          tune={"kappa": {"loguniform": [1, 10],
                                                          "objectives": ["simclr_er", "byol_er"]},
                                                "entropy_weight": {"uniform": [0.5, 2.0], "variants": ["er"]}})))
    assert main(["validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert "dino/er/batch_size=32" in out and "searched: entropy_weight" in out


def shipped(name, tmp_path):
    """A shipped study with its data root (GPU studies read CIFAR-10) pointed at a directory with the files."""
    document = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    if "root" in document.get("data", {}):
        # the files the root check looks for (CIFAR-10's batches, FashionMNIST's four idx files)
        parts = {"cifar10": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
                 + ["cifar-10-batches-py/test_batch"],
                 "fashion_mnist": ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                   "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
                 "imagefolder": ["train/n02869837/a.JPEG", "val/n02869837/a.JPEG"]}
        for part in parts[document["data"]["dataset"]]:
            (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / part).touch()
        document["data"]["root"] = str(tmp_path)
    return parse_study(document, path=str(STUDIES / f"{name}.yaml"))


SHIPPED = sorted(path.stem for path in STUDIES.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_study_is_valid_with_8_or_more_seeds_where_it_compares(tmp_path, name):
    """Shipped studies parse (with their data roots faked) and, but for the smoke/demo ones, give every arm >= 8 seeds."""
    study = shipped(name, tmp_path)
    assert condition_groups(study)
    if name not in ("smoke", "demo"):
        assert len(study.seeds) >= 8, name


# The CPU reference studies (fmnist_*) search the learning rate alone (or nothing), the same dimension
# for both variants, so the rule below (each original searches its own knob) is not theirs.
@pytest.mark.parametrize("name", [n for n in SHIPPED if not n.startswith("fmnist_")])
def test_shipped_studies_search_only_live_keys_and_comparable_dimensions(tmp_path, name):
    study = shipped(name, tmp_path)
    dims = {}
    for group in condition_groups(study):
        keys = {d.name for d in searched_params(study, group)}
        assert all(applies(key, group.method, group.variant) for key in keys), (group.name, keys)
        dims.setdefault((group.method, group.variant), keys)
    for method in study.methods:
        original, er = (dims[(method, v)] for v in ("original", "er"))
        own = original - set(COMMON_KEYS)
        # every original whose loss has a hyperparameter searches one (BYOL's 2 - 2 cos has none)
        assert own or method == "byol", (name, method)
        assert abs(len(er) - len(original)) <= (2 if method == "byol" else 1), (name, method, original, er)


def test_gpu_reference_study_mirrors_the_papers_table(tmp_path):
    """Reference at the usual values, the paper's stressed points (EMA 0.8, a batch 8x smaller),
    BYOL, DINO and SimCLR first; its comment names benchmark files that exist."""
    from search_spaces.study import stressed_cells

    study = shipped("cifar10_reference_gpu", tmp_path)
    assert study.methods[:3] == ("byol", "dino", "simclr")
    reference = dict(study.reference)
    assert reference["ema"] in (0.99, 0.996) and reference["batch_size"] in (256, 512)
    single = {(r.method, r.axes, tuple(r.cell.values())) for r in stressed_cells(study) if len(r.axes) == 1}
    for method in ("byol", "dino"):
        assert (method, ("ema",), (0.8, reference["batch_size"])) in single
        assert (method, ("batch_size",), (reference["ema"], reference["batch_size"] // 8)) in single
    assert ("simclr", ("batch_size",), (reference["batch_size"] // 8,)) in single


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_comments_name_files_that_exist(name):
    import re

    text = (STUDIES / f"{name}.yaml").read_text()
    for path in re.findall(r"benchmarks/[\w./-]+", text):
        assert (STUDIES.parents[1] / path.rstrip(".")).is_file(), (name, path)
