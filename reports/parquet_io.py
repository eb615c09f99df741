"""Atomic Parquet writes with ``schema_version`` metadata (:func:`er_core.io.atomic_path`, as
every atomic write). A report table (``reports.columns.TABLES``, named by the
file's stem or ``table=``) is written with each field's ``unit``/``description`` metadata and its
label strings dictionary-encoded (``reports.columns.annotate``).
"""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from er_core import __version__
from er_core.io import atomic_path

from .columns import TABLES, annotate

# 3: field metadata (unit, description), dictionary-encoded labels, hp_* null where the group did
#    not search the key, no Ray bookkeeping columns in epochs (time_total_s -> wall_time_s),
#    trial_dir relative to the experiment, trials.dataset.
# 4: collapse grades in trials, any-collapse verdict families, survival ``endpoint``,
#    stability ``grid_axes``/``holm_m``/``comparison`` metadata.
# 5: trials.partial_graded; grade columns null for a trial never graded for partial collapse
#    (and its variant's partial/any-collapse figures); verdict ``untested`` for a cell that
#    cannot inform a family; *_min_detectable at Holm's m with the cell counted.
# 2: calibrated tests, Holm, survival table. 1: Wilson/bootstrap.
SCHEMA_VERSION = "5"


def with_metadata(table: pa.Table) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata.update({b"schema_version": SCHEMA_VERSION.encode(),
                     b"er_tune_version": __version__.encode()})
    return table.replace_schema_metadata(metadata)


def write_table_atomic(table: pa.Table, path: str, table_name: str | None = None) -> None:
    """Write ``table`` to ``path`` atomically (temp file in the same dir + os.replace).

    ``table_name`` (default: the file's stem) selects the declared columns of a report table.
    """
    name = table_name or os.path.basename(path).split(".", 1)[0]
    if name in TABLES:
        table = annotate(name, table)
    with atomic_path(path) as tmp:
        pq.write_table(with_metadata(table), tmp)
