"""Fourth review of tiled restoration and the step-size controllers.

* tile seeds: no two tiles of one run, nor of runs whose seeds differ by the old stride 7919,
  share noise (tile ``k`` of seed ``s`` drew from ``s + 7919·k``: run ``s + 7919``'s tile 0 was
  run ``s``'s tile 1); tile 0 keeps ``seed`` (a one-tile restore is the plain solve);
* a tiled one-step solve of a radius-``r`` operator with overlap ``4 r - 2`` equals the whole
  image at odd sizes, images smaller than a tile and 1-pixel-wide images;
* PI and PID gains: Söderlind's filters (H211PI, H312PID: a negative proportional gain) are the
  closed-form factors ``safety · Π e_j^(−β_j/k)``; a PI without integral gain and a PID whose
  current-error exponent is not positive are refused;
* a fixed grid refuses two save times that are one grid point (one of the two slots stayed NaN).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flowrestore as fr
import flowrestore.integrate
from flowrestore.errors import ConfigError, GridError
from flowrestore.schedules import Geometric
from flowrestore.tiling import TilePlan, plan_tiles, restore_tiled, tile_seed

F64 = torch.float64
_SOLVE = flowrestore.integrate.solve


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- tile seeds
def _tile_seeds(monkeypatch, seed, plan):
    """The seeds restore_tiled hands to each tile's solve, by tile position ``(top, left)``."""
    seen = {}

    def spy(flow, solver, x, **kw):
        seen.setdefault("seeds", []).extend(kw["seeds"])
        return _SOLVE(flow, solver, x, **kw)

    monkeypatch.setattr(flowrestore.integrate, "solve", spy)
    flow = fr.InDIFlow(lambda x, t: x)
    y = torch.rand(1, plan.height, plan.width, generator=torch.Generator().manual_seed(0))
    restore_tiled(flow, fr.Euler(), y, steps=1, plan=plan, seed=seed)
    return seen["seeds"]


def test_runs_whose_seeds_differ_by_the_old_stride_share_no_tile_noise(monkeypatch):
    plan = plan_tiles(40, 60, tile=24, overlap=4, multiple=1, batch=2)
    assert plan.count >= 4
    s = 11
    runs = {j: _tile_seeds(monkeypatch, s + 7919 * j, plan) for j in range(3)}
    for seeds in runs.values():
        assert len(seeds) == plan.count and len(set(seeds)) == plan.count  # one seed per tile
        assert all(0 <= v < 2**63 for v in seeds)
    assert not set(runs[0]) & set(runs[1]) and not set(runs[0]) & set(runs[2])
    # the seeds depend on the seed and tile index only (not on batching): the same again
    again = plan_tiles(40, 60, tile=24, overlap=4, multiple=1, batch=1)
    assert sorted(_tile_seeds(monkeypatch, s, again)) == sorted(runs[0])
    assert s in runs[0] and tile_seed(s, 0) == s  # tile 0 keeps the seed


def test_a_one_tile_stochastic_restore_is_the_plain_solve_with_that_seed():
    net = nn.Conv2d(3, 3, 3, padding=1)
    flow = fr.DiracSDE(lambda y, t: net(y), lambda x, t: x, Geometric(0.01, 0.05))
    y = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tiled = restore_tiled(flow, fr.EulerMaruyama(), y, steps=3, tile=0, seed=5)
        plain = fr.solve(flow, fr.EulerMaruyama(), y[None], steps=3, seeds=[5]).x[0]
        other = fr.solve(flow, fr.EulerMaruyama(), y[None], steps=3, seeds=[6]).x[0]
    # the same noise (channels-last convolutions round differently: not bit for bit)
    torch.testing.assert_close(tiled, plain, rtol=0, atol=1e-5)
    assert float((other - plain).abs().max()) > 1e-2


def test_tile_seeds_are_below_2_63_and_a_larger_seed_is_refused_by_name():
    assert tile_seed(2**63 - 1, 0) == 2**63 - 1
    assert all(0 <= tile_seed(2**63 - 1, k) < 2**63 for k in range(1, 50))
    for bad in (2**63, -1, True, 1.0):
        with pytest.raises(ConfigError, match="seed must be"):
            tile_seed(bad, 1)
    with pytest.raises(ConfigError, match="k must be"):
        tile_seed(0, -1)
    flow = fr.InDIFlow(lambda x, t: x)
    with pytest.raises(ConfigError, match=r"seed must be below 2\*\*63"):
        restore_tiled(flow, fr.Euler(), torch.rand(1, 8, 8), steps=1, tile=0, seed=2**63)


