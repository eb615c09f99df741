"""What produced an experiment: the code, the packages, the machine and the data it read.

``er-tune tune`` writes :func:`run_provenance` to ``<experiment>/provenance.json`` when it starts a
phase; ``er-tune report`` copies it into its ``manifest.json`` (with the report's own code and
package versions), so a table can be traced to the commit, the packages, the device and the exact
data behind it. Nothing here records an absolute path of the machine: a study's ``data_root`` stays
in ``study.yaml``; the data is identified by its fingerprint (:meth:`DatasetBundle.fingerprint
<er_core.data.bundle.DatasetBundle.fingerprint>`).

* code: ``er_tune`` (the package version) and, when the source is a git checkout, ``git_commit``
  (``git rev-parse HEAD``) and ``git_dirty`` (``git status --porcelain --untracked-files=no`` is
  not empty: tracked files differ from the commit); both null outside a checkout or without git.
* packages: the installed versions of :data:`PACKAGES` (null when one is not installed).
* device: the CPU model (``/proc/cpuinfo``'s ``model name``, else ``platform.processor()``), the
  logical CPU count, and the CUDA devices torch sees (name and count); on a Ray cluster the
  launcher adds the cluster's CPU/GPU totals and accelerator types (the trials may run elsewhere).
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from er_core import __version__

PACKAGES = ("torch", "torchvision", "ray", "optuna", "numpy", "scipy", "pandas", "pyarrow")
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", SOURCE_DIR, *args], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version() -> dict:
    """``{"er_tune", "git_commit", "git_dirty"}`` of the source this process runs (see above)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"er_tune": __version__, "git_commit": commit.strip() if commit else None,
            "git_dirty": None if status is None else bool(status.strip())}


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def device() -> dict:
    """CPU model and count, and the CUDA devices torch sees (``gpus``: one name per device)."""
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken CUDA setup must not stop a run from being recorded
        gpus = []
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "gpu_count": len(gpus),
            "gpus": gpus, "platform": platform.platform()}


def run_provenance(data: list[dict] | None = None, cluster: dict | None = None) -> dict:
    """The record ``er-tune tune`` keeps in the experiment: code, packages, device, data."""
    return {**code_version(), "versions": package_versions(), "device": device(),
            "cluster": cluster, "data": data or []}
