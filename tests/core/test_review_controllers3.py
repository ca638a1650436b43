"""Controllers and the loop's edges, third review (found by a review session).

* a step that would stop less than 1 % short of its target lands on it (Hairer's DOPRI5: no
  sliver of a step, costing a whole step's evaluations, before a save time or the end), within
  PID's ``dt_max``;
* a pure relative tolerance (``atol=0``) on a state with an element exactly 0 solves (its
  ``0/0`` scaled error failed the sample at step 1 as "the state or the drift is NaN/inf"); a
  NaN drift is still caught;
* a sample that failed before the end reports its partial result in the user's units at the time
  it stopped (not at the end it never reached), and a landed end's save slot is NaN for it, as
  every slot a sample never reached.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import MAX_STEPS, NONFINITE, SUCCESS

F64 = torch.float64


class _Recorder(fr.Dopri5):
    """Dopri5 recording every attempted step ``(t, h)``."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.attempts = []

    def step(self, flow, t, x, h, state, ctx):
        self.attempts.append((float(t.reshape(-1)[0]), float(h.reshape(-1)[0])))
        return super().step(flow, t, x, h, state, ctx)


def _still():
    """``dx/dt = 0``: every step's error is 0, so the rule grows each step by ``ifactor``."""
    return fr.ODEFlow(lambda t, x: torch.zeros_like(x))


# ------------------------------------------------------------------ no sliver of a step
def test_a_step_stopping_within_one_percent_of_the_end_lands_on_it():
    solver = _Recorder()
    x0 = torch.ones(2, 3, dtype=F64)
    ctrl = fr.PIController(dt0=0.995)  # 0.5 % short of the end
    sol = fr.solve(_still(), solver, x0, t_span=(0.0, 1.0), controller=ctrl)
    assert sol.status == "success"
    assert sol.stats.steps.tolist() == [1, 1]  # not 0.995 then a step of 0.005
    assert solver.attempts == [(0.0, 1.0)]
    assert sol.t_final.tolist() == [1.0, 1.0]


def test_a_step_stopping_within_one_percent_of_a_save_time_lands_on_it():
    solver = _Recorder()
    x0 = torch.ones(1, 3, dtype=F64)
    save = torch.tensor([0.5, 1.0], dtype=F64)
    ctrl = fr.PIController(dt0=0.496)  # 0.8 % short of the save time
    sol = fr.solve(_still(), solver, x0, t_span=(0.0, 1.0), controller=ctrl, save_at=save)
    assert [t for t, _ in solver.attempts] == [0.0, 0.5]
    assert sol.stats.steps.tolist() == [2]
    torch.testing.assert_close(sol.trajectory, torch.ones(2, 1, 3, dtype=F64))
    # 2 % short is a step of its own: the stretch is 1 %, not more
    solver = _Recorder()
    fr.solve(_still(), solver, x0, t_span=(0.0, 1.0), controller=fr.PIController(dt0=0.49))
    assert solver.attempts[:2] == [(0.0, 0.49), (0.49, 0.51)]


def test_the_stretch_never_exceeds_dt_max():
    solver = _Recorder()
    x0 = torch.ones(1, 2, dtype=F64)
    ctrl = fr.PIDController(dt0=0.25, dt_max=0.25)
    sol = fr.solve(_still(), solver, x0, t_span=(0.0, 1.002), controller=ctrl)
    assert sol.status == "success" and float(sol.t_final[0]) == 1.002
    assert max(abs(h) for _, h in solver.attempts) <= 0.25
    assert sol.stats.steps.tolist() == [5]  # 4 x 0.25, then the 0.002 dt_max leaves


# ------------------------------------------------------------------ atol = 0
def test_pure_relative_tolerance_with_a_zero_element():
    x0 = torch.tensor([[1.0, 0.0, 2.0]], dtype=F64)
    for per_sample in (True, False):
        ctrl = fr.PIController(rtol=1e-8, atol=0.0, per_sample=per_sample)
        sol = fr.solve(
            fr.ODEFlow(lambda t, x: -x), fr.Dopri5(), x0, t_span=(0.0, 1.0), controller=ctrl
        )
        assert sol.status == "success"
        torch.testing.assert_close(sol.x, x0 * math.exp(-1.0), rtol=1e-7, atol=0.0)
        assert float(sol.x[0, 1]) == 0.0


