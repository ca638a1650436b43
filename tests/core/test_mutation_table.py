"""``tools/mutate.py``'s table stays applicable: every mutation's text occurs exactly once in its
file and its catching tests exist. An edit that moves a rule's code would otherwise turn its
mutation into a no-op that ``mutate.py`` only reports when someone runs it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _table() -> dict:
    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MUTATIONS


MUTATIONS = _table()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_applies_exactly_once_and_names_real_tests(name):
    path, old, new, tests = MUTATIONS[name]
    text = (ROOT / path).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{name}: its text occurs {text.count(old)} times in {path}"
    assert old != new, name
    assert tests, name
    for test in tests:
        assert (ROOT / test.split("::")[0]).exists(), f"{name}: no test file {test}"
