"""solve()'s options: save_at, t_end early stop, output='posterior_mean', progress, callback."""

import pytest
import torch

import flowrestore as fr
from flowrestore.integrate.endpoint import default_spacing

from .helpers import gaussian_oracle, max_err, observations

FIXED = {
    "Euler": fr.Euler,
    "Midpoint": fr.Midpoint,
    "Heun": fr.Heun,
    "RK4": fr.RK4,
    "InDISampler": fr.InDISampler,
    "ColdDiffusionSampler": fr.ColdDiffusionSampler,
}


@pytest.fixture(scope="module")
def problem():
    oracle = gaussian_oracle(seed=21, dim=8)
    return oracle, observations(oracle, n=3)


@pytest.mark.parametrize("name", list(FIXED))
@pytest.mark.parametrize("spacing", [None, fr.Power(rho=2.0)])
def test_save_at_steps(problem, name, spacing):
    oracle, y = problem
    n = 5
    solver = FIXED[name]()
    sol = fr.solve(fr.InDIFlow(oracle), solver, y, steps=n, spacing=spacing, save_at="steps")
    used = spacing or default_spacing(fr.InDIFlow(oracle), solver, 0.0)
    grid = fr.integrate.make_grid(n, 1.0, 0.0, used)
    assert sol.trajectory.shape == (n + 1, *y.shape)
    assert torch.equal(sol.ts, grid)
    assert torch.equal(sol.trajectory[0], y) and torch.equal(sol.trajectory[-1], sol.x)
    # each saved state is the end of a solve truncated there
    for k in (1, 3):
        part = fr.solve(fr.InDIFlow(oracle), FIXED[name](), y, grid=grid[: k + 1])
        assert torch.equal(sol.trajectory[k], part.x)


def test_save_at_grid_times(problem):
    oracle, y = problem
    uniform = fr.Uniform()
    full = fr.solve(fr.InDIFlow(oracle), fr.RK4(), y, steps=4, spacing=uniform, save_at="steps")
    sol = fr.solve(
        fr.InDIFlow(oracle),
        fr.RK4(),
        y,
        steps=4,
        spacing=uniform,
        save_at=torch.tensor([0.75, 0.25]),
    )
    assert torch.equal(sol.ts, torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert torch.equal(sol.trajectory, full.trajectory[[1, 3]])
    assert torch.equal(sol.x, full.x)
    assert fr.solve(fr.InDIFlow(oracle), fr.RK4(), y, steps=4).trajectory is None
    with pytest.raises(fr.GridError, match="not a point of the step grid"):
        fr.solve(fr.InDIFlow(oracle), fr.RK4(), y, steps=4, save_at=torch.tensor([0.75]))


def test_save_at_in_float32_finds_the_grid_points(problem):
    """A float32 ``save_at`` holds the grid's times to float32's resolution (``0.1``, ``1/3``):
    they are those points, as the same times in float64 are; a time between grid points is
    still refused."""
    oracle, y = problem
    ode = fr.ODEFlow(lambda t, x: -x)
    kw = {"steps": 10, "t_span": (0.0, 1.0)}
    want = fr.solve(ode, fr.Euler(), y, save_at=torch.linspace(0, 1, 11, dtype=torch.float64), **kw)
    got = fr.solve(ode, fr.Euler(), y, save_at=torch.linspace(0, 1, 11), **kw)
    assert torch.equal(got.trajectory, want.trajectory)
    flow = fr.InDIFlow(oracle)
    third = fr.solve(flow, fr.InDISampler(), y, steps=3, save_at=torch.tensor([1 / 3]))
    full = fr.solve(flow, fr.InDISampler(), y, steps=3, save_at="steps")
    assert torch.equal(third.trajectory[0], full.trajectory[2])
    with pytest.raises(fr.GridError, match="not a point of the step grid"):
        fr.solve(ode, fr.Euler(), y, save_at=torch.tensor([0.15]), **kw)
    with pytest.raises(fr.GridError, match="not a point of the step grid"):
        fr.solve(ode, fr.Euler(), y, save_at=torch.tensor([0.1 + 1e-6]), **kw)


@pytest.mark.parametrize("name", list(FIXED) + ["Dopri5", "Torchdiffeq"])
def test_t_end_early_stop_and_posterior_mean(problem, name):
    oracle, y = problem
    t_end = 0.2
    if name == "Dopri5":
        solver, kw = fr.Dopri5(rtol=1e-6, atol=1e-9), {}
    elif name == "Torchdiffeq":
        solver, kw = fr.Torchdiffeq("dopri5", rtol=1e-6, atol=1e-9), {}
    else:
        solver, kw = FIXED[name](), {"steps": 8}
    last = fr.solve(fr.InDIFlow(oracle), solver, y, t_end=t_end, **kw)
    pm = fr.solve(fr.InDIFlow(oracle), solver, y, t_end=t_end, output="posterior_mean", **kw)
    assert torch.allclose(last.t_final, torch.full_like(last.t_final, t_end))
    assert torch.equal(pm.x, oracle(last.x, t_end))
    assert torch.equal(pm.stats.nfe, last.stats.nfe + 1)
    if name in ("Dopri5", "Torchdiffeq", "RK4"):
        assert max_err(last.x, oracle.ode_solution(y, t_end)) < 1e-4


def test_posterior_mean_at_zero(problem):
    """At t = 0 the landed state already is the clean-image estimate (E[x | x_0] = x_0):
    posterior_mean returns it unchanged, at no extra evaluation, for every solver."""
    oracle, y = problem
    grid = fr.integrate.make_grid(6, 1.0, 0.0)
    for solver in (
        fr.Euler(),
        fr.Heun(),
        fr.InDISampler(),
        fr.Midpoint(),
        fr.ColdDiffusionSampler(),
    ):
        a = fr.solve(fr.InDIFlow(oracle), solver, y, grid=grid)
        b = fr.solve(fr.InDIFlow(oracle), solver, y, grid=grid, output="posterior_mean")
        assert torch.equal(a.x, b.x) and torch.equal(a.stats.nfe, b.stats.nfe)


def test_callback_once_per_step(problem):
    oracle, y = problem
    calls = []
    sol = fr.solve(
        fr.InDIFlow(oracle),
        fr.Heun(),
        y,
        steps=7,
        callback=lambda step, t, x: calls.append((step, float(t), x.clone())),
    )
    grid = fr.integrate.make_grid(7, 1.0, 0.0)
    assert [c[0] for c in calls] == list(range(1, 8))
    assert [c[1] for c in calls] == grid[1:].tolist()
    assert torch.equal(calls[-1][2], sol.x)
    traj = fr.solve(fr.InDIFlow(oracle), fr.Heun(), y, steps=7, save_at="steps").trajectory
    for step, _, x in calls:
        assert torch.equal(x, traj[step])


def test_callback_adaptive(problem):
    oracle, y = problem
    calls = []
    sol = fr.solve(
        fr.InDIFlow(oracle),
        fr.Dopri5(rtol=1e-6),
        y,
        t_end=0.1,
        callback=lambda step, t, x: calls.append((step, t.clone())),
    )
    assert len(calls) >= int(sol.stats.steps.max())
    assert calls[-1][1].shape == (y.shape[0],)  # per-sample times
    assert torch.allclose(calls[-1][1], torch.full((y.shape[0],), 0.1, dtype=torch.float64))


@pytest.mark.parametrize("solver", [fr.Heun(), fr.Dopri5()], ids=["Heun", "Dopri5"])
def test_progress_bar(problem, capsys, solver):
    pytest.importorskip("tqdm")
    oracle, y = problem
    kw = {} if solver.adaptive else {"steps": 5}
    quiet = fr.solve(fr.InDIFlow(oracle), solver, y, **kw)
    assert capsys.readouterr().err == ""
    sol = fr.solve(fr.InDIFlow(oracle), solver, y, progress=True, **kw)
    err = capsys.readouterr().err
    assert type(solver).__name__ in err
    assert torch.equal(sol.x, quiet.x)


def _record_bars(monkeypatch) -> list:
    """Replace tqdm's bar by a recorder; the list fills with the bars made (``n``: the total of
    the updates, ``filled``: ``n`` after each update, ``closed``)."""
    tqdm_auto = pytest.importorskip("tqdm.auto")
    bars = []

    class Recorder:
        def __init__(self, total, **_):
            self.total, self.n, self.filled, self.closed = total, 0.0, [], False
            bars.append(self)

        def update(self, v):
            self.n += v
            self.filled.append(self.n)

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm_auto, "tqdm", Recorder)
    return bars


