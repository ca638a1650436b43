"""Review of the one integration loop (fourth pass): per-sample bookkeeping, partial solutions,
the start checks. Each test failed before its fix."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr

F64 = torch.float64


def _half(x, t):
    return 0.5 * x


@pytest.mark.parametrize(
    "solver, kw",
    [(fr.Euler(), {"steps": 4}), (fr.Heun(), {"steps": 4}), (fr.Dopri5(), {})],
    ids=["Euler", "Heun", "Dopri5-error-control"],
)
def test_a_sample_refused_before_the_first_step_keeps_its_start(solver, kw):
    """A NaN in one sample's observation is found before the first step (status non-finite,
    "found before the first step"), but with ``on_failure="return"`` the batched steps moved that
    sample on: a solver that does not read the observation took it to ``t_stop`` with a finite
    state, ``t_final = 0.25`` and 3 steps (error control: 9 steps), contradicting its status. Its
    partial result is its start, as the partial solution of the refused solve says."""
    y = torch.rand(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    bad = y.clone()
    bad[1, 2] = math.nan
    flow = fr.InDIFlow(_half, observation=bad)
    with pytest.raises(fr.NonFiniteError, match="before the first step") as err:
        fr.solve(flow, solver, y, **kw)
    refused = err.value.solution
    save = {"save_at": "steps"} if kw else {}
    sol = fr.solve(flow, solver, y, on_failure="return", **kw, **save)
    clean = fr.solve(fr.InDIFlow(_half, observation=y), solver, y, **kw)
    assert sol.stats.status.tolist() == [0, 3, 0]
    assert sol.t_final.tolist() == [0.0, refused.t_final[1].item(), 0.0] == [0.0, 1.0, 0.0]
    assert sol.stats.steps[1] == refused.stats.steps[1] == 0
    assert torch.equal(sol.x[1], y[1])
    # the other samples are those of a clean solve (the observation is not read by these steps)
    assert torch.equal(sol.x[[0, 2]], clean.x[[0, 2]])
    if save:  # only the start slot was reached
        assert torch.equal(sol.trajectory[0, 1], y[1])
        assert sol.trajectory[1:, 1].isnan().all()
        assert sol.trajectory[1:, [0, 2]].isfinite().all()


@pytest.mark.parametrize(
    ("solver", "stopped"), [(fr.Euler(), 0.6), (fr.RK4(), 0.5), (fr.Torchdiffeq("rk4"), 0.5)]
)
def test_t_final_of_a_sample_that_fails_mid_solve_on_a_fixed_grid(solver, stopped):
    """The mid-solve case of ``test_review_solve_options``'s t_final test, with a drift that
    overflows after ``t = 0.57`` (that test's NaN ``cond`` is now refused before the first step,
    and such a sample keeps its start: the test above): its last finite state is at the start of
    the first step that evaluates past 0.57."""

    def drift(t, x, k):
        return -x * torch.where(t[:, None] > 0.57, 1.0 / k[:, None], torch.ones_like(x))

    flow = fr.ODEFlow(drift, cond={"k": torch.tensor([1.0, 0.0], dtype=F64)})
    sol = fr.solve(
        flow, solver, torch.ones(2, 3, dtype=F64), t_span=(0.0, 1.0), steps=10, on_failure="return"
    )
    assert sol.stats.status.tolist() == [0, 3]
    assert sol.t_final[0].item() == 1.0
    assert sol.t_final[1].item() == pytest.approx(stopped)


def test_a_compiled_stochastic_solve_that_lands_by_denoising_draws_no_landing_noise():
    """The compiled solve drew the landing step's noise whenever the solver has no stage at the
    end; but the endpoint rule also lands by the denoising step (no draw) for a stage past the
    start on a flow with reciprocal stages. SRA1 (stage at 3/4) on such an SDE was refused:
    "noise_draws() declared 4 draws, its steps took 3"."""
    import dataclasses

    from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

    abar = linear_alphas_cumprod()
    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(8, generator=g, dtype=F64), 0.1 + 0.7 * torch.rand(8, generator=g)
    oracle = GaussianDiffusionOracle(mean=mean, std=std.to(F64), alphas_cumprod=abar)
    flow = fr.DiffusionFlow(oracle, alphas_cumprod=abar)

    class ReciprocalSDE(fr.DiffusionSDE):
        def time_variable(self):
            return dataclasses.replace(super().time_variable(), reciprocal=True)

    sde = ReciprocalSDE(flow)
    x = torch.randn(2, 8, dtype=F64, generator=torch.Generator().manual_seed(0))

    def run(**kw):
        gen = torch.Generator().manual_seed(1)
        return fr.solve(sde, fr.SRA1(), x, steps=4, generator=gen, **kw)

    eager = run()
    assert eager.stats.nfe.tolist() == [3 * 2 + 1] * 2  # three SRA1 steps and the denoising step
    compiled = run(compile={"backend": "eager"})
    assert torch.equal(compiled.x, eager.x)
    assert torch.equal(compiled.stats.nfe, eager.stats.nfe)


def _late_nan(x, t, flag):
    """``x/2``, but NaN for the flagged samples below ``t = 0.4`` (on the grid below: only
    Euler's landing step)."""
    t = t.reshape(-1, 1) if t.dim() else t
    return torch.where((flag[:, None] > 0) & (t < 0.4), math.nan, 0.5 * x)


class _NaNDenoiser(fr.InDIFlow):
    """``F = x/2``, whose clean estimate (the denoising landing step) is NaN for the flagged
    samples; the drift is finite."""

    def velocity(self, t, x):
        return (x - 0.5 * x) / (t.reshape(-1, 1) if t.dim() else t)

    def denoise(self, t, x):
        return torch.where(self.cond[:, None] > 0, math.nan, 0.5 * x)


def _flagged(kind):
    flag = torch.tensor([0.0, 1.0], dtype=F64)
    if kind == "predictor":
        return fr.InDIFlow(_late_nan, cond=flag)
    return _NaNDenoiser(lambda x, t, c: 0.5 * x, cond=flag)


@pytest.mark.parametrize(
    "solver, kind, compile",
    [
        (fr.Euler(), "predictor", False),
        (fr.Heun(), "denoiser", False),
        (fr.Euler(), "predictor", {"backend": "eager"}),
    ],
    ids=["Euler", "Heun", "Euler-compiled"],
)
def test_a_sample_whose_landing_is_not_finite_stops_at_t_stop(solver, kind, compile):
    """A sample whose landing step onto ``t = 0`` was non-finite reported ``t_final = 0`` (the
    end reached), counted the landing among its steps, and its partial result was NaN; a
    sample failing at any earlier step reports the start of that step and keeps no step past
    it. It now stops at ``t_stop`` with its state there: the solve on the grid up to
    ``t_stop``."""
    y = torch.rand(2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    grid = [1.0, 2 / 3, 1 / 3, 0.0]
    flow = _flagged(kind)
    sol = fr.solve(flow, solver, y, grid=grid, on_failure="return", compile=compile)
    stopped = fr.solve(flow, solver, y, grid=grid[:-1])  # its steps are finite
    assert sol.stats.status.tolist() == [0, 3]
    assert sol.t_final.tolist() == [0.0, 1 / 3]
    assert sol.stats.steps.tolist() == [3, 2]
    assert torch.equal(sol.x[1], stopped.x[1])
    with pytest.raises(fr.NonFiniteError, match="landing step") as err:
        fr.solve(flow, solver, y, grid=grid, compile=compile)
    assert err.value.solution.t_final.tolist() == [0.0, 1 / 3]


def test_a_sample_whose_landing_is_not_finite_under_error_control():
    """The same under error control: the sample stopped at the controller's ``t_stop``."""
    y = torch.rand(2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    ctrl = fr.PIController(rtol=1e-3, atol=1e-5, t_min=0.3)
    sol = fr.solve(_flagged("denoiser"), fr.Dopri5(), y, controller=ctrl, on_failure="return")
    assert sol.stats.status.tolist() == [0, 3]
    assert sol.t_final.tolist() == [0.0, 0.3]
    assert sol.x[1].isfinite().all()
    assert sol.stats.steps[1] == sol.stats.steps[0] - 1  # the same steps to 0.3, no landing
