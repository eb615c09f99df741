"""Study keys for the tools around a study: ``loggers:`` and ``search: {storage: ...}``.

``loggers`` adds Ray's own tracker callbacks (``pip install er-tune[mlflow]`` / ``er-tune[wandb]``)::

    loggers: [mlflow, wandb]                      # defaults: MLFLOW_TRACKING_URI, W&B project = study
    loggers: {mlflow: {tracking_uri: "sqlite:///mlflow.db"}, wandb: {project: er, mode: offline}}

The options of each are the keyword arguments of ``ray.air.integrations.mlflow.MLflowLoggerCallback``
and ``ray.air.integrations.wandb.WandbLoggerCallback`` (the latter passes unknown ones to
``wandb.init``). ``search.storage`` is an Optuna storage URL (``postgresql://...``, ``mysql://...``,
``sqlite:///...``) or ``journal:PATH`` (Optuna's JournalStorage on a shared disk); the default is
SQLite in the experiment folder.

Credentials belong in the environment, not in the study file: any string in ``search.storage`` or
in a tracker's options may name environment variables as ``${VAR}``, expanded here (an unset one is
an error naming the key); the study file, and its copy in the experiment, keep only ``${VAR}``::

    search: {storage: "postgresql://ert:${OPTUNA_DB_PASSWORD}@db.lab:5432/optuna"}
    loggers: {mlflow: {tracking_uri: "https://mlflow.lab", tracking_token: "${MLFLOW_TRACKING_TOKEN}"}}
"""

from __future__ import annotations

import os
import re
from typing import Any

from search_spaces.study import StudyError

LOGGERS = ("mlflow", "wandb")
LOGGER_OPTIONS = {
    "mlflow": ("tracking_uri", "registry_uri", "experiment_name", "tags", "tracking_token", "save_artifact",
               "log_params_on_trial_end"),
    "wandb": None,  # free-form: WandbLoggerCallback passes unknown keys to wandb.init
}
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
STORAGE_FORMS = "an Optuna RDB URL (postgresql://..., mysql://..., sqlite:///...) or journal:PATH"


def expand_environment(path: str, key: str, value: Any) -> Any:
    """``value`` with every ``${VAR}`` replaced by the environment variable (recursively)."""
    if isinstance(value, dict):
        return {name: expand_environment(path, f"{key}.{name}", item) for name, item in value.items()}
    if isinstance(value, list):
        return [expand_environment(path, key, item) for item in value]
    if not isinstance(value, str):
        return value
    for name in ENV_REFERENCE.findall(value):
        if name not in os.environ:
            raise StudyError(path, key, f"environment variable {name} (named as ${{{name}}}) is not set",
                             "a variable set in the environment of `er-tune tune`")
    return ENV_REFERENCE.sub(lambda match: os.environ[match.group(1)], value)


def parse_loggers(path: str, value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise StudyError(path, "loggers", f"must be a list or a mapping, got {value!r}", ", ".join(LOGGERS))
    loggers = {}
    for name, options in value.items():
        if name not in LOGGERS:
            raise StudyError(path, "loggers", f"unknown logger {name!r}", ", ".join(LOGGERS))
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise StudyError(path, f"loggers.{name}", f"must be a mapping of options, got {options!r}")
        allowed = LOGGER_OPTIONS[name]
        for key in options:
            if allowed is not None and key not in allowed:
                raise StudyError(path, f"loggers.{name}.{key}", "unknown option", ", ".join(allowed))
        loggers[name] = expand_environment(path, f"loggers.{name}", dict(options))
    return loggers


def parse_optuna_storage(path: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    value = expand_environment(path, "search.storage", value)
    if not isinstance(value, str) or not (value.startswith("journal:") and len(value) > len("journal:")
                                          or "://" in value):
        shown = re.sub(r"//[^/@]*@", "//***@", value) if isinstance(value, str) else value
        raise StudyError(path, "search.storage", f"not an Optuna storage: {shown!r}", STORAGE_FORMS)
    return value
