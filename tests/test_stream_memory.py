"""Streaming trains an epoch of an ImageFolder larger than the memory it is allowed; loading it does not fit.

In a fresh interpreter (``python -c``; the fork server the loaders start from must not inherit pytest),
the test writes an ImageFolder whose training split, decoded at the training ``image_size``, is
``DECODED_MB`` (3,328 images of 96 x 96 x 3 bytes: 88 MiB; the PNG files are 16 px, a few MB on the
disk) and sets a budget of half that. It trains one epoch of SimCLR (``convnet``, batch 8, the grey
augmentation preset, whose missing colour jitter saves a quarter of the time) with ``streaming:
true``, one loader process and one torch thread (the machine's two cores: one decodes, one trains),
and measures what the epoch adds:

- the training process: its peak resident set during the epoch (``VmHWM``, reset by writing 5 to
  ``/proc/self/clear_refs``) minus its resident set before the epoch. Before it, a warm-up epoch over
  the in-memory kNN bank (64 images) allocates the trainer's own working memory (kernels, autograd
  and allocator buffers: tens of MB at the first step, the same for any dataset);
- the loader processes and the fork server they start from (all descendants): each one's peak
  private memory (``Private_Clean + Private_Dirty`` of ``/proc/<pid>/smaps_rollup``, sampled every
  0.25 s: a read costs the kernel 15-20 ms for a process that maps torch; a loader's memory is flat
  after its first batch), less what it held before the epoch. Private, because a loader shares torch's pages with the
  fork server copy-on-write: its resident set counts them, its private memory does not.

Their sum must stay under the budget. Then, in the same process, the same folder is loaded into
memory (the default, ``streaming: false``): its resident set grows by at least 95% of the decoded
split, over the budget: the limit bites.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CLASSES, PER_CLASS, IMAGE_SIZE, SOURCE_SIZE = 8, 416, 96, 16
BATCH, LOADER_WORKERS = 8, 1
DECODED_MB = CLASSES * PER_CLASS * 3 * IMAGE_SIZE ** 2 / 2**20
BUDGET_MB = DECODED_MB / 2
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_folder(root: str) -> None:
    """``root/train/c<k>/<i>.png`` (PER_CLASS per class) and a 2-image ``root/val/c<k>``, 16 px noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", PER_CLASS), ("val", 2)):
        for label in range(CLASSES):
            directory = os.path.join(root, split, f"c{label}")
            os.makedirs(directory)
            pixels = rng.integers(0, 256, (count, SOURCE_SIZE, SOURCE_SIZE, 3), dtype=np.uint8)
            for index in range(count):
                Image.fromarray(pixels[index]).save(os.path.join(directory, f"{index:04d}.png"))


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _private_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return None
    return sum(int(fields[key].split()[0]) for key in ("Private_Clean", "Private_Dirty")) / 1024


class TreeSampler:
    """Peak private memory of every descendant process, sampled in a thread (see the module docstring)."""

    def __init__(self, interval: float = 0.25) -> None:
        import threading

        self.interval, self.peak = interval, {}
        self.before = {pid: _private_mb(pid) or 0.0 for pid in _descendants(os.getpid())}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pids, tick = [], 0
        while not self._stop.wait(self.interval):
            if tick % 4 == 0:  # new loaders appear when the epoch starts and live through it
                pids = _descendants(os.getpid())
            tick += 1
            for pid in pids:
                value = _private_mb(pid)
                if value is not None:
                    self.peak[pid] = max(self.peak.get(pid, 0.0), value)

    def stop(self) -> float:
        """Sum over the descendants of (peak - private memory before the epoch), in MB."""
        self._stop.set()
        self._thread.join()
        return sum(max(0.0, peak - self.before.get(pid, 0.0)) for pid, peak in self.peak.items())


def measure(root: str) -> dict:
    """Run in the fresh interpreter: the streamed epoch's memory, then the in-memory load's."""
    import torch

    from er_core.config import TrialConfig
    from trainers.state import build_state
    from trainers.steps import TrainingStep
    from trainers.trial_data import load_trial_data

    class Losses:
        def __init__(self):
            self.values = []

        def step_scalars(self, step, **values):
            self.values.append(values["loss"])

    config = TrialConfig(method="simclr", dataset="imagefolder", data_root=root, image_size=IMAGE_SIZE,
                         train_size=CLASSES * PER_CLASS, eval_size=CLASSES * 2, backbone="convnet",
                         batch_size=BATCH, epochs=1, warmup_epochs=0, log_every_n_steps=1, projector_dim=16,
                         projector_hidden_dim=64, knn_bank_size=64, streaming=True,
                         loader_workers=LOADER_WORKERS, augment="gray", device="cpu")
    data = load_trial_data(config)  # decodes the bank (64 images) and the test split; starts the fork server
    assert data.streaming and data.num_train == CLASSES * PER_CLASS
    state = build_state(config, data)
    step = TrainingStep(state, data)
    # warm-up: an epoch over the in-memory bank allocates the trainer's working memory
    bank = dataclasses.replace(data, train_files=None)
    warm = TrainingStep(build_state(config, bank), bank)
    warm.run_epoch(1, Losses())
    del warm
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # VmHWM := VmRSS
    before = _status_mb("VmRSS")
    children = TreeSampler()
    losses = Losses()
    start, cpu = time.perf_counter(), time.process_time()
    outcome = step.run_epoch(1, losses)
    epoch_s, epoch_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    children_mb = children.stop()
    epoch_mb = _status_mb("VmHWM") - before
    step.close()

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status_mb("VmRSS")
    memory = load_trial_data(config.replace(streaming=False))
    load_mb = _status_mb("VmHWM") - before
    return {"steps": len(losses.values), "finite": bool(np.isfinite(losses.values).all()),
            "diverged": outcome.diverged, "epoch_s": epoch_s, "epoch_cpu_s": epoch_cpu_s,
            "epoch_process_mb": epoch_mb, "epoch_loaders_mb": children_mb, "memory_load_mb": load_mb, "memory_train_shape": list(memory.train_images.shape),
            "loaders": {"before": children.before, "peak": children.peak}}


def test_streamed_epoch_stays_within_a_budget_the_in_memory_load_exceeds(tmp_path):
    root = str(tmp_path / "folder")
    write_folder(root)
    code = textwrap.dedent(f"""
        import json, torch
        torch.set_num_threads(1)  # the loader process takes the other core
        from tests.test_stream_memory import measure
        print("RESULT " + json.dumps(measure({root!r})))
    """)
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"decoded split {DECODED_MB:.1f} MiB, budget {BUDGET_MB:.1f} MiB: {result}")
    assert result["steps"] == CLASSES * PER_CLASS // BATCH and result["finite"] and not result["diverged"]
    streamed_mb = result["epoch_process_mb"] + result["epoch_loaders_mb"]
    assert streamed_mb < BUDGET_MB, result
    assert result["memory_train_shape"] == [CLASSES * PER_CLASS, 3, IMAGE_SIZE, IMAGE_SIZE]
    assert result["memory_load_mb"] > max(BUDGET_MB, 0.95 * DECODED_MB), result