def test_pure_relative_tolerance_from_a_zero_element_that_moves():
    """The harmonic oscillator from (1, 0): its second element starts at exactly 0."""
    osc = fr.ODEFlow(lambda t, x: torch.stack([x[:, 1], -x[:, 0]], 1))
    x0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    ctrl = fr.PIController(rtol=1e-8, atol=0.0)
    sol = fr.solve(osc, fr.Dopri5(), x0, t_span=(0.0, 2.0), controller=ctrl)
    assert sol.status == "success"
    exact = torch.tensor([[math.cos(2.0), -math.sin(2.0)]], dtype=F64)
    torch.testing.assert_close(sol.x, exact, rtol=1e-6, atol=0.0)
    # a state exactly 0 everywhere: Hairer's small-norm start, then a relative error
    drift = fr.ODEFlow(lambda t, x: torch.ones_like(x) + t[:, None])
    sol = fr.solve(
        drift, fr.Dopri5(), torch.zeros(1, 3, dtype=F64), t_span=(0.0, 2.0), controller=ctrl
    )
    assert sol.status == "success"
    torch.testing.assert_close(sol.x, torch.full((1, 3), 4.0, dtype=F64), rtol=1e-8, atol=0.0)


def test_pure_relative_tolerance_still_catches_a_nan_drift():
    def f(t, x):
        return torch.where(t[:, None] > 0.5, torch.nan, -x)

    x0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    ctrl = fr.PIController(rtol=1e-6, atol=0.0)
    sol = fr.solve(
        fr.ODEFlow(f), fr.Dopri5(), x0, t_span=(0.0, 1.0), controller=ctrl, on_failure="return"
    )
    assert sol.stats.status.tolist() == [NONFINITE]
    assert float(sol.t_final[0]) <= 0.5


# ------------------------------------------------------------------ failed samples at the end
class _Scaled(fr.ODEFlow):
    """A flow whose state is the user's tensor times ``1 + t`` (as a diffusion model's is times
    ``√(1 + σ²)``)."""

    def to_state(self, x, t):
        return x * (1.0 + float(t))

    def from_state(self, x, t):
        return x / (1.0 + float(t))


def test_a_failed_samples_partial_result_is_in_the_users_units_at_its_own_time():
    flow = _Scaled(lambda t, x: torch.zeros_like(x))  # the state stays x0 · (1 + 0)
    x0 = torch.ones(2, 3, dtype=F64)
    ctrl = fr.PIController(dt0=0.1, max_steps=1)
    sol = fr.solve(flow, fr.Dopri5(), x0, t_span=(0.0, 1.0), controller=ctrl, on_failure="return")
    assert sol.stats.status.tolist() == [MAX_STEPS, MAX_STEPS]
    assert sol.t_final.tolist() == pytest.approx([0.1, 0.1])
    # the state x0 at t = 0.1 is x0 / 1.1 in the user's units (not x0 / 2, as at t = 1)
    torch.testing.assert_close(sol.x, x0 / 1.1)
    with pytest.raises(fr.errors.MaxStepsReachedError) as info:
        fr.solve(flow, fr.Dopri5(), x0, t_span=(0.0, 1.0), controller=ctrl)
    torch.testing.assert_close(info.value.solution.x, x0 / 1.1)


def test_a_landed_ends_save_slot_is_nan_for_a_sample_that_failed():
    def predictor(x, t, flag):  # sample 1's predictor turns NaN below t = 0.4
        bad = (flag > 0)[:, None] & (t[:, None] < 0.4)
        return torch.where(bad, torch.nan, 0.5 * x)

    flag = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    y = torch.ones(3, 4, dtype=F64)
    save = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    sol = fr.solve(
        fr.InDIFlow(predictor, cond=flag),
        fr.Dopri5(),
        y,
        controller=fr.PIController(rtol=1e-6, atol=1e-9),
        save_at=save,
        on_failure="return",
    )
    assert sol.stats.status.tolist() == [SUCCESS, NONFINITE, SUCCESS]
    assert float(sol.t_final[1]) > 0.0
    # x(t) = sqrt(t) y: the slots the failed sample reached hold its states, t = 0 does not
    torch.testing.assert_close(
        sol.trajectory[:2, 1], torch.tensor([1.0, 0.5**0.5]).double()[:, None].expand(2, 4)
    )
    assert torch.isnan(sol.trajectory[2, 1]).all()
    torch.testing.assert_close(sol.trajectory[2, [0, 2]], sol.x[[0, 2]])


