"""``stats.nfe`` is what was evaluated: for every built-in solver, on every flow family it steps,
the count a solve reports equals the calls its model, predictor or drift actually received —
the landing onto a singular ``t = 0``, FSAL reuse, multistep history, guidance and adapters
included. Benchmarks compare solvers at equal NFE, so a miscount is a wrong comparison."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64


class Counted:
    """A callable that counts its calls and forwards to ``fn``."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


def _indi(counter):
    return fr.InDIFlow(counter), torch.rand(3, 1, 4, 4, dtype=F64), {}


def _ode(counter):
    return fr.ODEFlow(counter), torch.ones(3, 2, dtype=F64), {"t_span": (0.0, 1.0)}


def _sde(counter):
    g = lambda t, x: torch.full_like(x, 0.2)  # noqa: E731
    flow = fr.SDEFlow(counter, g, noise_type="additive")
    return flow, torch.ones(3, 2, dtype=F64), {"t_span": (0.0, 1.0), "seeds": [0, 1, 2]}


def _diffusion(counter):
    flow = fr.DiffusionFlow(counter, alphas_cumprod=linear_alphas_cumprod())
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    return flow, x, {}


def _flow_matching(counter):
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    return fr.FlowMatchingFlow(counter), x, {}


def _denoiser(counter):
    x = 80.0 * torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    return fr.DenoiserFlow(counter, sigma_max=80.0), x, {}


def _dirac(counter):
    blur = fr.degradations.GaussianBlurFamily(kernel_size=3, width=fr.schedules.Linear(0.3, 1.0))
    flow = fr.DiracSDE(counter, blur, fr.schedules.Geometric(0.01, 0.05))
    return flow, torch.rand(3, 1, 6, 6, dtype=F64), {"seeds": [0, 1, 2]}


def _inpainting(counter):
    """A diffusion model on 6×6 images, an inpainting mask, its measurement and a start."""
    from flowrestore.degradations import Inpainting

    op = Inpainting(torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.3)
    model = fr.DiffusionFlow(counter, alphas_cumprod=linear_alphas_cumprod())
    y = op.A(torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2), dtype=F64))
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    return model, op, y, x


def _guided(counter):
    model, op, y, x = _inpainting(counter)
    return fr.GuidedFlow(model, op, y, noise_std=0.05), x, {"seeds": [0, 1, 2]}


def _diffpir(counter):
    model, op, y, x = _inpainting(counter)
    return fr.DiffPIRFlow(model, op, y, noise_std=0.05), x, {"seeds": [0, 1, 2]}


FUNCS = {
    _indi: lambda x, t: 0.5 * x + 0.1,
    _ode: lambda t, x: -x * (1 + t.reshape(-1, 1)),
    _sde: lambda t, x: -x,
    _diffusion: lambda x, k: 0.3 * x,
    _flow_matching: lambda x, t: 0.3 * x,
    _denoiser: lambda x, sigma: 0.3 * x,
    _dirac: lambda y, t: 0.9 * y,
    _guided: lambda x, k: 0.3 * x,
    _diffpir: lambda x, k: 0.3 * x,
}