@pytest.mark.parametrize(
    "solver, kw",
    [(fr.Heun(), {"steps": 5}), (fr.Dopri5(), {}), (fr.Dopri5(), {"t_end": 0.2})],
    ids=["Heun", "Dopri5", "Dopri5-early-stop"],
)
def test_progress_bar_fills_exactly_to_its_total(problem, monkeypatch, solver, kw):
    """The bar's total counts the landing step: its updates add up to the total, no more (also
    when the solve stops short of 0, where the fraction done is of the span, not of [0, 1])."""
    bars = _record_bars(monkeypatch)
    oracle, y = problem
    fr.solve(fr.InDIFlow(oracle), solver, y, progress=True, **kw)
    (bar,) = bars
    assert bar.closed and bar.n == pytest.approx(bar.total, rel=1e-12)


def test_progress_of_a_forward_span_away_from_zero_grows_with_time(monkeypatch):
    """An adaptive solve forward in time over ``[1, 3]``: the bar's updates are the fraction of
    the span covered, ``(t − 1)/2`` — no jump to full at the first step, full at the end."""
    bars = _record_bars(monkeypatch)
    times = []
    flow = fr.ODEFlow(lambda t, x: -x)
    x0 = torch.ones(2, 3, dtype=torch.float64)
    fr.solve(flow, fr.Dopri5(rtol=1e-6, atol=1e-9), x0, t_span=(1.0, 3.0), progress=True,
             callback=lambda k, t, x: times.append(float(torch.as_tensor(t).min())))  # fmt: skip
    (bar,) = bars
    seen = bar.filled
    assert len(seen) == len(times) > 5
    for done, t in zip(seen, times, strict=True):
        assert done == pytest.approx((t - 1.0) / 2.0, abs=1e-9)
    assert seen[-1] == pytest.approx(1.0)


def test_odeflow_forward_and_backward_spans():
    from .helpers import linear_system

    flow, x0, exact = linear_system()
    fwd = fr.solve(flow, fr.RK4(), x0, t_span=(0.0, 1.0), steps=64)
    back = fr.solve(flow, fr.RK4(), fwd.x, t_span=(1.0, 0.0), steps=64)
    assert max_err(fwd.x, exact(1.0)) < 1e-7
    assert max_err(back.x, x0) < 1e-7
