"""The ``er-tune`` command line: train, tune, validate, report, show, status.

Every user error (bad study file, unknown ``--set`` key, bad value, missing path) is reported on
stderr with the key and the allowed values and exits with status 2 before anything runs or is
written. Heavy imports (torch, Ray) happen inside the commands, so ``--help``, ``--version`` and
``validate`` are fast.

Conventions: ``er-tune --version`` (the installed package's version); ``-q/--quiet`` and
``-v/--verbose`` on ``train``, ``tune``, ``validate`` and ``report`` (``-q``: errors and warnings
only, on stderr; ``-v``: ``tune`` prints its progress line at every result); ``--json`` on
``status`` and ``show`` prints one JSON object instead of the tables. ``python -m er_tune`` is
the same entry point.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from er_core.rules import ALPHA, EXIT_USAGE, PHASE_CHOICES


def package_version() -> str:
    """The installed distribution's version (``pip show er-tune``), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("er-tune")
    except PackageNotFoundError:
        from er_core import __version__
        return __version__


def _verbosity_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-q", "--quiet", action="count", default=0,
                         help="print only errors and warnings (on stderr)")
    options.add_argument("-v", "--verbose", action="count", default=0,
                         help="print more (tune: the progress line at every result)")
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="er-tune",
        description="Stability search for multi-view SSL objectives against their ER replacements.")
    parser.add_argument("--version", action="version", version=f"er-tune {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verbosity = _verbosity_options()

    train = commands.add_parser("train", help="run one trial (without Ray unless --workers > 1)", parents=[verbosity],
                                description="Train one objective (original or ER) and measure it "
                                            "every epoch; writes Ray-compatible result files.")
    train.add_argument("--method", required=True, help="simclr, byol, dino, swav, deepcluster")
    train.add_argument("--variant", default="original", help="original or er (default: original)")
    train.add_argument("--dataset", default=None, help="shapes (default), digits, cifar10, ...")
    train.add_argument("--epochs", type=int, default=None, help="number of epochs")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="any trial setting, e.g. --set ema=0 --set batch_size=64 "
                            "--set collapse.stop_on_collapse=false (repeatable)")
    train.add_argument("--out", required=True, help="trial directory (resumes if it holds a checkpoint)")
    train.add_argument("--workers", type=int, default=1,
                       help="data-parallel workers (a Ray Train TorchTrainer on an embedded Ray: one GPU "
                            "each on CUDA, else a share of the CPUs); batch_size stays the global batch")

    tune = commands.add_parser("tune", help="run a study on Ray Tune (embedded or on a cluster)",
                               parents=[verbosity])
    tune.add_argument("study", help="study YAML file (see search_spaces/studies/)")
    tune.add_argument("--address", default=None,
                      help="Ray cluster address ('auto' or host:port); default: embedded local Ray")
    tune.add_argument("--storage", default=None,
                      help="the experiment directory itself (path or URI, e.g. /mnt/shared/er_runs/NAME); "
                           "default ./er_runs/<name>. Not combined with --name")
    tune.add_argument("--name", default=None,
                      help="experiment name, the directory ./er_runs/<name> (default: the study's name); "
                           "with --storage, name the directory in the --storage path instead")
    tune.add_argument("--phase", default="all", choices=PHASE_CHOICES)

    validate = commands.add_parser("validate", help="check a study file and print its plan",
                                   parents=[verbosity])
    validate.add_argument("study")
    validate.add_argument("--alpha", type=float, default=ALPHA,
                          help=f"level the power statements assume (default {ALPHA})")

    report = commands.add_parser("report", help="stability tables (Parquet), terminal view, plots",
                                 parents=[verbosity])
    report.add_argument("experiment", help="experiment directory (er_runs/<name>)")
    report.add_argument("--out", default=None, help="output directory (default <experiment>/report)")
    report.add_argument("--markdown", default=None, metavar="FILE", help="also write markdown here")
    report.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    report.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"level of the Holm-adjusted verdicts (default {ALPHA})")
    report.add_argument("--reference", default=None, metavar="AXIS=VALUE,...",
                        help="reference cell of the robustness table, one value per grid axis "
                             "(default: the study's reference:, none without one)")

    status = commands.add_parser("status", help="phase, trials by state, collapses, best, ETA of a study",
                                 description="Where a running or finished study stands; reads only "
                                             "the experiment directory (safe while it runs).")
    status.add_argument("experiment", help="experiment directory (er_runs/<name> or --storage)")
    status.add_argument("--json", action="store_true",
                        help="print the status as one JSON object (counts, best per group, ETA)")

    show = commands.add_parser("show", help="print the tables of a report directory")
    show.add_argument("report_dir")
    show.add_argument("--json", action="store_true",
                      help="print the report's tables (rows as objects) and manifest as one JSON object")
    return parser