def test_numpy_integers_are_sizes_as_solve_takes_them():
    """``solve(steps=np.int64(2))`` ran; ``restore_tiled``/``plan_tiles``/``TilePlan`` refused
    numpy integers (a height from an array's shape arithmetic, a step count from a config)."""
    i = np.int64
    plan = plan_tiles(i(60), i(70), tile=i(40), overlap=i(4), batch=i(2), multiple=i(2))
    assert plan == plan_tiles(60, 70, tile=40, overlap=4, batch=2, multiple=2)
    by_hand = TilePlan(i(60), i(70), ((i(0), i(60)),), ((i(0), i(40)), (i(30), i(70))), i(4), i(1))
    assert [type(v) for v in (by_hand.height, by_hand.overlap, by_hand.cols[1][0])] == [int] * 3
    flow = fr.InDIFlow(lambda x, t: 0.5 * x)
    y = torch.rand(3, 60, 70, generator=torch.Generator().manual_seed(0))
    want = fr.solve(flow, fr.Euler(), y[None], steps=2).x[0]
    got = restore_tiled(flow, fr.Euler(), y, steps=i(2), plan=by_hand)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # a pointwise predictor: exact
    with pytest.raises(ConfigError, match="height must be an int >= 1"):
        plan_tiles(True, 70, tile=40, overlap=4)


# ----------------------------------------------------------------------------- exactness
class _Box(nn.Module):
    """A box filter of radius ``r`` (zero padding): a position-independent operator."""

    multiple = 1

    def __init__(self, r):
        super().__init__()
        self.r = r

    def forward(self, x, t):
        return F.avg_pool2d(F.pad(x, (self.r,) * 4), 2 * self.r + 1, stride=1)


@pytest.mark.parametrize(
    "h, w, tile",
    [
        (31, 29, 15),  # odd sizes, several tiles per axis
        (1, 37, 15),  # a 1-pixel-high image
        (37, 1, 15),  # a 1-pixel-wide image
        (16, 16, 15),  # each axis one pixel longer than a tile
        (9, 7, 15),  # smaller than one tile
    ],
)
def test_a_tiled_step_is_the_whole_image_step_at_any_size(h, w, tile):
    r = 1
    flow = fr.InDIFlow(_Box(r))
    y = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    whole = fr.solve(flow, fr.Euler(), y[None], steps=1).x[0]
    plan = plan_tiles(h, w, tile=tile, overlap=4 * r - 2, multiple=1)
    # the windows are a partition of unity over the image
    row_w, col_w = plan.weights()
    total = torch.zeros(h, w, dtype=F64)
    for i, (t, b) in enumerate(plan.rows):
        for j, (c, e) in enumerate(plan.cols):
            total[t:b, c:e] += row_w[i][:, None] * col_w[j][None, :]
    assert float((total - 1).abs().max()) < 1e-12
    tiled = restore_tiled(flow, fr.Euler(), y, steps=1, plan=plan)
    assert float((tiled - whole).abs().max()) < 1e-6


# ----------------------------------------------------------------------------- PI / PID gains
K = 5.0
E = torch.tensor([0.3, 0.9, 0.05], dtype=F64)
E1 = torch.tensor([0.5, 0.2, 0.8], dtype=F64)
E2 = torch.tensor([0.7, 0.4, 0.1], dtype=F64)


def test_pid_takes_soederlinds_h312pid_filter():
    """H312PID: ``β = (1/18, 1/9, 1/18)``, factor ``safety · (e_n e_{n-1}² e_{n-2})^(−1/(18k))``,
    is the gains ``(−2/9, 2/9, 1/18)``."""
    ctrl = fr.PIDController(pcoeff=-2 / 9, icoeff=2 / 9, dcoeff=1 / 18)
    want = ctrl.safety * (E * E1**2 * E2) ** (-1 / (18 * K))
    torch.testing.assert_close(ctrl.factor(E, (E1, E2), K), want, rtol=1e-12, atol=0)


def test_pi_takes_soederlinds_h211pi_filter():
    """H211PI: ``β = (1/6, 1/6)``, factor ``safety · (e_n e_{n-1})^(−1/(6k))``: the PI gains
    ``pcoeff = −1/6, icoeff = 1/6`` (and the PID gains ``(−1/6, 1/3, 0)``)."""
    want = 0.9 * (E * E1) ** (-1 / (6 * K))
    pi = fr.PIController(pcoeff=-1 / 6, icoeff=1 / 6)
    torch.testing.assert_close(pi.factor(E, (E1,), K), want, rtol=1e-12, atol=0)
    pid = fr.PIDController(pcoeff=-1 / 6, icoeff=1 / 3, dcoeff=0)
    torch.testing.assert_close(pid.factor(E, (E1, E2), K), want, rtol=1e-12, atol=0)


