"""Before/after figures of issue 11 (items 1-6), measured side by side in one run.

Each "before" is the old behaviour reproduced with today's code (the cosine EMA schedule, trainable
DeepCluster-v2 prototypes, the resubstitution entropy of the clean images, the pooled SimCLR-ER
entropy, the absolute collapse thresholds), so both columns come from the same networks and data.

Run: ``python benchmarks/science_fidelity.py [--section ema,prototypes,bound,cancel,kde,init]``
(about 10 minutes on one CPU thread; ``--quick`` uses smaller evaluation sets for ``init``).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from er_core.collapse import CollapseMonitor
from er_core.config import TrialConfig
from er_core.estimators import kde_entropy, vmf_reconstruction
from er_core.models import BACKBONES, build_network, ema_momentum
from er_core.objectives import functional as fn
from trainers.diagnostics import Diagnostics, _forward_chunks
from trainers.optim import build_optimizer
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.trial_data import load_trial_data

DEMO = dict(image_size=16, train_size=1536, eval_size=512, knn_bank_size=1024, batch_size=64, projector_dim=64,
            projector_hidden_dim=256, num_prototypes=32, warmup_epochs=1, seed=0)


class _Writer:
    def step_scalars(self, step, **values):
        pass


def _distance(teacher, student) -> tuple[float, float]:
    pairs = [(teacher.network.backbone, student.backbone), (teacher.network.projector, student.projector)]
    diff = sum(float((t - s.detach()).pow(2).sum()) for tp, sp in pairs for t, s in zip(tp.parameters(), sp.parameters()))
    norm = sum(float(s.detach().pow(2).sum()) for _, sp in pairs for s in sp.parameters())
    return math.sqrt(diff), math.sqrt(diff / norm)


def section_ema(epochs: int = 3) -> None:
    print(f"\n## 1. EMA 0: teacher-student parameter distance after each step (BYOL, demo setting, {epochs} epochs)")
    for schedule in ("cosine", "constant"):
        config = TrialConfig(method="byol", ema=0.0, ema_schedule=schedule, epochs=epochs, **DEMO)
        data = load_trial_data(config)
        state = build_state(config, data)
        step_fn = TrainingStep(state, data)
        rows, update = [], state.teacher.update

        def measured(student, momentum, update=update, state=state, rows=rows):
            update(student, momentum)
            rows.append((state.step + 1, momentum, *_distance(state.teacher, student)))

        state.teacher.update = measured
        for epoch in range(1, epochs + 1):
            step_fn.run_epoch(epoch, _Writer())
        total = len(rows)
        marks = sorted({1, total // 4, total // 2, 3 * total // 4, int(0.9 * total), total})
        text = ", ".join(f"step {rows[m - 1][0]} (m={rows[m - 1][1]:.3f}): {rows[m - 1][2]:.3g} "
                         f"({100 * rows[m - 1][3]:.2f}% of |student|)" for m in marks)
        print(f"- {schedule}: max {max(r[2] for r in rows):.3g}; {text}")


def section_prototypes() -> None:
    print("\n## 2. DeepCluster-v2: prototype drift from the k-means centroids after one epoch (demo setting)")
    for variant in ("original", "er"):
        for trained in (True, False):
            config = TrialConfig(method="deepcluster", variant=variant, epochs=2, **DEMO)
            data = load_trial_data(config)
            state = build_state(config, data)
            if trained:  # the old behaviour: prototypes in the optimiser (weight decay, momentum)
                state.net.prototypes.weight.requires_grad_(True)
                state.optimizer = build_optimizer([state.net, state.objective], config)
            centroids, set_weights = [], state.net.prototypes.set_weights
            state.net.prototypes.set_weights = lambda c, keep=centroids, set_=set_weights: (keep.append(c.clone()),
                                                                                              set_(c))
            step_fn = TrainingStep(state, data)
            drifts = []
            for epoch in (1, 2):
                step_fn.run_epoch(epoch, _Writer())
                w, c = state.net.prototypes.weight.detach(), centroids[-1]
                cos = F.cosine_similarity(w, c, dim=1).clamp(-1, 1)
                drifts.append((float((w - c).norm() / c.norm()), float(torch.rad2deg(torch.acos(cos)).max()),
                               float(torch.rad2deg(torch.acos(cos)).mean()), torch.equal(w, c)))
            label = "before (trained by SGD)" if trained else "after (frozen)"
            print(f"- {variant}, {label}: " + "; ".join(
                f"epoch {i}: {'W == C exactly' if d[3] else f'|W-C|/|C| {d[0]:.3g}, angle max {d[1]:.1f} deg, mean {d[2]:.1f} deg'}"
                for i, d in enumerate(drifts, 1)))


def _train(config: TrialConfig, epochs: int):
    data = load_trial_data(config)
    state = build_state(config, data)
    step_fn = TrainingStep(state, data)
    for epoch in range(1, epochs + 1):
        step_fn.run_epoch(epoch, _Writer())
    return state.net, data


def _old_and_new(net, config, data, kappa):
    diagnostics = Diagnostics(config, data, torch.device("cpu"))
    net.eval()
    identity = lambda x: x  # noqa: E731
    _, z, _ = _forward_chunks(net, data.eval_images, diagnostics._clean, torch.device("cpu"), False)
    v1, v2 = diagnostics._eval_views()
    _, z1, _ = _forward_chunks(net, v1, identity, torch.device("cpu"), False)
    _, z2, _ = _forward_chunks(net, v2, identity, torch.device("cpu"), False)
    zn, z1n, z2n = (F.normalize(t.double(), dim=1) for t in (z, z1, z2))
    r = float(vmf_reconstruction(z1n, z2n, kappa))
    h_old = float(kde_entropy(zn, kappa))
    h_new = 0.5 * float(kde_entropy(z1n, kappa, leave_one_out=True) + kde_entropy(z2n, kappa, leave_one_out=True))
    return h_old, h_old - r, h_new, h_new - r, z1n, z2n


def section_bound(epochs: int = 5) -> None:
    print(f"\n## 3-4. er_entropy / er_bound, old (resubstitution Ĥ of clean images) vs new (leave-one-out Ĥ "
          f"per view on the same views as R̂); convnet, demo data, {epochs} epochs")
    networks = {
        "untrained": dict(method="simclr", epochs=epochs),
        "SimCLR (healthy)": dict(method="simclr", epochs=epochs),
        "SimCLR-ER (healthy)": dict(method="simclr", variant="er", epochs=epochs),
        "SimCLR-ER lambda=0 (complete collapse)": dict(method="simclr", variant="er", entropy_weight=0.0,
                                                       epochs=epochs),
        "DINO without centering, EMA 0 (cluster collapse)": dict(method="dino", ema=0.0, ema_schedule="constant",
                                                                  dino_centering=False, epochs=epochs),
    }
    views = {}
    for name, overrides in networks.items():
        config = TrialConfig(**{**DEMO, **overrides})
        net, data = _train(config, 0 if name == "untrained" else epochs)
        for kappa in (10.0, 30.0):
            h_old, b_old, h_new, b_new, z1n, z2n = _old_and_new(net, config, data, kappa)
            print(f"- {name}, kappa_eval {kappa:g}: er_entropy {h_old:.2f} -> {h_new:.2f}; "
                  f"er_bound {b_old:.2f} -> {b_new:.2f}")
        views[name] = (z1n, z2n)
    return views


def _cancelled(entropy, n1, n2, kappa):
    n1, n2 = n1.clone().requires_grad_(True), n2.clone().requires_grad_(True)
    g_r = torch.autograd.grad(vmf_reconstruction(n1, n2, kappa), (n1, n2))
    g_h = torch.autograd.grad(entropy(n1, n2), (n1, n2))
    towards = lambda a, b: F.normalize(b - (a * b).sum(1, keepdim=True) * a, dim=1)  # noqa: E731
    directions = (towards(n1.detach(), n2.detach()), towards(n2.detach(), n1.detach()))
    pull = sum((-g * u).sum() for g, u in zip(g_r, directions))
    push = sum((g * u).sum() for g, u in zip(g_h, directions))
    return float(-push / pull)


def section_cancel(views=None) -> None:
    print("\n## 5. SimCLR-ER: share of the reconstruction pull cancelled by the entropy gradient (kappa 10, B 256)")
    pooled = lambda a, b: kde_entropy(torch.cat([a, b]), 10.0)  # noqa: E731
    per_view = lambda a, b: fn.simclr_er(a, b, 10.0)[1]  # noqa: E731
    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(256, 128, generator=g, dtype=torch.float64), dim=1)
    for sigma in (0.01, 0.02, 0.03, 0.04, 0.05):
        z2 = F.normalize(z1 + sigma * torch.randn(256, 128, generator=g, dtype=torch.float64), dim=1)
        cos = float((z1 * z2).sum(1).mean())
        print(f"- synthetic d 128, mean cos(z1, z2) {cos:.3f}: pooled {100 * _cancelled(pooled, z1, z2, 10.0):.1f}%, "
              f"per view {100 * _cancelled(per_view, z1, z2, 10.0):.1f}%")
    for name, (a, b) in (views or {}).items():
        a, b = a[:256], b[:256]
        if float((a * b).sum(1).mean()) > 0.999:
            continue  # collapsed: no direction from a view to its positive
        print(f"- {name} eval views (d {a.shape[1]}, mean cos {float((a * b).sum(1).mean()):.3f}): "
              f"pooled {100 * _cancelled(pooled, a, b, 10.0):.1f}%, per view {100 * _cancelled(per_view, a, b, 10.0):.1f}%")


def section_kde() -> None:
    print("\n## 4. KDE entropy: uniform sample vs ten tight clusters (gap in nats, resubstitution vs leave-one-out)")
    g = torch.Generator().manual_seed(0)
    for d, n, kappa in ((128, 2000, 30.0), (64, 512, 30.0), (128, 2000, 10.0)):
        u = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
        c = F.normalize(torch.randn(10, d, generator=g, dtype=torch.float64), dim=1)
        z = F.normalize(c[torch.arange(n) % 10] + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
        gaps = [float(kde_entropy(u, kappa, leave_one_out=loo) - kde_entropy(z, kappa, leave_one_out=loo))
                for loo in (False, True)]
        print(f"- d {d}, N {n}, kappa {kappa:g}: resubstitution {gaps[0]:.2f}, leave-one-out {gaps[1]:.2f}")


def section_init(quick: bool) -> None:
    print("\n## 6. Detector values of untrained networks (diagnostics on shapes, 32 px) and whether a "
          "detector fires (patience 2): absolute thresholds (before) vs calibrated (after)")
    heads = [dict(projector_dim=128, projector_hidden_dim=512, num_prototypes=64)]
    if not quick:
        heads.append(dict(projector_dim=256, projector_hidden_dim=4096, num_prototypes=1024))  # GPU studies
    size = 128 if quick else 512
    for backbone in BACKBONES:
        for head in heads:
            for seed in (0, 1):
                config = TrialConfig(method="dino", backbone=backbone, image_size=32, train_size=size, eval_size=size,
                                     knn_bank_size=size, batch_size=64, seed=seed, **head)
                torch.manual_seed(seed)
                metrics = Diagnostics(config, load_trial_data(config), torch.device("cpu"))(build_network(config))
                fired = []
                for calibrated in (False, True):
                    monitor = CollapseMonitor(config.collapse, discrete=True, num_classes=10)
                    if calibrated:
                        monitor.calibrate(metrics)
                    events = [e for epoch in (1, 2) for e in monitor.observe(metrics, epoch=epoch, step=epoch)]
                    fired.append(",".join(e.kind for e in events) or "none")
                print(f"- {backbone}, heads {head['projector_dim']}/{head['projector_hidden_dim']}/"
                      f"K={head['num_prototypes']}, seed {seed}: std_ratio {metrics['std_ratio']:.3f}, "
                      f"rankme {metrics['rankme']:.1f}, H(p̄)/log K {metrics['assign_entropy']:.3f}, "
                      f"mean H(p_i)/log K {metrics['assign_sample_entropy']:.3f}; fires before: {fired[0]}, "
                      f"after: {fired[1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--section", default="ema,prototypes,bound,cancel,kde,init")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = args.section.split(",")
    print(f"ema_momentum(0, s, 100, 'cosine') at 0/25/50/75/90%: "
          + ", ".join(f"{ema_momentum(0.0, s, 100):.3f}" for s in (0, 25, 50, 75, 90)))
    if "ema" in sections:
        section_ema()
    if "prototypes" in sections:
        section_prototypes()
    views = section_bound() if "bound" in sections else None
    if "cancel" in sections:
        section_cancel(views)
    if "kde" in sections:
        section_kde()
    if "init" in sections:
        section_init(args.quick)


if __name__ == "__main__":
    main()