CASES = [
    (_indi, s)
    for s in (
        fr.Euler(),
        fr.Midpoint(),
        fr.Heun(),
        fr.RK4(),
        fr.Bosh3(),
        fr.Dopri5(),
        fr.InDISampler(eps=0.1, brownian=True),
        fr.NaiveSampler(),
        fr.ColdDiffusionSampler(),
        fr.SemiLinearMultistep(),
        fr.IPNDM(),
        fr.DataIPNDM(),
        fr.Torchdiffeq("rk4"),
        fr.Torchdiffeq("explicit_adams"),
        fr.Torchdiffeq("dopri5"),
    )
]
CASES += [(_ode, s) for s in (fr.Euler(), fr.Dopri5(), fr.IPNDM(), fr.Torchdiffeq("midpoint"))]
CASES += [(_diffusion, s) for s in (fr.Midpoint(), fr.Heun(), fr.RK4(), fr.IPNDM(), fr.Dopri5())]
CASES += [(_diffusion, fr.SemiLinearMultistep()), (_diffusion, fr.DataIPNDM())]
CASES += [
    (make, s)
    for make in (_flow_matching, _denoiser)
    for s in (fr.Euler(), fr.Midpoint(), fr.Heun(), fr.SemiLinearMultistep(), fr.IPNDM())
]
CASES += [(_sde, s) for s in (fr.EulerMaruyama(), fr.SRA1(), fr.Torchsde("heun"))]
CASES += [(_dirac, s) for s in (fr.DiracStep(), fr.EulerMaruyama(), fr.SRA1())]
CASES += [(_guided, fr.DPSStep()), (_guided, fr.DDRMStep()), (_diffpir, fr.DiffPIRStep())]


@pytest.mark.parametrize("make, solver", CASES, ids=lambda v: getattr(v, "__name__", repr(v)))
@pytest.mark.parametrize("steps", [3, 5])
def test_reported_evaluations_are_the_calls_made(make, solver, steps):
    counter = Counted(FUNCS[make])
    flow, x, kw = make(counter)
    sol = fr.solve(flow, solver, x, steps=steps, **kw)
    assert counter.calls > 0
    assert sol.stats.nfe.tolist() == [counter.calls] * x.shape[0]


@pytest.mark.parametrize("solver", [fr.Dopri5(rtol=1e-5), fr.Bosh3(rtol=1e-4)], ids=repr)
def test_under_error_control_every_attempt_and_the_landing_are_counted(solver):
    """One sample (its rows are evaluated alone): rejected attempts, FSAL reuse and the landing
    onto ``t = 0`` by the denoising step, all in ``stats.nfe``."""
    counter = Counted(FUNCS[_indi])
    flow, x, _ = _indi(counter)
    sol = fr.solve(flow, type(solver)(rtol=1e-5, dt0=0.9), x[:1])
    assert int(sol.stats.rejected[0]) > 0
    assert sol.stats.nfe.tolist() == [counter.calls]


@pytest.mark.parametrize(
    "solver",
    sorted({repr(s): s for _, s in CASES}.values(), key=repr)
    + [fr.InDISampler(eps=0.2), fr.Torchsde("srk"), fr.PIController(rtol=1e-4)],
    ids=repr,
)
def test_a_solvers_repr_is_its_constructor_call(solver):
    """Records, logs and ``FittedGrids`` name solvers by ``repr``: it must rebuild the same solver
    (constructor arguments only — a class constant such as ``order`` is not one)."""
    rebuilt = eval(repr(solver), dict(vars(fr)))  # noqa: S307 - the package's own names
    assert type(rebuilt) is type(solver) and repr(rebuilt) == repr(solver)


@pytest.mark.parametrize(
    "make, solver",
    [(m, s) for m, s in CASES if s.stochastic],
    ids=lambda v: getattr(v, "__name__", repr(v)),
)
def test_with_seeds_a_sample_restores_the_same_in_any_batch(make, solver):
    """``seeds=`` give each sample its own noise: rows 2 and 0 solved alone (in that order, with
    their seeds, on the flow restricted to them) equal those rows of the full batch — for every
    stochastic solver, guided ones included."""
    flow, x, kw = make(Counted(FUNCS[make]))
    kw.pop("seeds", None)
    full = fr.solve(flow, solver, x, steps=4, seeds=[10, 11, 12], **kw).x
    rows = torch.tensor([2, 0])
    part = fr.solve(flow.restrict(rows), solver, x[rows], steps=4, seeds=[12, 10], **kw).x
    torch.testing.assert_close(part, full[rows], rtol=0, atol=1e-12)


