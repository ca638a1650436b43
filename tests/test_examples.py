"""Smoke tests: every example runs with a tiny setting and writes its figure."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples_loader import load_example

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    return load_example(name, f"example_{name}")


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


# the examples refuse bad command-line values before any work (one line, exit code 2)
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
