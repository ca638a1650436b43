"""Dirac steps never wait for the host (issue 17): 0 host synchronisations per step.

Each solver's ``step`` is called directly, as the loop calls it — on the copy of the flow a solve
integrates (``for_solve``, after ``check_state``), with the 0-d times of a fixed grid — for
``DiracStep``, ``EulerMaruyama`` and ``SRA1`` on a ``DiracSDE`` over each degradation family, with
and without guidance and the data-consistency record; the drift also at per-sample ``[B]`` times.
The first step is a warm-up (per-dtype constants are cached then); the second is counted. A public
call with an out-of-range time is still refused (it may read the time: it is not the solver's
path). Also: one ``DiracStep.step`` compiles whole with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import pytest
import torch
from syncs import SyncCounter

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.noise import GeneratorNoise, NoiseSource
from flowrestore.solvers import Context

SIGMA = fr.schedules.Geometric(0.01, 0.05)


def _phi(y, t):
    tt = t.reshape(-1, *([1] * (y.dim() - 1)))
    return 0.8 * y + 0.1 * torch.tanh(3 * y) * (1 + tt)


FAMILIES = {
    "blur": lambda: fr.degradations.GaussianBlurFamily(
        kernel_size=5, width=fr.schedules.Linear(0.3, 2.0)
    ),
    "blur-callable": lambda: fr.degradations.GaussianBlurFamily(
        kernel_size=5, width=lambda t: 0.3 + 1.7 * t**2
    ),
    "blur-piecewise": lambda: fr.degradations.GaussianBlurFamily(
        kernel_size=5, width=fr.schedules.PiecewiseLinear([0.0, 0.4, 1.0], [0.3, 0.9, 2.0])
    ),
    "inpainting": lambda: fr.degradations.InpaintingFamily(size=fr.schedules.Linear(0.0, 4.0)),
    "inpainting-box": lambda: fr.degradations.InpaintingFamily(
        size=fr.schedules.Linear(0.0, 4.0), shape="box"
    ),
    "downsample": lambda: fr.degradations.DownsampleFamily(factor=2),
}
SOLVERS = {
    "DiracStep": fr.DiracStep,
    "DiracStep-tangent": lambda: fr.DiracStep(increment="tangent"),
    "DiracStep-small-look-back": lambda: fr.DiracStep(increment="small_look_back"),
    "EulerMaruyama": fr.EulerMaruyama,
    "SRA1": fr.SRA1,
}
GUIDANCE = {
    "plain": {},
    "guided-std": {"guidance": 0.3},
    "guided-error": {"guidance": lambda t: 0.2 * (1 - t), "guidance_scaling": "error"},
}


def _bound(sde, y):
    """What ``fr.solve`` integrates: the flow checked against the state, bound to the solve."""
    sde.check_state(y)
    return sde.for_solve(y, 1.0)


def _syncs_per_step(solver, flow, y, t, h, ctx):
    _, state = solver.init(flow, t, y, ctx)
    solver.step(flow, t, y, h, state, ctx)  # warm-up
    with SyncCounter() as sc:
        out = solver.step(flow, t, y, h, state, ctx)
    assert torch.isfinite(out.x).all()
    return sc.count, dict(sc.ops)


@pytest.mark.parametrize("guidance", list(GUIDANCE))
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_host_sync_in_a_dirac_step(family, solver, guidance):
    y = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flow = _bound(fr.DiracSDE(_phi, FAMILIES[family](), SIGMA, **GUIDANCE[guidance]), y)
    step = SOLVERS[solver]()
    ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(1)))
    t, h = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.1, dtype=torch.float64)
    count, ops = _syncs_per_step(step, flow, y, t, h, ctx)
    assert count == 0, (family, solver, guidance, ops)
    if solver.startswith("DiracStep"):  # the data-consistency record was written, device-side
        assert len(ctx.records["data_consistency"]) == 2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_host_sync_in_the_drift_at_per_sample_times(family):
    """Per-sample ``[B]`` times (what error control hands a flow): drift, diffusion, estimate."""
    y = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flow = _bound(fr.DiracSDE(_phi, FAMILIES[family](), SIGMA, guidance=0.2), y)
    t = torch.tensor([0.9, 0.55, 0.3], dtype=torch.float64)
    flow.drift(t, y)
    with SyncCounter() as sc:
        flow.drift(t, y), flow.diffusion(t, y)
    assert sc.count == 0, dict(sc.ops)


def test_the_whole_fixed_grid_solve_computes_the_same_as_the_counted_steps():
    """The loop's steps are these steps: a 3-step solve equals three direct step calls."""
    fam, y = FAMILIES["blur"](), torch.rand(2, 1, 8, 8, dtype=torch.float64)
    sde = fr.DiracSDE(_phi, fam, SIGMA)
    grid = torch.tensor([1.0, 0.6, 0.3, 0.0], dtype=torch.float64)
    path = fr.BrownianIncrements.sample(grid, y.shape, generator=torch.Generator().manual_seed(2))
    want = fr.solve(sde, fr.DiracStep(), y, grid=grid, noise=path)
    flow, ctx, x = _bound(sde, y), Context(noise=path), y
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        x = fr.DiracStep().step(flow, t, x, s - t, None, ctx).x
    torch.testing.assert_close(x, want.x, rtol=0, atol=0)
    torch.testing.assert_close(
        torch.stack(ctx.records["data_consistency"]), want.records["data_consistency"]
    )


