"""Smoke tests: every example runs with a tiny setting and writes its figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name,args", [
    ("regression_to_mean", ["--samples", "200", "--steps", "1", "5"]),
    ("solver_comparison", ["--quick"]),
])
def test_example_writes_its_figure(tmp_path, name, args, capsys):
    path = _load(name).main(["--out", str(tmp_path), *args])
    assert Path(path).is_file() and Path(path).stat().st_size > 1000
    assert str(path) in capsys.readouterr().out
