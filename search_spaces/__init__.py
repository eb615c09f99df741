"""Study files: loader/validation (``parse``, ``study``) and the plan (groups, trials, seeds).

Ray-free: the Ray Tune searcher and scheduler that run a plan live on the service floor
(``er_tune.grouped``, ``er_tune.fixed_searcher``)."""

import os

from search_spaces.plan import (ConditionGroup, condition_groups, data_configs, describe, halving_of,
                                replicate_configs, search_trial_count, searched_params, trial_config, validate_command)
from search_spaces.parse import load_study, parse_study
from search_spaces.study import Study, StudyError, applies

STUDIES_DIR = os.path.join(os.path.dirname(__file__), "studies")

__all__ = ["ConditionGroup", "Study", "StudyError", "applies", "condition_groups", "data_configs", "describe", "halving_of",
           "load_study", "parse_study", "replicate_configs", "search_trial_count", "searched_params",
           "trial_config", "validate_command", "STUDIES_DIR"]
