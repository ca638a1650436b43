"""What the demos show: the photo figure's columns and panels, the perception–distortion note,
and the toy demo's tables against their closed forms (docs/math.md §2a, §2c)."""

import math

import pytest
import torch

from flowrestore.demo import photos
from flowrestore.demo.settings import plan_demo
from flowrestore.demo.toy import gaussian_table, mixture_table
from flowrestore.oracles import GaussianOracle


@pytest.fixture(scope="module")
def deblur(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "demo"
    return plan_demo(tasks=("deblur",), out=str(out)).tasks[0]


def _row(solver, steps, nfe, *, output="last", t_end=None):
    # images are distinct objects so that a column can be matched to its row by identity
    return {
        "solver": solver,
        "steps": steps,
        "nfe": nfe,
        "output": output,
        "t_end": t_end,
        "images": torch.full((2, 1, 4, 4), float(nfe)),
        "psnr_per_image": [float(nfe), float(nfe) + 0.5],
        "psnr": float(nfe),
        "hf_ratio": 0.5 + 0.1 * nfe,
    }


def test_figure_columns_degraded_one_step_three_default_rows_clean(deblur):
    default = deblur.spec.method.default_solver
    rows = [_row("input", 0, 0), _row("euler", 1, 1), _row("euler", 5, 5)]
    rows += [_row(default, n, n) for n in (2, 4, 6, 8, 10)]
    clean = torch.zeros(2, 1, 4, 4)
    cols = photos._columns(deblur, rows, clean)
    assert [c[0] for c in cols] == [
        "degraded",
        "euler NFE 1",
        f"{default} NFE 2",
        f"{default} NFE 6",  # the middle of five: index 5 // 2
        f"{default} NFE 10",
        "clean",
    ]
    assert cols[0][1] is rows[0]["images"] and cols[0][2] is rows[0]["psnr_per_image"]
    assert cols[1][1] is rows[1]["images"]
    assert cols[-1][1] is clean and cols[-1][2] is None


def test_without_the_default_solver_the_first_solver_run_is_shown(deblur):
    rows = [_row("input", 0, 0), _row("heun", 3, 5), _row("euler", 2, 2), _row("heun", 10, 19)]
    cols = photos._columns(deblur, rows, torch.zeros(2, 1, 4, 4))
    assert [c[0] for c in cols] == ["degraded", "heun NFE 5", "heun NFE 19", "clean"]
    note = photos._perception_distortion(deblur, rows)
    assert note is None  # no 1-NFE row to compare with


def test_perception_distortion_compares_one_evaluation_with_the_most_evaluated_default(deblur):
    default = deblur.spec.method.default_solver
    rows = [_row("input", 0, 0), _row("euler", 1, 1), _row(default, 2, 2)]
    note = photos._perception_distortion(deblur, rows)
    assert f"{default} 2 steps (2 NFE)" in note and "1 NFE" in note
    assert "(sharper; PSNR +1.00 dB)" in note
    rows.append(_row(default, 6, 6))
    assert f"{default} 6 steps (6 NFE)" in photos._perception_distortion(deblur, rows)


def test_a_panel_is_the_image_clamped_to_the_unit_range():
    grey = torch.linspace(-0.5, 1.5, 12).reshape(1, 3, 4)
    panel = photos._panel(grey)
    assert panel.shape == (3, 4)
    assert torch.equal(torch.from_numpy(panel), grey[0].clamp(0, 1))
    colour = torch.rand(3, 5, 6)
    panel = photos._panel(colour)
    assert panel.shape == (5, 6, 3)
    assert torch.equal(torch.from_numpy(panel), colour.permute(1, 2, 0))


def test_toy_mixture_lands_on_each_centre_with_its_weight():
    m = mixture_table()
    assert m["weights"] == [0.1, 0.2, 0.3, 0.4]
    assert math.isclose(sum(m["freq"]), 1.0)
    for w, f, se in zip(m["weights"], m["freq"], m["se"], strict=True):
        assert se == pytest.approx(math.sqrt(w * (1 - w) / 20000))
        assert abs(f - w) <= 4 * se, (w, f, se)
    assert m["max_dist_multi"] < 1e-6  # every multi-step output on a centre
    assert m["median_dist_one_step"] > 0.25  # the one-step MMSE output between centres


def test_toy_gaussian_table_errors_are_the_closed_forms():
    dim, batch = 32, 8
    rows = gaussian_table(dim=dim, batch=batch, steps=(1, 8, 16), seed=3)
    # the same draws as the table's (same generator order)
    g = torch.Generator().manual_seed(3)
    std = 0.5 + torch.rand(dim, generator=g, dtype=torch.float64)
    oracle = GaussianOracle(mean=torch.zeros(dim, dtype=torch.float64), std=std, noise_std=0.8)
    _, y = oracle.sample(batch, generator=g)
    s2 = std**2 + 0.8**2
    exact = y * std / s2.sqrt()  # x(0) - c, docs/math.md §2a
    mmse = y * std**2 / s2  # one Euler step from t = 1: the posterior mean
    one_step = float((mmse - exact).norm() / exact.norm())
    by = {(r["solver"], r["steps"]): r for r in rows}
    assert by[("Euler", 1)]["rel_error"] == pytest.approx(one_step, rel=1e-9)
    assert by[("InDI sampler", 1)]["rel_error"] == pytest.approx(one_step, rel=1e-9)
    assert by[("Euler", 1)]["nfe"] == 1 and by[("Heun", 8)]["nfe"] == 15
    # Euler's first order: halving the step halves the error
    ratio = by[("Euler", 8)]["rel_error"] / by[("Euler", 16)]["rel_error"]
    assert 1.8 < ratio < 2.2
    tight = [r for r in rows if r["solver"] == "Dopri5 rtol=1e-06"]
    assert tight and tight[0]["rel_error"] < 1e-6
