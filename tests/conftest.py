"""Suite-wide fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _environment_restored_after_each_test():
    """Give every test the environment the previous one started with.

    ``er-tune tune`` run in-process (``er_tune.cli.main``) sets Ray/Tune variables in ``os.environ``
    for the Ray it starts (e.g. ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``); left behind, they changed
    what a later test's own ``tune.Tuner`` wrote (no ``result.json``), so that test passed alone and
    failed in the suite.
    """
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
