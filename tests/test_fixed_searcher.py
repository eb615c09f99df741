"""FixedConfigSearcher: hands out each config once, in order, and survives save/restore."""

from ray.tune.search import Searcher

from er_tune.fixed_searcher import FixedConfigSearcher


def test_suggests_each_config_once_then_finishes(tmp_path):
    configs = [{"seed": 0, "group": "a"}, {"seed": 1, "group": "a"}, {"seed": 0, "group": "b"}]
    searcher = FixedConfigSearcher(configs)
    first = searcher.suggest("t1")
    first["seed"] = 99  # callers may mutate what they get; the searcher's list is unaffected
    path = str(tmp_path / "state.pkl")
    searcher.save(path)
    restored = FixedConfigSearcher([])
    restored.restore(path)
    assert restored.suggest("t2") == {"seed": 1, "group": "a"}
    assert restored.suggest("t3") == {"seed": 0, "group": "b"}
    assert restored.suggest("t4") == Searcher.FINISHED
    assert searcher.suggest("t2") == {"seed": 1, "group": "a"}
