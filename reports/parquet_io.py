"""Atomic Parquet writes with ``schema_version`` metadata (JSON: :mod:`er_tune.io`).

A table is written to ``<name>.parquet.tmp-<pid>`` in the target dir and moved into place with
``os.replace`` (atomic on POSIX), so readers see the old file or the new one, never a partial one;
a failed write removes its temp file.
"""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from er_tune import __version__

SCHEMA_VERSION = "2"  # 2: calibrated tests, Holm, survival table (1: Wilson/bootstrap)


def with_metadata(table: pa.Table) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata.update({b"schema_version": SCHEMA_VERSION.encode(),
                     b"er_tune_version": __version__.encode()})
    return table.replace_schema_metadata(metadata)


def write_table_atomic(table: pa.Table, path: str) -> None:
    """Write ``table`` to ``path`` atomically (temp file in the same dir + os.replace)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        pq.write_table(with_metadata(table), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

