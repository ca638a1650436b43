"""Review: error controllers' rules as documented (flowrestore/controllers/error.py)."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError

F64 = torch.float64


def _step_ends(controller):
    ends = []
    sol = fr.solve(
        fr.ODEFlow(lambda t, x: -x),
        fr.Dopri5(),
        torch.ones(2, 3, dtype=F64),
        t_span=(0.0, 1.0),
        controller=controller,
        callback=lambda k, t, x: ends.append(float(t[0])),
        on_failure="return",
    )
    return sol, ends


@pytest.mark.parametrize("ctrl", [fr.PIController, fr.PIDController])
def test_the_starting_step_is_never_below_min_step(ctrl):
    """Hairer's starting step (0.04 here) is a guess, not an error-controlled size: it used to be
    taken below ``min_step``, although no step below it is ever attempted."""
    sol, ends = _step_ends(ctrl(rtol=1e-5, atol=1e-8, min_step=0.05))
    assert sol.status == "success"
    assert ends[0] >= 0.05


def test_a_starting_step_or_step_cap_below_min_step_is_refused_at_construction():
    with pytest.raises(ConfigError, match=r"dt0=0\.01.*min_step=0\.1"):
        fr.PIController(dt0=0.01, min_step=0.1)
    with pytest.raises(ConfigError, match=r"dt_max=0\.01.*min_step=0\.1"):
        fr.PIDController(dt_max=0.01, min_step=0.1)
    fr.PIDController(dt_max=0.1, min_step=0.1, dt0=0.1)  # equal is fine


def test_the_times_a_callback_receives_under_per_sample_control_stay_as_they_were():
    """Once the easy samples finish, the run wrote the others' times into its time tensor in
    place: every ``t`` a callback had kept from then on changed to the latest times."""
    k = torch.tensor([1.0, 50.0, 1.0], dtype=F64)
    flow = fr.ODEFlow(lambda t, x, k: -k[:, None] * x, cond={"k": k})
    seen = []
    fr.solve(
        flow,
        fr.Dopri5(rtol=1e-6, atol=1e-8),
        torch.ones(3, 2, dtype=F64),
        t_span=(0.0, 1.0),
        callback=lambda step, t, x: seen.append((t, t.clone(), x, x.clone())),
    )
    assert len(seen) > 20  # the hard sample goes on alone after the easy ones finish
    assert all(torch.equal(kept, copy) for kept, copy, _, _ in seen)
    # the state too: the loop merges later rows into its own copy in place
    assert all(torch.equal(kept, copy) for _, _, kept, copy in seen)
    assert all(float(b[1]) > float(a[1]) for (a, *_), (b, *_) in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("span", [(0.0, 1e-6), (1e-6, 0.0), (2e-7, 3e-7)])
def test_a_short_span_near_zero_is_not_round_off(dtype, span):
    """The round-off floor was ``4 eps · max(|t|, 1)``: on a span of 1e-6 near 0 a float32
    solve failed at its first step with step_size_underflow, although such times are exact to
    ``eps · 1e-6``. It is the same ODE as ``x' = −x`` on ``[0, 1]``, rescaled."""
    t0, t1 = span
    length = abs(t1 - t0)
    flow = fr.ODEFlow(lambda t, x: -x / length)
    sol = fr.solve(
        flow,
        fr.Dopri5(rtol=1e-5, atol=1e-7),
        torch.ones(2, 3, dtype=dtype),
        t_span=span,
    )
    ref = fr.solve(
        fr.ODEFlow(lambda t, x: -x),
        fr.Dopri5(rtol=1e-5, atol=1e-7),
        torch.ones(2, 3, dtype=dtype),
        t_span=(0.0, 1.0) if t1 > t0 else (1.0, 0.0),
    )
    exact = math.exp(-(t1 - t0) / length)  # e^-1 forward, e^1 backward
    torch.testing.assert_close(sol.x, torch.full_like(sol.x, exact), rtol=1e-4, atol=0)
    assert int(sol.stats.nfe.max()) <= 2 * int(ref.stats.nfe.max())


