"""Study files and the search machinery: loader/validation, plan, grouped searcher and ASHA."""

import os

from search_spaces.plan import (ConditionGroup, condition_groups, data_configs, describe, replicate_configs,
                                search_trial_count, searched_params, trial_config, validate_command)
from search_spaces.parse import load_study, parse_study
from search_spaces.study import Study, StudyError, applies

STUDIES_DIR = os.path.join(os.path.dirname(__file__), "studies")


def __getattr__(name):
    # Ray-dependent classes are imported on first use so `er-tune validate` stays light.
    if name in ("GroupedOptunaSearcher", "GroupedASHA"):
        from search_spaces import grouped
        return getattr(grouped, name)
    if name == "FixedConfigSearcher":
        from search_spaces.fixed_searcher import FixedConfigSearcher
        return FixedConfigSearcher
    raise AttributeError(name)


__all__ = ["ConditionGroup", "Study", "StudyError", "applies", "condition_groups", "data_configs", "describe",
           "load_study", "parse_study", "replicate_configs", "search_trial_count", "searched_params",
           "trial_config", "validate_command", "STUDIES_DIR", "GroupedOptunaSearcher", "GroupedASHA",
           "FixedConfigSearcher"]