def _verbosity(args: argparse.Namespace) -> int:
    return getattr(args, "verbose", 0) - getattr(args, "quiet", 0)


def _train(args: argparse.Namespace) -> int:
    from er_core.config import ConfigError, TrialConfig

    pairs = [f"method={args.method}", f"variant={args.variant}"]
    if args.dataset is not None:
        pairs.append(f"dataset={args.dataset}")
    if args.epochs is not None:
        pairs.append(f"epochs={args.epochs}")
    if args.workers < 1:
        print(f"er-tune train: --workers must be an integer >= 1, got {args.workers}", file=sys.stderr)
        return EXIT_USAGE
    pairs.append(f"world_size={args.workers}")
    try:
        config = TrialConfig().with_overrides(pairs + list(args.overrides))
        _check_data_root(config)
    except ConfigError as error:
        print(f"er-tune train: {error}", file=sys.stderr)
        return EXIT_USAGE

    from trainers.reporters import LocalReporter
    from trainers.trial_data import load_trial_data
    from trainers.trial import run_trial
    from search_spaces.study import group_key

    try:
        data = load_trial_data(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"er-tune train: {error}", file=sys.stderr)
        return EXIT_USAGE
    chosen = _auto_choices(config, data.grayscale)
    config = config.resolved(data.grayscale)
    params = config.to_dict() | {"phase": "single", "group": group_key(config.method, config.variant),
                                 "grid_axes": [], "searched": [], "study": ""}
    log = None if _verbosity(args) < 0 else print
    if log:
        streamed = f" streamed by {config.loader_workers} loader processes" if data.streaming else ""
        print(f"er-tune train: {config.objective} on {config.dataset} ({data.num_train} "
              f"train{streamed} / {data.eval_images.shape[0]} eval images, {config.image_size}px), "
              f"backbone {config.backbone}{chosen['backbone']}, augment {config.augment}{chosen['augment']}, batch {config.batch_size}, {config.epochs} epochs -> {args.out}")
    if config.world_size > 1:
        return _train_data_parallel(config, data, args.out, params, log is not None)
    summary = run_trial(config, data, LocalReporter(args.out, params), log=log)
    final = summary.final_metrics
    collapse = [event for event in summary.events if event["severity"] == "collapse"]
    print(f"status: {summary.status} after {summary.epochs_completed} epochs | "
          f"knn_top1 {final.get('knn_top1', 0.0):.4f} | linear_top1 {final.get('linear_top1', 0.0):.4f} | "
          f"er_entropy {final.get('er_entropy', 0.0):.3f} | "
          f"rankme {final.get('rankme', 0.0):.2f} | collapse events: {len(collapse)}"
          + (f" (first: {collapse[0]['kind']} at epoch {collapse[0]['epoch']})" if collapse else "")
          + f" | grade: {_grade_line(summary)}")
    if "final_knn_top1" in final:
        print(f"final evaluation on {final['final_queries']} test queries: knn_top1 {final['final_knn_top1']:.4f} "
              f"(untrained {final.get('untrained_final_knn_top1', float('nan')):.4f}, McNemar p "
              f"{final.get('learned_knn_p', float('nan')):.3g}) | linear_top1 {final['final_linear_top1']:.4f} "
              f"(untrained {final.get('untrained_final_linear_top1', float('nan')):.4f}, McNemar p "
              f"{final.get('learned_linear_p', float('nan')):.3g})")
    return 0


def _grade_line(summary) -> str:
    """``none``, ``complete`` or ``partial (kind at epoch N, ...)``: the trial's collapse grade."""
    if summary.grade != "partial":
        return summary.grade
    partial = [event for event in summary.events if event["severity"] == "partial"]
    return "partial (" + ", ".join(f"{event['kind']} at epoch {event['epoch']}" for event in partial) + ")"