def _one_bad_row(nan_after):
    """Three samples of ``x' = −x``; sample 1's drift is NaN for ``t > nan_after``."""

    def f(t, x, idx):
        bad = (idx == 1)[:, None] & (t.reshape(-1, 1) > nan_after)
        return torch.where(bad, torch.nan, -x)

    return fr.ODEFlow(f, cond={"idx": torch.arange(3)})


@pytest.mark.parametrize("nan_after", [-1.0, 0.5])
@pytest.mark.parametrize(
    "solver, controller",
    [
        (fr.Dopri5(), fr.PIController(rtol=1e-6, atol=1e-9, per_sample=False)),
        (fr.Dopri5(), fr.PIDController(rtol=1e-6, atol=1e-9, per_sample=False)),
        (fr.Torchdiffeq("dopri5"), fr.PIController(rtol=1e-6, atol=1e-9)),  # one step per batch
    ],
)
def test_one_non_finite_sample_does_not_fail_a_batch_stepped_together(
    solver, controller, nan_after
):
    """Under one step for the batch (``per_sample=False``, or a solver that takes one step size
    for the batch) the batch's norm was the largest sample's, NaN when one sample was: every
    sample was rejected down to underflow and reported ``non_finite``, also with
    ``on_failure='return'``, whose purpose is to solve the other samples."""
    sol = fr.solve(
        _one_bad_row(nan_after),
        solver,
        torch.ones(3, 2, dtype=F64),
        t_span=(0.0, 1.0),
        controller=controller,
        on_failure="return",
    )
    assert sol.stats.status.tolist() == [0, 3, 0]
    good = sol.x[[0, 2]]
    torch.testing.assert_close(good, torch.full_like(good, math.exp(-1.0)), rtol=1e-5, atol=0)


def test_a_batch_stepped_together_still_shrinks_for_a_sample_a_smaller_step_saves():
    """Sample 1's drift is NaN outside ``|x| ≤ 10``, which a too-large first step reaches: the
    batch rejects and shrinks for it, and every sample finishes (only a sample that is non-finite
    down to round-off is dropped)."""

    def f(t, x, idx):
        k = torch.where(idx == 1, 20.0, 1.0)[:, None]
        return torch.where((x.abs() > 10).any(1, keepdim=True), torch.nan, -k * x)

    flow = fr.ODEFlow(f, cond={"idx": torch.arange(3)})
    ctrl = fr.PIController(rtol=1e-6, atol=1e-9, dt0=1.0, per_sample=False)
    sol = fr.solve(
        flow, fr.Dopri5(), torch.ones(3, 2, dtype=F64), t_span=(0.0, 1.0), controller=ctrl
    )
    assert sol.stats.status.tolist() == [0, 0, 0]
    assert int(sol.stats.rejected.min()) >= 1
    exact = torch.tensor([math.exp(-1.0), math.exp(-20.0), math.exp(-1.0)], dtype=F64)
    torch.testing.assert_close(sol.x[:, 0], exact, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("solver", [fr.DiracStep(), fr.EulerMaruyama(), fr.SRA1()])
def test_error_control_of_an_sde_step_does_not_suggest_ode_solvers(solver):
    """The refusal named Bosh3, Dopri5 and Torchdiffeq('dopri5'), which cannot step a DiracSDE."""
    A = fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 1.0))
    sde = fr.DiracSDE(lambda y, t: 0.9 * y, A, fr.schedules.Geometric(0.01, 0.05))
    with pytest.raises(fr.IncompatibleSolverError, match="steps=") as info:
        fr.solve(sde, solver, torch.rand(2, 1, 8, 8), controller=fr.PIController())
    assert "Dopri5" not in str(info.value)
