"""Reference points for a study's accuracies: raw pixels and the untrained network, measured exactly as
its trials' final evaluation measures ``final_knn_top1`` and ``final_linear_top1`` (the whole test
split of a dataset read from disk).

For each condition group's data and model (the study's `data:`/`model:`/`trial:` sections and grid
cell: the batch size does not change an untrained network), and each seed of the study, this
prints the kNN and linear-probe top-1 of raw pixels and of the untrained network with the trial's
own evaluation (same bank, same queries, same k and temperature), then the mean and sd over seeds.
A trained representation is worth reading only next to these two rows.

Run: ``.venv/bin/python benchmarks/study_baselines.py search_spaces/studies/fmnist_ema.yaml [--seeds 0,1]``
(``--markdown`` prints a table for the README).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: the study's seeds)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--final-eval-size", type=int, default=None,
                        help="queries of the final evaluation (default: the study's, 0 = the whole test "
                             "split); 1000 reproduces the rows of studies whose trials predate it "
                             "(results/fmnist_ema, fmnist_batch: their final figures used the 1,000 eval queries)")
    args = parser.parse_args(argv)

    from er_core.config import TrialConfig
    from er_core.rules import EXIT_USAGE
    from search_spaces import StudyError, condition_groups, load_study
    from search_spaces.plan import trial_config
    from trainers.baselines import final_queries, random_network, raw_pixel_knn, raw_pixel_linear
    from trainers.trial_data import load_trial_data

    try:
        study = load_study(args.study)
    except StudyError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(study.seeds)
    # one row per distinct (data, backbone, projector) setting; the rest of a cell changes no baseline
    settings: dict[tuple, TrialConfig] = {}
    for group in condition_groups(study):
        config = TrialConfig.from_dict(trial_config(study, group, phase="replicate", seed=seeds[0]))
        if args.final_eval_size is not None:
            config = config.replace(final_eval_size=args.final_eval_size)
        key = (config.dataset, config.image_size, config.train_size, config.eval_size, config.knn_bank_size,
               config.backbone, config.projector_dim, config.projector_hidden_dim)
        settings.setdefault(key, config)
    rows = []
    for config in settings.values():
        data = load_trial_data(config)
        raw = (raw_pixel_knn(config, data), raw_pixel_linear(config, data))
        untrained = [random_network(config.replace(seed=s), data) for s in seeds]
        label = (f"{config.dataset} {config.image_size}px, bank {min(config.knn_bank_size, data.train_images.shape[0])}, "
                 f"{final_queries(config, data)[0].shape[0]} queries")
        rows.append((label, "raw pixels", [raw[0]], [raw[1]]))
        rows.append((label, f"untrained {config.backbone}", [u[0] for u in untrained], [u[1] for u in untrained]))
    for label, name, knn, linear in rows:
        spread = (lambda v: f"{statistics.mean(v):.3f}" + (f"±{statistics.stdev(v):.3f}" if len(v) > 1 else ""))
        if args.markdown:
            print(f"| {name} | {spread(knn)} | {spread(linear)} | {len(knn)} |")
        else:
            print(f"{label}: {name:<24} knn_top1 {spread(knn):<12} linear_top1 {spread(linear):<12} "
                  f"({len(knn)} seed{'s' if len(knn) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
