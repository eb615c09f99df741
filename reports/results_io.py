"""Fast reading of many result.json files into one Arrow table.

Per-line ``json.loads`` over 1 M lines costs seconds and gigabytes of dicts, so the files' bytes are
concatenated in chunks of files and parsed by ``pyarrow.json.read_json`` (C++). A chunk that fails
(corrupt/truncated line, type clash) falls back to per-file parsing, and a failing file to per-line
``json.loads`` that skips and names the bad lines. Row offsets per file give each trial's first
and last line and best knn_top1 without materialising Python rows.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import json as arrow_json

CHUNK_FILES = 1000
_READ_OPTIONS = arrow_json.ReadOptions(block_size=1 << 22)  # several blocks per chunk: parsed in parallel


def _parse(data: bytes) -> pa.Table:
    return arrow_json.read_json(pa.BufferReader(data), read_options=_READ_OPTIONS)


def json_objects(data: bytes, name: str) -> tuple[list[dict], list[str]]:
    """JSON objects of a JSON-lines blob; unreadable lines are skipped and named in ``problems``."""
    rows, problems = [], []
    for line_number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
            rows.append(row)
        except ValueError as exc:
            problems.append(f"{name} line {line_number} unreadable ({type(exc).__name__})")
    return rows, problems


def _per_line(data: bytes, name: str) -> tuple[pa.Table, list[str]]:
    rows, problems = json_objects(data, name)
    flat = [{key: value for key, value in row.items() if not isinstance(value, (dict, list))} for row in rows]
    return pa.Table.from_pylist(flat), problems


def _one_file(data: bytes, name: str) -> tuple[pa.Table, list[str]]:
    if b"\n\n" not in data and not data.startswith(b"\n"):
        try:
            return _parse(data), []
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return _per_line(data, name)


def _flat(table: pa.Table) -> pa.Table:
    keep = [index for index, column in enumerate(table.schema) if not pa.types.is_nested(column.type)]
    return table.select(keep)


def read_many(blobs: list[bytes], name: str = "result.json"):
    """Parse each blob (file contents); return (table, counts per blob, problems per blob)."""
    tables, counts, problems = [], [], [[] for _ in blobs]
    for start in range(0, len(blobs), CHUNK_FILES):
        chunk = [blob if blob.endswith(b"\n") or not blob else blob + b"\n" for blob in
                 blobs[start:start + CHUNK_FILES]]
        clean = all(b"\n\n" not in blob and not blob.startswith(b"\n") for blob in chunk)
        parsed = None
        if clean:
            try:
                parsed = _parse(b"".join(chunk)) if any(chunk) else None
                lines = [blob.count(b"\n") for blob in chunk]
                if parsed is not None and parsed.num_rows != sum(lines):
                    parsed = None
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                parsed = None
        if parsed is not None or not any(chunk):
            tables.append(_flat(parsed) if parsed is not None else pa.table({}))
            counts += [blob.count(b"\n") for blob in chunk]
            continue
        for offset, blob in enumerate(chunk):
            one, file_problems = _one_file(blob, name) if blob else (pa.table({}), [])
            problems[start + offset] = file_problems
            tables.append(_flat(one))
            counts.append(one.num_rows)
    tables = [table for table in tables if table.num_rows]
    table = (pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({}))
    return table, counts, problems


def first_last(table: pa.Table, counts: list[int]) -> tuple[list, list, np.ndarray]:
    """First-row dicts, last-row dicts (None for empty) and best knn_top1 per blob (nan if none)."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    has = counts > 0
    firsts = table.take(pa.array(starts[has])).to_pylist() if has.any() else []
    lasts = table.take(pa.array(ends[has] - 1)).to_pylist() if has.any() else []
    best = np.full(len(counts), np.nan)
    if "knn_top1" in table.column_names and has.any():
        knn = pc.cast(table["knn_top1"], pa.float64()).to_numpy(zero_copy_only=False)
        knn = np.where(np.isnan(knn), -np.inf, knn)
        per_blob = np.maximum.reduceat(knn, starts[has])
        best[has] = np.where(np.isinf(per_blob), np.nan, per_blob)
    first_rows, last_rows = iter(firsts), iter(lasts)
    return ([next(first_rows) if nonempty else None for nonempty in has],
            [next(last_rows) if nonempty else None for nonempty in has], best)


def drop_superseded(table: pa.Table, counts: list[int]) -> tuple[pa.Table, list[int], list[int]]:
    """Keep, per blob, only the rows of the run that produced the trial's current history.

    A trial resumed from the checkpoint of epoch k (driver restored, node lost, retry) reports
    epochs k+1, k+2, ... again after rows that may already hold them. A row is superseded when a
    later row of the same blob has an epoch <= its own; what remains is strictly increasing in
    ``epoch`` (rows 1,2,3,2,3,4 -> 1,2,3,4 with the re-run 2,3 kept; 1,2,3,2 -> 1,2). Blobs without
    an ``epoch`` column are left alone. Returns ``(table, counts, dropped per blob)``.
    """
    if "epoch" not in table.column_names or table.num_rows == 0:
        return table, list(counts), [0] * len(counts)
    epochs = pc.cast(table["epoch"], pa.float64()).to_numpy(zero_copy_only=False)
    keep = np.ones(len(epochs), dtype=bool)
    new_counts, dropped, start = [], [], 0
    for count in counts:
        later = np.inf
        for row in range(start + count - 1, start - 1, -1):
            if np.isnan(epochs[row]):
                continue
            if epochs[row] >= later:
                keep[row] = False
            else:
                later = epochs[row]
        kept = int(keep[start:start + count].sum())
        new_counts.append(kept)
        dropped.append(count - kept)
        start += count
    if keep.all():
        return table, new_counts, dropped
    return table.filter(pa.array(keep)), new_counts, dropped