# ------------------------------------------------------------------ numpy numbers
def test_numpy_numbers_are_taken_and_stored_as_python_floats():
    import numpy as np

    ctrl = fr.PIController(t_min=np.float32(0.01), rtol=np.float32(1e-3), dt0=np.float64(0.1))
    assert type(ctrl.t_min) is float and ctrl.t_min == pytest.approx(0.01)
    assert type(ctrl.rtol) is float and type(ctrl.dt0) is float
    pid = fr.PIDController(dt_max=np.float32(0.5), pcoeff=np.int64(0))
    assert type(pid.dt_max) is float and type(pid.pcoeff) is float
    for bad in (float("nan"), True, "0.1", 1.0, 0.0):
        with pytest.raises(fr.errors.ConfigError, match="t_min"):
            fr.PIController(t_min=bad)


def test_a_failed_diffusion_sample_is_the_models_x_where_it_stopped():
    """A diffusion model's state is ``x √(1 + σ²)``: the partial result of a sample stopped at
    ``σ ≈ 0.3 σ_max`` was that factor (~50) too large."""
    from tests.diffusion.helpers import gaussian_problem

    _, flow = gaussian_problem()
    x = torch.randn(2, 48, generator=torch.Generator().manual_seed(0), dtype=F64)
    ctrl = fr.PIController(rtol=1e-5, atol=1e-7, max_steps=4)
    sol = fr.solve(flow, fr.Dopri5(), x, controller=ctrl, on_failure="return")
    assert sol.stats.status.tolist() == [MAX_STEPS, MAX_STEPS]
    for r in range(2):
        t = float(sol.t_final[r])
        assert 0.0 < t < 1.0
        tight = fr.PIController(rtol=1e-10, atol=1e-12)
        ref = fr.solve(flow, fr.Dopri5(), x[r : r + 1], controller=tight, t_end=t)
        torch.testing.assert_close(sol.x[r : r + 1], ref.x, rtol=1e-4, atol=1e-5)


def test_a_default_t_min_outside_a_short_span_says_what_to_pass():
    from tests.core.helpers import gaussian_oracle, observations

    oracle = gaussian_oracle(seed=0, dim=4)
    y = observations(oracle, n=2, seed=1)
    flow = fr.InDIFlow(oracle)
    # rtol 1e-2 stops at t_min = 0.01 by default: above this span's start
    with pytest.raises(fr.errors.ConfigError, match=r"t_min below 0\.005"):
        fr.solve(flow, fr.Dopri5(rtol=1e-2), y, t_span=(0.005, 0.0))
    ctrl = fr.PIController(rtol=1e-2, t_min=0.0005)
    assert fr.solve(flow, fr.Dopri5(), y, t_span=(0.005, 0.0), controller=ctrl).status == "success"


@pytest.mark.parametrize("per_sample", [True, False])
def test_the_stretch_and_a_pure_relative_tolerance_read_the_device_once_per_step(
    monkeypatch, per_sample
):
    from tests.core.test_syncs import in_loop

    lam = torch.tensor([1.0, 3.0, 0.0], dtype=F64)
    flow = fr.ODEFlow(lambda t, x, c: -c[:, None] * x, cond=lam)
    x0 = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0]], dtype=F64)
    ctrl = fr.PIController(rtol=1e-7, atol=0.0, per_sample=per_sample)
    save = torch.tensor([0.3, 0.7, 1.0], dtype=F64)
    with in_loop(monkeypatch) as seen:
        sol = fr.solve(flow, fr.Dopri5(), x0, t_span=(0.0, 1.0), controller=ctrl, save_at=save)
    assert sol.status == "success"
    assert dict(seen["loop"].ops) == {"Tensor.tolist": seen["decisions"]}
    assert seen["decisions"] == int((sol.stats.steps + sol.stats.rejected).max())
    exact = x0[None] * torch.exp(-lam[None, :, None] * save[:, None, None])
    torch.testing.assert_close(sol.trajectory, exact, rtol=1e-6, atol=0.0)