def test_public_calls_still_check_their_times():
    """Outside a solve the flow, its schedule and its family refuse a time outside [0, 1]."""
    fam, y = FAMILIES["blur"](), torch.rand(2, 1, 8, 8, dtype=torch.float64)
    sde = fr.DiracSDE(_phi, fam, SIGMA)
    bad = torch.tensor(1.5, dtype=torch.float64)
    for call in (
        lambda: sde.drift(bad, y),
        lambda: sde.diffusion(bad, y),
        lambda: sde.degrade(y, bad),
        lambda: SIGMA(bad),
        lambda: fam(y, bad),
        lambda: fam.time_derivative(y, torch.tensor([0.5, -0.5], dtype=torch.float64)),
    ):
        with pytest.raises(ConfigError, match=r"must lie in \[0, 1\]"):
            call()
    # the bound copy trusts the loop (which validated the grid); the original is unchanged
    assert _bound(sde, y).times_checked and not sde.times_checked


def test_the_family_and_schedule_checks_happen_once_at_build_time():
    """A width or noise level that goes negative or falls is refused when the family / flow is
    built (on a CPU probe), not on each evaluation."""
    with pytest.raises(ConfigError, match=r"width must be finite and >= 0 on \[0, 1\]"):
        fr.degradations.GaussianBlurFamily(width=lambda t: 0.5 - t, kernel_size=5)
    with pytest.raises(ConfigError, match=r"size must be finite and >= 0"):
        fr.degradations.InpaintingFamily(size=lambda t: torch.where(t > 0.5, float("nan"), t))
    with pytest.raises(ConfigError, match="sigma must be non-decreasing"):
        fr.DiracSDE(_phi, FAMILIES["blur"](), lambda t: 0.05 - 0.04 * t)


class _GivenNoise(NoiseSource):
    """A test-only noise source returning a pre-drawn tensor (compiles: no generator)."""

    def __init__(self, z):
        self.z = z

    def normal(self, like, index=None):
        return self.z


@pytest.mark.parametrize("increment", ["look_ahead", "tangent", "small_look_back"])
def test_one_dirac_step_compiles_without_graph_breaks(increment):
    """``torch.compile(fullgraph=True)`` traces a whole DiracStep.step (blur family, data-
    consistency record) and matches eager."""
    torch._dynamo.reset()
    fam, y = FAMILIES["blur"](), torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    flow = _bound(fr.DiracSDE(_phi, fam, SIGMA), y)
    solver = fr.DiracStep(increment=increment)
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
    t, h = torch.tensor(0.8), torch.tensor(-0.2)

    def one_step(t, x, h):
        ctx = Context(noise=_GivenNoise(z))
        out = solver.step(flow, t, x, h, None, ctx)
        return out.x, ctx.records["data_consistency"][0]

    compiled = torch.compile(one_step, fullgraph=True, backend="eager")
    got, rec = compiled(t, y, h)
    want, want_rec = one_step(t, y, h)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(rec, want_rec, rtol=1e-6, atol=1e-6)
