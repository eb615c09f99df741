"""Study keys for the tools around a study: ``loggers:`` and ``search: {storage: ...}``.

``loggers`` adds Ray's own tracker callbacks (``pip install er-tune[mlflow]`` / ``er-tune[wandb]``)::

    loggers: [mlflow, wandb]                      # defaults: MLFLOW_TRACKING_URI, W&B project = study
    loggers: {mlflow: {tracking_uri: "sqlite:///mlflow.db"}, wandb: {project: er, mode: offline}}

The options of each are the keyword arguments of ``ray.air.integrations.mlflow.MLflowLoggerCallback``
and ``ray.air.integrations.wandb.WandbLoggerCallback`` (the latter passes unknown ones to
``wandb.init``). ``search.storage`` is an Optuna storage URL (``postgresql://...``, ``mysql://...``,
``sqlite:///...``) or ``journal:PATH`` (Optuna's JournalStorage on a shared disk); the default is
SQLite in the experiment folder.
"""

from __future__ import annotations

from typing import Any

from search_spaces.study import StudyError

LOGGERS = ("mlflow", "wandb")
LOGGER_OPTIONS = {
    "mlflow": ("tracking_uri", "registry_uri", "experiment_name", "tags", "tracking_token", "save_artifact",
               "log_params_on_trial_end"),
    "wandb": None,  # free-form: WandbLoggerCallback passes unknown keys to wandb.init
}
STORAGE_FORMS = "an Optuna RDB URL (postgresql://..., mysql://..., sqlite:///...) or journal:PATH"


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
        loggers[name] = dict(options)
    return loggers


def parse_optuna_storage(path: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not (value.startswith("journal:") and len(value) > len("journal:")
                                          or "://" in value):
        raise StudyError(path, "search.storage", f"not an Optuna storage: {value!r}", STORAGE_FORMS)
    return value
