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


@pytest.mark.parametrize(
    "name,args",
    [
        ("regression_to_mean", ["--samples", "200", "--steps", "1", "5"]),
        ("solver_comparison", ["--quick"]),
    ],
)
def test_example_writes_its_figure(tmp_path, name, args, capsys):
    path = _load(name).main(["--out", str(tmp_path), *args])
    assert Path(path).is_file() and Path(path).stat().st_size > 1000
    assert str(path) in capsys.readouterr().out


def test_dirac_mixture_lands_with_the_weights_and_trades_distortion(tmp_path, capsys):
    """Tiny setting (400 samples, 40 steps): figure written, landing frequencies within 4 binomial
    standard errors of the weights, early stopping trades distortion for perception."""
    res = _load("dirac_mixture").main(
        ["--out", str(tmp_path), "--samples", "400", "--steps", "40", "--show", "50"]
    )
    path = res["path"]
    assert Path(path).is_file() and Path(path).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert str(path) in printed and "landing frequencies" in printed
    for w, f in zip(res["weights"], res["landing"], strict=True):
        assert abs(f - w) < 4 * (w * (1 - w) / 400) ** 0.5, (res["landing"], res["weights"])
    first, last = res["early_stopping"][0], res["early_stopping"][-1]
    assert (first["t_end"], last["t_end"]) == (1.0, 0.0)
    assert first["mse"] < last["mse"]  # the MMSE output (t_end = 1) has the least distortion
    assert first["on_centre"] < 0.1 < 0.95 < last["on_centre"]  # ... and looks least like data
    assert last["energy"] < first["energy"]