@pytest.mark.parametrize("make, solver", CASES, ids=lambda v: getattr(v, "__name__", repr(v)))
def test_differentiable_solves_give_the_discrete_solves_gradient(make, solver):
    """``differentiable=True`` backpropagates through every step (BIRD optimises through
    solves): the gradient of ``<w, solve(x)>`` along a direction ``d`` equals the central
    difference of the same discrete solve (same seeds), to 1e-6 relative."""
    flow, x, kw = make(Counted(FUNCS[make]))
    flow, x = flow.restrict(torch.tensor([1])), x[1:2].clone().requires_grad_(True)
    kw.pop("seeds", None)
    if solver.stochastic:
        kw["seeds"] = [3]

    assert_gradient_is_the_central_difference(
        lambda v: fr.solve(flow, solver, v, steps=3, differentiable=True, **kw).x, x
    )


def assert_gradient_is_the_central_difference(run, x: torch.Tensor) -> None:
    """The gradient of ``<w, run(x)>`` along a random ``d`` equals its central difference."""
    out = run(x)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    (g,) = torch.autograd.grad((out * w).sum(), x)
    with torch.no_grad():
        e = 1e-6
        fd = ((run(x + e * d) * w).sum() - (run(x - e * d) * w).sum()) / (2 * e)
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=1e-6)


def _blows_up(fn):
    """``fn``, NaN wherever its state input is huge (``inf · 0``): a sample that fails."""

    def bad(*a, **k):
        out = fn(*a, **k)
        state = next(v for v in a if torch.is_tensor(v) and v.shape == out.shape)
        return out + 0 * state.pow(4)

    return bad


@pytest.mark.parametrize("make, solver", CASES, ids=lambda v: getattr(v, "__name__", repr(v)))
def test_a_failing_sample_is_reported_and_the_others_restore_as_without_it(make, solver):
    """``on_failure="return"``: a sample whose evaluations turn non-finite gets a failure status,
    and the other rows are exactly their solve without it (the loop steps them on the restricted
    flow; per-step records keep one row per sample, NaN where a row was not stepped)."""
    flow, x, kw = make(Counted(_blows_up(FUNCS[make])))
    if solver.stochastic:
        kw["seeds"] = [0, 1, 2]
    x = x.clone()
    x[1] = x[1] * 1e300
    sol = fr.solve(flow, solver, x, steps=4, on_failure="return", **kw)
    assert sol.stats.status.tolist()[0::2] == [0, 0] and int(sol.stats.status[1]) != 0
    rows = torch.tensor([0, 2])
    if "seeds" in kw:
        kw["seeds"] = [0, 2]
    alone = fr.solve(flow.restrict(rows), solver, x[rows], steps=4, **kw)
    torch.testing.assert_close(sol.x[rows], alone.x, rtol=0, atol=0)
    for name, rec in sol.records.items():
        assert rec.shape[1] == 3, name
        torch.testing.assert_close(rec[:, 0::2], alone.records[name], rtol=0, atol=0)


@pytest.mark.parametrize("make, solver", CASES, ids=lambda v: getattr(v, "__name__", repr(v)))
def test_the_callback_sees_every_step_in_the_integrated_state(make, solver):
    """``callback(step, t, x)`` once per step (the landing included), steps counted from 1, ``t``
    the grid, and ``flow.from_state(x, t)`` the saved trajectory (solve's docstring)."""
    flow, x, kw = make(Counted(FUNCS[make]))
    if solver.stochastic:
        kw["seeds"] = [0, 1, 2]
    seen = []
    sol = fr.solve(flow, solver, x, steps=4, save_at="steps",
                   callback=lambda k, t, v: seen.append((k, t, v.clone())), **kw)  # fmt: skip
    assert [k for k, _, _ in seen] == [1, 2, 3, 4]
    for (_, t, v), ts, saved in zip(seen, sol.ts[1:], sol.trajectory[1:], strict=True):
        assert float(t) == float(ts)
        torch.testing.assert_close(flow.from_state(v, float(t)), saved, rtol=1e-12, atol=1e-12)
