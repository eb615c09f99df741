"""The science core of er-tune: estimators, the ten objectives, models, data, collapse detection, and
the vocabulary every floor above shares (config, rules, outcome, power, io).

Plain Python and torch; it imports nothing from ``trainers``, ``search_spaces``, ``reports`` or
``er_tune`` and never Ray, so ``from er_core.objectives import build_objective`` is all a user who
wants only the ER objectives needs.
"""

__version__ = "0.1.0"