def _train_data_parallel(config, data, out: str, params: dict, log: bool) -> int:
    from er_tune.data_parallel import train_locally
    from er_tune.launch import _ray_environment

    _ray_environment()
    final = train_locally(config, data, out, params, log=log)
    if not final:
        print("er-tune train: no epoch finished", file=sys.stderr)
        return 1
    print(f"status: {final['stop_reason'] or 'stopped'} after {final['epoch']} epochs on {config.world_size} "
          f"workers | knn_top1 {final.get('knn_top1', 0.0):.4f} | linear_top1 {final.get('linear_top1', 0.0):.4f} | "
          f"er_entropy {final.get('er_entropy', 0.0):.3f} | rankme {final.get('rankme', 0.0):.2f}")
    return 0


def _auto_choices(config, grayscale: bool) -> dict[str, str]:
    """What ``auto`` chose, for the summary line: " (auto: ...)" or "" where the user named it."""
    from er_core.config import NEEDS_ROOT

    backbone = ""
    if config.backbone == "auto":
        backbone = " (auto: " + ("data read from disk" if config.dataset in NEEDS_ROOT else "generated data") + ")"
    augment = f" (auto: {'grey' if grayscale else 'colour'} images)" if config.augment == "auto" else ""
    return {"backbone": backbone, "augment": augment}


def _check_data_root(config) -> None:
    from er_core.config import ConfigError, data_root_problem

    problem = data_root_problem(config.dataset, config.data_root)
    if problem:
        raise ConfigError(f"data_root: {problem} (--set data_root=PATH)")


def _tune(args: argparse.Namespace) -> int:
    from er_tune.launch import run_study
    from search_spaces.study import valid_name

    if args.name is not None and args.storage:
        # --storage is the experiment directory itself: a --name beside it would be ignored, so refuse it
        print(f"er-tune tune: --name {args.name} with --storage {args.storage}: --storage is the experiment "
              f"directory itself, so --name would be ignored; pass --storage "
              f"{args.storage.rstrip('/')}/{args.name} (or only --name for ./er_runs/{args.name})",
              file=sys.stderr)
        return EXIT_USAGE
    if args.name is not None and not valid_name(args.name):
        print(f"er-tune tune: --name: invalid name {args.name!r}; allowed: letters, digits, '_', '.', '-' "
              "(not '.' or '..')", file=sys.stderr)
        return EXIT_USAGE
    with _output(args) as stream:
        return run_study(args.study, address=args.address, storage=args.storage, name=args.name,
                         phase=args.phase, stream=stream, verbosity=max(0, _verbosity(args)))


class Discard:
    """The output stream of ``-q``: drops what is written. Unlike an open ``os.devnull`` it pickles,
    and ``tune`` hands it to a Ray Tune callback that Ray pickles with the experiment."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _output(args: argparse.Namespace):
    """stdout, or a sink with ``-q`` (errors and warnings go to stderr either way)."""
    import contextlib

    return contextlib.nullcontext(Discard() if _verbosity(args) < 0 else sys.stdout)


def _validate(args: argparse.Namespace) -> int:
    from search_spaces import validate_command

    with _output(args) as stream:
        return validate_command(args.study, stream=stream, alpha=args.alpha)


def _report(args: argparse.Namespace) -> int:
    from er_tune.storage import local_mirror
    from reports.commands import report_command
    from reports.robustness import ReferenceProblem, parse_reference

    try:
        reference = None if args.reference is None else parse_reference(args.reference)
    except ReferenceProblem as error:
        print(f"error: --reference: {error}", file=sys.stderr)
        return 2
    # a URI experiment (s3://...) is read from a local copy of its files (checkpoints excluded)
    with _output(args) as stream:
        return report_command(local_mirror(args.experiment), out=args.out, markdown=args.markdown,
                              plots=not args.no_plots, alpha=args.alpha, stream=stream,
                              reference=reference)


def _status(args: argparse.Namespace) -> int:
    from er_tune.driver_lock import holder_status
    from er_tune.storage import local_mirror
    from reports.status import status_command

    return status_command(local_mirror(args.experiment), as_json=args.json,
                          driver=holder_status(args.experiment))


def _show(args: argparse.Namespace) -> int:
    from reports.commands import show_command

    return show_command(args.report_dir, as_json=args.json)


COMMANDS = {"train": _train, "tune": _tune, "validate": _validate, "report": _report, "show": _show,
            "status": _status}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
