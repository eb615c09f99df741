"""Exit 1, naming what is missing, unless every distribution of an er-tune extra is installed.

The extra is read from the installed package's metadata (pyproject.toml as last installed), nested
extras (``er-tune[cluster,...]``) included, so the list lives in pyproject.toml alone.
Usage: ``.venv/bin/python scripts/check_extra.py test`` (what ``scripts/test.sh`` runs).
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys

NAME = re.compile(r"[A-Za-z0-9_.-]+")


def distributions_of(extra: str, requires: list[str]) -> set[str]:
    """Distribution names ``extra`` pulls in, following ``er-tune[...]`` self-references."""
    pending, seen, wanted = [extra], set(), set()
    while pending:
        current = pending.pop()
        seen.add(current)
        for line in requires:
            spec, _, marker = line.partition(";")
            if f'extra == "{current}"' not in marker:
                continue
            name = NAME.match(spec.strip()).group(0)
            if name != "er-tune":
                wanted.add(name)
                continue
            nested = NAME.findall(spec[spec.index("[") + 1:spec.index("]")])
            pending += [e for e in nested if e not in seen]
    return wanted


def main(extra: str) -> int:
    try:
        requires = metadata.requires("er-tune") or []
    except metadata.PackageNotFoundError:
        print("missing: er-tune itself", file=sys.stderr)
        return 1
    missing = []
    for name in sorted(distributions_of(extra, requires)):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        print("missing:", ", ".join(missing), file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "test"))