def test_h312pid_solves_to_tolerance():
    flow = fr.ODEFlow(lambda t, x: -x)
    x0 = torch.linspace(0.5, 2.0, 6, dtype=F64).reshape(2, 3)
    ctrl = fr.PIDController(rtol=1e-6, atol=1e-9, pcoeff=-2 / 9, icoeff=2 / 9, dcoeff=1 / 18)
    sol = fr.solve(flow, fr.Dopri5(), x0, t_span=(0.0, 2.0), controller=ctrl)
    exact = x0 * math.exp(-2.0)
    err = float(((sol.x - exact).abs() / (ctrl.atol + ctrl.rtol * exact.abs())).max())
    assert err < 10


def test_gains_without_error_control_are_refused_by_name():
    # icoeff <= pcoeff: at a constant error e the factor is safety·e^((pcoeff − icoeff)/k), so
    # a small error shrinks the step and a large one grows it
    for p, i in ((0.7, 0.7), (0.8, 0.7)):
        with pytest.raises(ConfigError, match="icoeff must exceed pcoeff"):
            fr.PIController(pcoeff=p, icoeff=i)
    # PID: the current error's exponent pcoeff + icoeff + dcoeff must be positive
    with pytest.raises(ConfigError, match=r"pcoeff \+ icoeff \+ dcoeff"):
        fr.PIDController(pcoeff=-1.0, icoeff=0.5, dcoeff=0.1)
    for bad in (math.nan, math.inf, True, "0.1"):
        with pytest.raises(ConfigError, match="pcoeff must be a finite real number"):
            fr.PIDController(pcoeff=bad)
    with pytest.raises(ConfigError, match="dcoeff"):
        fr.PIDController(dcoeff=-0.1)


def test_error_norm_and_rejected_step_factor_in_closed_form():
    """Hairer's scaled RMS norm ``sqrt(mean((err_i / (atol + rtol max(|x_i|, |x_new,i|)))²))``
    per sample; a rejected step shrinks by ``clip(safety e^(−1/k), dfactor, 1)``, a non-finite
    norm by ``dfactor``, an exact accepted step grows by ``ifactor``."""
    ctrl = fr.PIController(rtol=1e-2, atol=1e-3, safety=0.8, dfactor=0.25, ifactor=6.0)
    x = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, 4.0]], dtype=F64)
    x_new = torch.tensor([[3.0, -1.0, 0.0], [0.5, 0.0, -5.0]], dtype=F64)
    err = torch.tensor([[0.01, 0.02, 0.003], [0.0, 1e-3, 0.1]], dtype=F64)
    want = []
    for b in range(2):
        r = [
            float(err[b, i]) / (1e-3 + 1e-2 * max(abs(float(x[b, i])), abs(float(x_new[b, i]))))
            for i in range(3)
        ]
        want.append(math.sqrt(sum(v * v for v in r) / 3))
    torch.testing.assert_close(
        ctrl.error_norm(x, x_new, err), torch.tensor(want, dtype=F64), rtol=1e-14, atol=0
    )
    en = torch.tensor([4.0, 1.5, math.nan, 0.0], dtype=F64)
    accept = torch.tensor([False, False, False, True])
    ones = torch.ones(4, dtype=F64)
    fac = ctrl.step_factor(en, (ones,), accept, K)
    want = [max(0.25, 0.8 * 4.0 ** (-1 / K)), 0.8 * 1.5 ** (-1 / K), 0.25, 6.0]
    torch.testing.assert_close(fac, torch.tensor(want, dtype=F64), rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- fixed grids
def test_two_save_times_on_one_grid_point_are_refused():
    """Both are the grid point 0.5 within the save times' resolution (1e-9): one slot was
    filled, the other stayed NaN."""
    flow = fr.ODEFlow(lambda t, x: -x)
    x0 = torch.ones(2, 3, dtype=F64)
    with pytest.raises(GridError, match="both the grid point 0.5"):
        fr.solve(flow, fr.Heun(), x0, steps=4, t_span=(0.0, 1.0), save_at=[0.5, 0.5 + 5e-10])
    sol = fr.solve(flow, fr.Heun(), x0, steps=4, t_span=(0.0, 1.0), save_at=[0.25, 0.5 + 5e-10])
    assert bool(torch.isfinite(sol.trajectory).all())
    assert sol.ts.tolist() == [0.25, 0.5 + 5e-10]  # reported as requested (FixedGrid's doc)
