"""Credentials in a study never reach the experiment folder or the terminal.

A study may carry credentials in two places: ``search.storage`` (``postgresql://user:PASSWORD@host/db``)
and the trackers' options (``loggers: {mlflow: {tracking_uri: https://user:PASSWORD@host,
tracking_token: TOKEN}}``). Study files should read them from the environment (``${VAR}``,
expanded by :mod:`search_spaces.observe_keys`), but a literal one is protected the same way:

- a *secret* is the password of a URL's user info, the value of a URL query parameter or of a
  tracker option whose name says it is one (:data:`SECRET_NAME`: password, token, secret, key...);
- :func:`mask` replaces every secret in a text with ``***`` (the ``study.yaml`` copy, error messages);
- :func:`protect` wraps each value holding a secret in :class:`Secret`, a ``str`` that pickles as
  its masked form (``postgresql://user:***@host/db``). Ray pickles the searcher, the callbacks and
  the run config into the experiment (``tuner.pkl``, searcher state); unpickling in a driver that
  protected the same study first (a resumed run) gives the real value back from this process's
  registry, unpickling anywhere else gives the masked text.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
SECRET_NAME = re.compile(r"pass(word)?|pwd|token|secret|credential|api_?key|access_?key|auth", re.IGNORECASE)
_REGISTRY: dict[str, str] = {}  # masked form -> real value, filled by protect() in this process


def _restore(masked: str) -> str:
    value = _REGISTRY.get(masked)
    return Secret(value, masked) if value is not None else masked


class Secret(str):
    """A string holding a credential; pickles and copies as its masked form (see module doc)."""

    masked: str

    def __new__(cls, value: str, masked: str) -> "Secret":
        secret = super().__new__(cls, value)
        secret.masked = masked
        _REGISTRY[masked] = value
        return secret

    def __reduce__(self):
        return _restore, (self.masked,)

    def __repr__(self) -> str:
        return repr(self.masked)


def url_secrets(url: str) -> list[str]:
    """The secrets of one URL: its password and the values of secret-named query parameters."""
    if "://" not in url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [value for name, value in parse_qsl(parts.query) if value and SECRET_NAME.search(name)]
    except ValueError:
        return []
    return found


def value_secrets(value: Any, name: str = "") -> list[str]:
    """Secrets inside an option value: the whole string under a secret-looking name, the
    secret parts of URLs, recursively through mappings and lists."""
    if isinstance(value, str):
        if name and SECRET_NAME.search(name) and value:
            return [value]
        return url_secrets(value)
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in value_secrets(item, str(key))]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in value_secrets(item, name)]
    return []


def study_secrets(study) -> list[str]:
    """Every secret of a parsed study (its Optuna storage and its trackers' options), longest first."""
    found = url_secrets(getattr(study.search, "storage", "") or "")
    found += value_secrets(dict(getattr(study, "loggers", None) or {}))
    return sorted(set(found), key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _wrap(value: Any, secrets: list[str], name: str = "") -> Any:
    if isinstance(value, str):
        masked = mask(value, secrets)
        return Secret(value, masked) if masked != value else value
    if isinstance(value, dict):
        return {key: _wrap(item, secrets, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_wrap(item, secrets, name) for item in value]
    return value


def protect(study):
    """The study with its secret-bearing values wrapped in :class:`Secret` and ``raw`` (the
    ``study.yaml`` copy) masked; the real values stay usable in this process."""
    secrets = study_secrets(study)
    if not secrets:
        return study
    search = dataclasses.replace(study.search, storage=_wrap(study.search.storage, secrets))
    loggers = {name: _wrap(dict(options), secrets) for name, options in (study.loggers or {}).items()}
    return dataclasses.replace(study, raw=mask(study.raw, secrets), search=search, loggers=loggers)
