"""The report's Parquet schema (units, descriptions, dictionary types, nulls, no Ray columns,
relative paths) and its plots (dpi, dodged variants, chance lines, KM panels, entropy panels)."""
from __future__ import annotations

import dataclasses
import io
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from er_core.config import DATASET_NAMES, TrialConfig
from er_core.rules import PLACEMENT_GROUP_KEY
from reports import columns, parquet_io, plots
from reports.commands import TABLES, report_command, show_command
from reports.tables import RAY_KEYS
from tests.synthetic_experiment import event, small_replicate, write_trial
from tests.test_reports import build_statuses, planted

LABELS = {"trials": ["phase", "trial_id", "group", "method", "variant", "objective", "dataset",
                     "status", "stop_reason", "collapse_kind"],
          "epochs": ["trial_id", "phase", "stop_reason"],
          "collapse_events": ["trial_id", "detector", "kind", "severity"],
          "stability": ["method", "verdict", "knn_verdict", "time_verdict", "collapse_test"],
          "survival": ["method", "variant"], "search": ["group", "method", "variant"]}


def report(exp, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = report_command(str(exp), stream=out, err=err, **kw)
    assert code == 0, err.getvalue()
    return os.path.join(str(exp), "report") if "out" not in kw else kw["out"]


def rich_experiment(root):
    """Search: two groups searching different keys, every status; replicate: planted cells."""
    build_statuses(root)
    ph = os.path.join(root, "search")
    write_trial(ph, "byol_a", method="byol", variant="er", grid={"ema": 0.9},
                searched={"kappa": 4.0}, events=[event(kind="dimensional", severity="warning")])
    with open(os.path.join(ph, "byol_a", "result.json")) as f:
        lines = [json.loads(x) for x in f]
    with open(os.path.join(ph, "byol_a", "result.json"), "w") as f:
        for x in lines:  # everything Ray's own result dict adds
            x.update(should_checkpoint=False, timestamp=1796177602, hostname="vm", pid=5,
                     time_this_iter_s=2.0, time_since_restore=2.0, iterations_since_restore=1,
                     date="2026-12-02_01-00-00", node_ip="127.0.0.1", experiment_tag="0_lr=0.1",
                     timesteps_total=None, checkpoint_dir_name=None,
                     train_placement_group="5fa6a2b6a3b4a1e0a8d1c0e3f2b9c7d601000000")  # a data-parallel trial's
            f.write(json.dumps(x) + "\n")
    d = write_trial(ph, "nocell", method="simclr", variant="er", searched={"kappa": 8.0})
    with open(os.path.join(d, "params.json")) as f:
        p = json.load(f)
    with open(os.path.join(d, "params.json"), "w") as f:  # the flat TrialConfig holds every field
        json.dump({**p, "ema": 0.9, "kappa": 8.0, "temperature": 0.1}, f)
    planted(root, n=3)
    return root


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    """The report dir of ``rich_experiment`` (built once for the tests that only read it)."""
    return report(rich_experiment(tmp_path_factory.mktemp("rich")), plots=False)


def test_every_column_of_every_table_is_described(rich):
    out = rich
    for name in TABLES:
        schema = pq.read_schema(os.path.join(out, f"{name}.parquet"))
        assert schema.metadata[b"schema_version"] == parquet_io.SCHEMA_VERSION.encode()
        for field in schema:
            meta = field.metadata or {}
            assert set(meta) >= {b"unit", b"description"}, (name, field.name)
            assert meta[b"description"] and meta[b"description"] != columns.UNDESCRIBED.encode(), (
                name, field.name)
            numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
            if numeric and field.name != "seed":
                assert meta[b"unit"], (name, field.name)
    trials = pq.read_schema(os.path.join(out, "trials.parquet"))
    assert trials.field("collapse_epoch").metadata[b"unit"] == b"epochs"
    assert trials.field("hp_kappa").metadata[b"description"].startswith(b"searched kappa")
    epochs = pq.read_schema(os.path.join(out, "epochs.parquet"))
    assert epochs.field("er_entropy").metadata[b"unit"] == b"nats"
    assert epochs.field("wall_time_s").metadata[b"unit"] == b"s"
    stab = pq.read_schema(os.path.join(out, "stability.parquet"))
    assert stab.field("er_median_time_to_collapse").metadata[b"description"].startswith(b"ER:")
    assert stab.field("ema").metadata[b"description"] == b"grid axis: the cell's TrialConfig.ema"


def test_every_stability_column_carries_the_verdict_registrys_description(rich):
    """The registry (reports.verdicts) is the one place a verdict-family, per-variant or shared
    column is described; the Parquet field metadata carries exactly its text."""
    from reports import verdicts
    schema = pq.read_schema(os.path.join(rich, "stability.parquet"))
    declared = verdicts.declared_columns()
    written = {f.name for f in schema} & declared
    assert written == declared  # every declared column is in the file
    for name in written:
        unit, text = verdicts.describe(name)
        meta = schema.field(name).metadata
        assert (meta[b"unit"].decode(), meta[b"description"].decode()) == (unit, text), name
    assert set(columns.STABILITY) == {"method"}  # no second description of a registry column
    assert "not_replicated" in schema.field("verdict").metadata[b"description"].decode()
    assert schema.field("knn_p_adj").metadata[b"description"] == b"knn_p, Holm-adjusted over the informative cells"


def test_every_metric_a_trial_reports_and_every_config_field_is_declared():
    from trainers.trial import DISCRETE_METRICS, EPOCH_METRICS, FINAL_METRICS, PROBE_METRICS
    for key in EPOCH_METRICS + DISCRETE_METRICS + PROBE_METRICS + FINAL_METRICS:
        assert key in columns.EPOCHS, key
    # LocalReporter's and Ray's bookkeeping keys are dropped, or renamed to a declared column
    for key in ("training_iteration", "trial_id", "time_total_s", "timestamp", "done", "pid",
                "hostname"):
        assert key in RAY_KEYS or key in ("trial_id", "time_total_s")
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    assert fields == set(columns.CONFIG_UNITS)  # a new TrialConfig field needs its unit
    assert set(plots.NUM_CLASSES) == set(DATASET_NAMES)


def test_labels_are_dictionaries_free_text_is_not(rich):
    out = rich
    for name, labels in LABELS.items():
        schema = pq.read_schema(os.path.join(out, f"{name}.parquet"))
        for c in labels:
            assert pa.types.is_dictionary(schema.field(c).type), (name, c)
            assert schema.field(c).type.value_type == pa.string()
    trials = pq.read_table(os.path.join(out, "trials.parquet"))
    assert trials.schema.field("error").type == pa.string()
    assert trials.schema.field("trial_dir").type == pa.string()
    assert pq.read_schema(os.path.join(out, "collapse_events.parquet")).field(
        "message").type == pa.string()
    df = trials.to_pandas()
    assert str(df["status"].dtype) == "category"
    assert set(df["status"].cat.categories) >= {"completed", "collapsed", "errored", "pending"}


def test_hp_null_where_the_group_did_not_search_the_key(rich):
    out = rich
    tr = pq.read_table(os.path.join(out, "trials.parquet")).to_pandas().set_index("trial_id")
    assert tr.loc["byol_a", "hp_kappa"] == 4.0 and pd.isna(tr.loc["byol_a", "hp_lr"])
    assert tr.loc["coll", "hp_lr"] == 0.9 and pd.isna(tr.loc["coll", "hp_kappa"])
    # a grid axis the trial's pair does not read is null too, not its TrialConfig default
    assert pd.isna(tr.loc["nocell", "ema"])
    assert tr.loc["byol_a", "ema"] == 0.9
    assert tr.loc["nocell", "hp_kappa"] == 8.0 and pd.isna(tr.loc["nocell", "hp_lr"])
    simclr = tr[(tr["objective"] == "simclr") & (tr["phase"] == "search")]
    assert simclr["hp_kappa"].isna().all() and len(simclr) == 8
    se = pq.read_table(os.path.join(out, "search.parquet")).to_pylist()
    by_group = {r["group"]: r for r in se}
    assert by_group["byol/er/ema=0.9"]["best_hp_kappa"] == 4.0
    assert by_group["byol/er/ema=0.9"]["best_hp_lr"] is None


def test_epochs_hold_metrics_not_ray_bookkeeping(rich):
    out = rich
    ep = pq.read_table(os.path.join(out, "epochs.parquet"))
    assert not set(ep.column_names) & RAY_KEYS
    assert PLACEMENT_GROUP_KEY not in ep.column_names  # the driver's handle on a data-parallel trial
    assert "time_total_s" not in ep.column_names
    a = ep.filter(pa.compute.equal(ep["trial_id"].cast(pa.string()), "byol_a")).to_pylist()
    assert [r["wall_time_s"] for r in a] == [2.0, 4.0, 6.0]
    assert [r["epoch"] for r in a] == [1, 2, 3]
    assert ep.column_names[:3] == ["trial_id", "phase", "epoch"]


def test_trial_dir_relative_to_the_experiment_whatever_the_cwd(tmp_path, monkeypatch):
    exp = tmp_path / "studies" / "exp"
    small_replicate(exp)
    os.makedirs(exp / "replicate" / "empty")
    monkeypatch.chdir(tmp_path / "studies")
    report("exp", plots=False)
    first = pq.read_table(exp / "report" / "trials.parquet")["trial_dir"].to_pylist()
    monkeypatch.chdir(exp / "replicate")
    report(os.path.abspath(exp), plots=False)
    second = pq.read_table(exp / "report" / "trials.parquet")["trial_dir"].to_pylist()
    assert first == second
    assert sorted(first)[0] == "replicate/empty" and len(first) == 9
    assert sorted(first)[1] == "replicate/t_er_0"
    manifest = json.loads((exp / "report" / "manifest.json").read_text())
    assert manifest["unreadable"] == [{"trial_dir": "replicate/empty",
                                       "reason": "empty trial directory"}]


def test_show_reads_a_schema_2_report(tmp_path):
    """A report written before schema 3: plain strings, no field metadata, absolute trial_dir."""
    out = report(small_replicate(tmp_path), plots=False)
    old = tmp_path / "old"
    old.mkdir()
    for name in TABLES:
        t = pq.read_table(os.path.join(out, f"{name}.parquet"))
        fields = [pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                  for f in t.schema]
        t = pa.Table.from_arrays([c.cast(f.type) for c, f in zip(t.columns, fields)],
                                 schema=pa.schema(fields, {b"schema_version": b"2"}))
        pq.write_table(t, old / f"{name}.parquet")
    s = io.StringIO()
    assert show_command(str(old), stream=s) == 0
    text = s.getvalue()
    assert "simclr" in text and "trials (8 rows)" in text and "=≥1.00" in text
    new = io.StringIO()
    assert show_command(out, stream=new) == 0
    assert new.getvalue().split("rows: ")[0] == text  # the same figures from the annotated, encoded files


class Captured:
    def __init__(self, monkeypatch):
        self.figures = {}
        save = plots._save

        def keep(fig, path):
            self.figures[os.path.basename(path)] = fig
            return save(fig, path)
        monkeypatch.setattr(plots, "_save", keep)


def dpi(path) -> float:
    with Image.open(path) as im:
        return min(im.info["dpi"])


def test_plots_dpi_dodge_chance_entropy_panels(tmp_path, monkeypatch):
    cap = Captured(monkeypatch)
    root = tmp_path / "exp"
    planted(root, n=3)
    for s in range(2):
        for var in ("original", "er"):
            write_trial(str(root / "replicate"), f"s_{var}_{s}", method="simclr", variant=var,
                        seed=s, epochs=4, grid={"ema": 0.9}, dataset="svhn")
    out = report(root)
    pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    # simclr never collapsed: no Kaplan–Meier file of four flat lines
    assert pngs == ["byol_ema.png", "er_entropy.png", "km_byol.png", "simclr_ema.png"]
    for p in pngs:
        assert dpi(os.path.join(out, p)) >= 149.9
    knn_ax = cap.figures["byol_ema.png"].axes[0]
    bars = [c for c in knn_ax.containers]
    xs = [list(b.lines[0].get_xdata()) for b in bars]
    assert len(xs) == 2 and all(abs(a - b) >= 0.2 for a, b in zip(*xs))  # dodged per category
    hlines = {round(line.get_ydata()[0], 4) for line in knn_ax.lines
              if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2}
    assert 0.1 in hlines  # shapes: chance 1/10
    svhn = cap.figures["simclr_ema.png"].axes[0]
    levels = {round(line.get_ydata()[0], 4) for line in svhn.lines if len(line.get_ydata()) == 2}
    assert {0.1, round(5099 / 26032, 4)} <= levels  # chance and majority class of SVHN's test split
    ent = [ax for ax in cap.figures["er_entropy.png"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in ent] == ["byol ema=0", "byol ema=0.9", "simclr ema=0.9"]
    assert all(ax.get_ylabel() == "er_entropy (nats)" for ax in ent)
    assert [len(ax.lines) for ax in ent] == [2, 2, 2]  # original and ER in each cell


def test_km_panels_per_endpoint_and_quiet_cells_annotated(tmp_path, monkeypatch):
    cap = Captured(monkeypatch)
    out = report(planted(tmp_path, n=3), plots=False)
    sv = pq.read_table(os.path.join(out, "survival.parquet"))
    sv = pa.Table.from_arrays([c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
                               for c in sv.columns], names=sv.column_names)
    frame = sv.to_pandas()  # schema 4 has both endpoints: start from the complete one alone
    sv = pa.Table.from_pandas(frame[frame["endpoint"] == "complete"].drop(columns="endpoint"),
                              preserve_index=False)
    one = plots.plot_survival(sv, ["ema"], str(tmp_path))
    fig = cap.figures["km_byol.png"]
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 4  # 2 cells x 2 variants
    with Image.open(one[0]) as im:
        width_one = im.size[0]
    # the verdicts' survival table: the same curves per endpoint; "complete" has no event in ema=0.9
    complete = sv.to_pandas().assign(endpoint="complete")
    complete.loc[complete["ema"] == 0.9, "events"] = 0
    both = pa.Table.from_pandas(pd.concat([complete, sv.to_pandas().assign(endpoint="any")]),
                                preserve_index=False)
    two = plots.plot_survival(both, ["ema"], str(tmp_path))
    fig = cap.figures["km_byol.png"]
    assert [ax.get_title().split("epochs to ")[1].split(" (")[0] for ax in fig.axes] == [
        "complete collapse", "any collapse"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 4]
    assert "ema=0.9" in fig.axes[0].texts[0].get_text() and not fig.axes[1].texts
    with Image.open(two[0]) as im:
        assert im.size[0] == 2 * width_one and min(im.info["dpi"]) >= 149.9
    nothing = sv.to_pandas().assign(events=0)
    assert plots.plot_survival(pa.Table.from_pandas(nothing, preserve_index=False), ["ema"],
                               str(tmp_path / "none")) == []


def test_manifest_records_code_packages_run_provenance_and_no_machine_path(tmp_path):
    """manifest.json: the experiment by name, the report dir relative to it, the report's code and
    package versions, and the run's provenance.json (device, data fingerprint) as written."""
    from er_core.provenance import PACKAGES, run_provenance

    exp = tmp_path / "studies" / "exp"
    small_replicate(exp)
    data = [{"dataset": "shapes", "image_size": 16, "train_size": 64, "eval_size": 32,
             "data_seed": 0, "train_shape": [64, 3, 16, 16], "eval_shape": [32, 3, 16, 16],
             "sha256": "ab" * 32}]
    run = run_provenance(data, {"nodes": 1, "CPU": 2.0, "GPU": None, "accelerator_types": []})
    (exp / "provenance.json").write_text(json.dumps(run))
    report(exp, plots=False)
    text = (exp / "report" / "manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["experiment"] == "exp" and manifest["report_dir"] == "report"
    assert str(tmp_path) not in text  # no absolute path of this machine
    assert set(PACKAGES) <= set(manifest["versions"]) and manifest["versions"]["er_tune"]
    assert {"er_tune", "git_commit", "git_dirty"} <= set(manifest["code"])
    assert manifest["run"]["data"] == data and manifest["run"]["device"]["cpu_count"] >= 1
    assert manifest["run"]["versions"]["numpy"] and "gpu_count" in manifest["run"]["device"]
    assert not any("provenance" in note for note in manifest["notes"])
    os.remove(exp / "provenance.json")  # an experiment from before: said, not guessed
    report(exp, plots=False, out=str(tmp_path / "elsewhere"))
    manifest = json.loads((tmp_path / "elsewhere" / "manifest.json").read_text())
    assert manifest["run"] is None and any("provenance.json" in n for n in manifest["notes"])
    assert manifest["report_dir"] == "../../elsewhere"


def test_data_fingerprint_is_the_bytes_the_trials_read():
    import torch

    from er_core.data.bundle import DatasetBundle

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8, generator=gen)
    labels = torch.arange(8) % 2

    def bundle(train, train_labels=labels):
        return DatasetBundle("x", 2, train, train_labels, images[:4], labels[:4], (0.5,) * 3,
                             (0.2,) * 3)
    first = bundle(images).fingerprint()
    assert first == bundle(images.clone()).fingerprint() and len(first) == 64
    changed = images.clone()
    changed[3, 1, 2, 2] ^= 1  # one bit of one pixel
    assert bundle(changed).fingerprint() != first
    assert bundle(images, labels.flip(0)).fingerprint() != first
