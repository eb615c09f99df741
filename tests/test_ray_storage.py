"""Ray's developer APIs that trials use are reached through er_tune.ray_storage only, and are there.

When a Ray upgrade moves ``get_context().get_storage()`` or a ``StorageContext`` attribute, this
test fails naming it, instead of trials silently falling back to Ray's staging directory (where a
trial on a worker node loses its collapse events).
"""

from pathlib import Path

from er_tune.ray_storage import missing_apis

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_ray_has_every_api_the_adapter_uses():
    assert missing_apis() == [], f"Ray moved what er_tune/ray_storage.py reads: {missing_apis()}"


def test_no_other_module_reaches_into_private_ray():
    offenders = [str(path.relative_to(ROOT)) for folder in ("er_tune", "trainers", "er_core", "reports",
                                                            "search_spaces")
                 for path in (ROOT / folder).rglob("*.py")
                 if path.name != "ray_storage.py" and "._internal" in path.read_text()]
    assert offenders == []
