"""Review: the examples refuse bad command-line values before any work (one line, exit code 2)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"review_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--nfe", "10", "0"], "--nfe"),  # failed in the DPS job, after BIRD's validation runs
        (["--bird-steps", "0"], "--bird-steps"),
        (["--bird-iterations", "0"], "--bird-iterations"),
        (["--retrain", "--train-steps", "0"], "--train-steps"),
        (["--noise", "-0.1"], "--noise"),  # failed after the model was trained or loaded
        (["--noise", "nan"], "--noise"),
    ],
)
def test_compare_restoration_refuses_bad_values_in_parse(args, named, capsys):
    mod = _load("compare_restoration")
    with pytest.raises(SystemExit) as exc:
        mod.parse(["--out", "unused", *args])
    assert exc.value.code == 2
    assert f"error: {named}" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--steps", "1", "5", "0"], ["--samples", "0"], ["--sigma", "0"]])
def test_regression_to_mean_refuses_bad_values_before_solving(args, tmp_path, capsys):
    mod = _load("regression_to_mean")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--out", str(tmp_path), "--samples", "20", *args])
    assert exc.value.code == 2 and "must be" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
