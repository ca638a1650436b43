"""Issue 16: a flow declares grids fitted for one solver (``FittedGrids``; a shipped predictor's
few-NFE schedules, ``flowrestore.pretrained.fit_grids``). ``steps=N`` with exactly that solver runs
on them; any other solver or step count gets what it got before."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.integrate.endpoint import default_spacing
from flowrestore.oracles import GaussianOracle

GRID3 = (1.0, 0.9, 0.5, 0.0)
GRID4 = (1.0, 0.95, 0.8, 0.4, 0.0)


def _flow(grids=None):
    orc = GaussianOracle(mean=torch.zeros(4, dtype=torch.float64), std=0.5, noise_std=0.3)
    return fr.InDIFlow(orc.posterior_mean, grids=grids)


def _grids(solver=None):
    solver = solver or fr.SemiLinearMultistep()
    return fr.FittedGrids(solver=repr(solver), times={3: GRID3, 4: GRID4})


def _laid(flow, solver, n):
    return default_spacing(flow, solver, 0.0)(n, 1.0, 0.0)


def test_the_fitted_grid_is_laid_for_its_solver_at_its_step_counts():
    flow, plain = _flow(_grids()), _flow()
    solver = fr.SemiLinearMultistep()
    assert torch.equal(_laid(flow, solver, 3), torch.tensor(GRID3, dtype=torch.float64))
    assert torch.equal(_laid(flow, solver, 4), torch.tensor(GRID4, dtype=torch.float64))
    # another step count: the generic default
    assert torch.equal(_laid(flow, solver, 5), _laid(plain, solver, 5))


@pytest.mark.parametrize(
    "other", [fr.Euler(), fr.Heun(), fr.SemiLinearMultistep(final_nodes=1), fr.IPNDM()]
)
def test_another_solver_gets_the_grid_it_got_before(other):
    flow, plain = _flow(_grids()), _flow()
    for n in (3, 4):
        assert torch.equal(_laid(flow, other, n), _laid(plain, other, n))


def test_a_solve_runs_on_the_fitted_grid():
    """The solve with ``steps=3`` equals the solve on the fitted grid passed explicitly, and
    differs from the solve on the generic default."""
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    solver = fr.SemiLinearMultistep()
    declared = fr.solve(_flow(_grids()), solver, x, steps=3).x
    explicit = fr.solve(_flow(), solver, x, grid=torch.tensor(GRID3, dtype=torch.float64)).x
    generic = fr.solve(_flow(), solver, x, steps=3).x
    torch.testing.assert_close(declared, explicit, rtol=0, atol=0)
    assert not torch.allclose(declared, generic)


@pytest.mark.parametrize(
    "times, match",
    [
        ({}, "at least one"),
        ({3: (1.0, 0.5, 0.0)}, "4 normalised times"),
        ({2: (1.0, 0.2, 0.5)}, "decrease strictly"),
        ({2: (0.9, 0.5, 0.0)}, "decrease strictly"),
    ],
)
def test_a_wrong_table_is_refused_with_its_value(times, match):
    with pytest.raises(ConfigError, match=match):
        fr.FittedGrids(solver="SemiLinearMultistep()", times=times)


def test_grids_must_be_fitted_grids():
    with pytest.raises(TypeError, match="grids must be a FittedGrids"):
        fr.InDIFlow(lambda x, t: x, grids={3: GRID3})


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4"])
def test_a_shipped_predictor_declares_its_recorded_grids(name):
    """The registry's grids are for ``SemiLinearMultistep()`` at 3–10 steps, each kept only where
    the fitting command's check found it at least as close to the reference as the default."""
    from flowrestore.pretrained import flow_for, pretrained, pretrained_info

    entry = pretrained_info(name)["grids"]
    model = pretrained(name)
    grids = flow_for(model).fitted_grids()
    assert grids is not None and grids.applies_to(fr.SemiLinearMultistep())
    assert set(grids.steps()) <= set(range(3, 11)) and len(grids.steps()) >= 4
    for n in grids.steps():
        check = entry["check_worst_psnr"][str(n)]
        assert check["fitted_db"] >= check["generic_db"]
    assert flow_for(model, grids=None).fitted_grids() is None


def test_the_shipped_sr4_grid_beats_the_generic_one_on_a_photo_that_chose_nothing():
    """A crop of a photo that neither trained, fitted nor checked the grid (scikit-image's
    ``stereo_motorcycle``, right view; the benchmark's test split scores the left one):
    at 5 and 6 evaluations the recorded grid lands closer to a 200-evaluation reference than the
    generic default does (the default is 41–45 dB there on the benchmark's test photos)."""
    import skimage.data

    from flowrestore.pretrained import degrade_for, flow_for, pretrained

    im = torch.from_numpy(skimage.data.stereo_motorcycle()[1][200:248, 300:348]).float() / 255.0
    clean = im.permute(2, 0, 1)[None].contiguous()
    model = pretrained("indi-sr4")
    y = degrade_for(model, clean, generator=torch.Generator().manual_seed(0))
    fitted, generic = flow_for(model), flow_for(model, grids=None)
    solver = fr.SemiLinearMultistep()
    with torch.no_grad():
        ref = fr.solve(generic, fr.RK4(), y, steps=50, spacing=fr.Power(2.0)).x.clamp(0, 1)
        for n in (5, 6):
            mine = fr.solve(fitted, solver, y, steps=n).x.clamp(0, 1)
            base = fr.solve(generic, solver, y, steps=n).x.clamp(0, 1)
            gain = float(fr.metrics.psnr(mine, ref)) - float(fr.metrics.psnr(base, ref))
            assert gain > 1.0, (n, gain)


@pytest.mark.parametrize("span", [{"t_end": 0.3}, {"t_span": (0.6, 0.0)}])
def test_a_solve_over_another_span_gets_the_generic_grid(span):
    """The grids were fitted on ``(1, 0)``: stretched onto a sub-span they would be a grid nobody
    fitted, so a solve that stops early or starts part-way runs as without them."""
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    solver = fr.SemiLinearMultistep()
    declared = fr.solve(_flow(_grids()), solver, x, steps=3, **span).x
    plain = fr.solve(_flow(), solver, x, steps=3, **span).x
    torch.testing.assert_close(declared, plain, rtol=0, atol=0)


def test_grids_fitted_on_another_span_apply_there_only():
    grids = fr.FittedGrids(solver=repr(fr.SemiLinearMultistep()), times={3: GRID3}, t_span=(0.5, 0))
    flow, plain, solver = _flow(grids), _flow(), fr.SemiLinearMultistep()
    laid = default_spacing(flow, solver, 0.0)
    expected = 0.5 * torch.tensor(GRID3, dtype=torch.float64)
    assert torch.equal(laid(3, 0.5, 0.0), expected)
    assert torch.equal(laid(3, 1.0, 0.0), _laid(plain, solver, 3))


@pytest.mark.parametrize("span", [(1.0,), (0.5, 0.5), (1.0, float("nan")), "ab"])
def test_a_wrong_span_is_refused_with_its_value(span):
    with pytest.raises(ConfigError, match="t_span must be two different finite times"):
        fr.FittedGrids(solver="SemiLinearMultistep()", times={3: GRID3}, t_span=span)
