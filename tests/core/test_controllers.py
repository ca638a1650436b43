"""The controller protocol: a PID controller as one file, per-sample saving, state merging.

* :class:`fr.PIDController` solves the adaptive problems of ``test_adaptive`` to tolerance, and
  every step-size decision is Söderlind's PID formula with its gains (a changed gain fails);
* under per-sample error control with ``save_at``, each sample's saved states are those of the
  sample solved alone, also when samples need different numbers of steps;
* ``merge_rows``/``merge_x`` keep the old state of rejected rows (checked directly, and through the
  loop: every attempt of an FSAL solver starts from the drift at its own start point);
* a controller written outside the package (the protocol, no error estimate) drives the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import flowrestore as fr
from flowrestore.controllers import ControllerRun, Outcome, Proposal, Schedule, StepController
from flowrestore.integrate.state import merge_rows, merge_x

from .helpers import gaussian_oracle, linear_system, observations

F64 = torch.float64


def scaled_error(x, exact, ctrl):
    return float(((x - exact).abs() / (ctrl.atol + ctrl.rtol * exact.abs())).max())


@pytest.fixture(scope="module")
def problem():
    oracle = gaussian_oracle(seed=0, dim=100)
    return oracle, observations(oracle, n=6, seed=1)


# ------------------------------------------------------------------ PID: to tolerance
@pytest.mark.parametrize("solver", [fr.Bosh3, fr.Dopri5], ids=["Bosh3", "Dopri5"])
@pytest.mark.parametrize("rtol", [1e-3, 1e-5, 1e-7])
def test_pid_solves_the_gaussian_flow_to_tolerance(problem, solver, rtol):
    oracle, y = problem
    ctrl = fr.PIDController(rtol=rtol, atol=rtol * 1e-2)
    for t_end in (0.05, 0.0):
        sol = fr.solve(fr.InDIFlow(oracle), solver(), y, controller=ctrl, t_end=t_end or None)
        assert sol.status == "success"
        assert scaled_error(sol.x, oracle.ode_solution(y, t_end), ctrl) < 5
    pi = fr.solve(fr.InDIFlow(oracle), solver(rtol=rtol, atol=rtol * 1e-2), y, t_end=0.05)
    pid = fr.solve(fr.InDIFlow(oracle), solver(), y, controller=ctrl, t_end=0.05)
    # a comparable cost to the PI controller's (not a wasteful rule that passes by brute force)
    assert int(pid.stats.nfe.max()) <= 1.5 * int(pi.stats.nfe.max())


def test_pid_on_a_linear_system_and_dt_max():
    flow, x0, exact = linear_system()
    ctrl = fr.PIDController(rtol=1e-8, atol=1e-10, dt_max=0.01)
    solver = _Recorder()
    sol = fr.solve(flow, solver, x0, t_span=(0.0, 2.0), controller=ctrl)
    assert scaled_error(sol.x, exact(2.0), ctrl) < 5
    assert max(float(a[1].abs().max()) for a in solver.attempts) <= 0.01 * (1 + 1e-12)
    assert int(sol.stats.steps.min()) >= 200  # 2.0 / 0.01: the cap, not the tolerance, set them
    free = fr.solve(
        flow, fr.Dopri5(), x0, t_span=(0.0, 2.0), controller=ctrl.__class__(rtol=1e-8, atol=1e-10)
    )
    assert int(free.stats.steps.max()) < 100


class _Recorder(fr.Dopri5):
    """Dopri5 recording every attempted step ``(t, h, x, x_new, err, k1)``."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.attempts = []

    def step(self, flow, t, x, h, state, ctx):
        res = super().step(flow, t, x, h, state, ctx)
        k1 = None if state is None or state.k1 is None else state.k1.clone()
        self.attempts.append(
            (t.clone(), h.clone(), x.clone(), res.x.clone(), res.error.clone(), k1, flow)
        )
        return res


def _norm(x, x_new, err, ctrl):
    scale = ctrl.atol + ctrl.rtol * torch.maximum(x.abs(), x_new.abs())
    return float((err / scale).pow(2).mean().sqrt())


@pytest.mark.parametrize(
    "gains", [(1 / 6, 1 / 3, 1 / 6), (0.3, 0.4, 0.25)], ids=["defaults", "other-gains"]
)
def test_pid_resizes_by_soederlinds_formula(gains):
    """Every accepted step's factor is ``safety e_n^−(βI+βP+βD) e_{n−1}^(βP+2βD) e_{n−2}^−βD``
    (``β = gain/k``, ``k = min(5, 4) + 1`` for Dopri5), every rejected one ``safety e^(−1/k)``."""
    pc, ic, dc = gains
    ctrl = fr.PIDController(rtol=1e-9, atol=1e-12, pcoeff=pc, icoeff=ic, dcoeff=dc, dt0=0.4)
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=F64)
    flow = fr.ODEFlow(lambda t, x: x @ A.T + torch.sin(3 * t)[:, None])
    solver = _Recorder()
    fr.solve(
        flow, solver, torch.tensor([[1.0, -2.0]], dtype=F64), t_span=(0.0, 4.0), controller=ctrl
    )
    k = 5.0
    bi, bp, bd = ic / k, pc / k, dc / k
    e1 = e2 = 1.0
    checked = rejected = 0
    steps = solver.attempts
    for (t, h, x, xn, err, *_), (t_next, h_next, *_) in zip(steps, steps[1:], strict=False):
        t, h, t_next, h_next = float(t), float(h), float(t_next), float(h_next)
        e = _norm(x, xn, err, ctrl)
        if e <= 1:
            if abs(t + h + h_next - 4.0) < 1e-12:
                break  # the next step is clipped onto the end: its size says nothing
            fac = ctrl.safety * e ** -(bi + bp + bd) * e1 ** (bp + 2 * bd) * e2 ** (-bd)
            assert h_next == pytest.approx(h * min(max(fac, 0.2), 10.0), rel=1e-10), (t, e)
            e1, e2 = max(e, 1e-4), e1
            checked += 1
        else:
            assert t_next == t
            assert h_next == pytest.approx(h * min(max(0.9 * e ** (-1 / k), 0.2), 1.0), rel=1e-10)
            rejected += 1
    assert checked >= 10 and rejected >= 1


def test_pid_without_derivative_is_the_pi_controller(problem):
    """``PIDController(pcoeff=p, icoeff=i, dcoeff=0)`` is ``PIController(pcoeff=p, icoeff=i+p)``:
    the same rule, so the same steps and the same result to the last bit."""
    oracle, y = problem
    pid = fr.PIDController(rtol=1e-6, atol=1e-8, pcoeff=0.4, icoeff=0.3, dcoeff=0.0)
    pi = fr.PIController(rtol=1e-6, atol=1e-8, pcoeff=0.4, icoeff=0.7)
    a = fr.solve(fr.InDIFlow(oracle), fr.Dopri5(), y, controller=pid, t_end=0.05)
    b = fr.solve(fr.InDIFlow(oracle), fr.Dopri5(), y, controller=pi, t_end=0.05)
    assert torch.equal(a.stats.nfe, b.stats.nfe)
    torch.testing.assert_close(a.x, b.x, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ saving per sample
def test_save_at_per_sample_rows_equal_each_row_alone():
    """Rows that need different step counts reach the save times in different iterations; each
    row's saved states must be its own solve's (issue 15, item 7)."""
    oracle = gaussian_oracle(seed=4, dim=12)
    y = observations(oracle, n=4, seed=5)
    y[1] = oracle.mean + 1e-3 * (y[1] - oracle.mean)  # an easy row: far fewer steps
    y[3] = oracle.mean + 3.0 * (y[3] - oracle.mean)  # a hard one
    times = torch.tensor([1.0, 0.7, 0.45, 0.2, 0.1], dtype=F64)
    solver = fr.Dopri5(rtol=1e-8, atol=1e-10)
    flow = fr.InDIFlow(oracle)
    batch = fr.solve(flow, solver, y, save_at=times, t_end=0.1)
    steps = batch.stats.steps
    assert int(steps.max()) > int(steps.min()) + 3, steps
    for i in range(y.shape[0]):
        alone = fr.solve(flow, solver, y[i : i + 1], save_at=times, t_end=0.1)
        assert torch.equal(batch.trajectory[:, i], alone.trajectory[:, 0]), i
    for k, t in enumerate(times.tolist()):  # and they are the flow's states at those times
        assert scaled_error(batch.trajectory[k], oracle.ode_solution(y, t), solver.controller) < 5


def test_save_times_a_failed_sample_never_reached_are_nan():
    """A sample that runs out of steps has its saved states up to where it stopped, NaN after
    (never a state from between two save times)."""
    oracle = gaussian_oracle(seed=4, dim=12)
    y = observations(oracle, n=3, seed=5)
    y[1] = oracle.mean + 1e-3 * (y[1] - oracle.mean)  # easy: finishes; the others run out
    times = torch.tensor([0.8, 0.5, 0.3, 0.2, 0.1], dtype=F64)
    solver = fr.Dopri5(rtol=1e-9, atol=1e-11, max_steps=12)
    sol = fr.solve(fr.InDIFlow(oracle), solver, y, save_at=times, t_end=0.1, on_failure="return")
    assert sol.stats.status.tolist() == [1, 0, 1]
    for i in range(3):
        reached = times >= sol.t_final[i] - 1e-12
        traj = sol.trajectory[:, i]
        assert bool(torch.isnan(traj[~reached]).all()), i
        exact = oracle.ode_solution(y[i : i + 1].expand(len(times), -1), times)
        assert scaled_error(traj[reached], exact[reached], solver.controller) < 5, i
    assert int((~torch.isnan(sol.trajectory[:, 0, 0])).sum()) >= 1


# ------------------------------------------------------------------ merging rejected rows
@dataclass(frozen=True)
class _State:
    a: torch.Tensor
    shared: torch.Tensor
    pair: tuple


def test_merge_rows_keeps_rejected_rows_old_state():
    full = _State(
        a=torch.arange(5.0).reshape(5, 1),
        shared=torch.tensor(7.0),
        pair=(torch.zeros(5, 2), None),
    )
    new = _State(
        a=torch.full((3, 1), -1.0), shared=torch.tensor(8.0), pair=(torch.ones(3, 2), None)
    )
    rows = torch.tensor([4, 0, 2])
    accept = torch.tensor([True, False, True])
    before = full.a.clone()
    out = merge_rows(full, new, accept, rows)
    assert out.a.flatten().tolist() == [0.0, 1.0, -1.0, 3.0, -1.0]  # row 0 rejected: kept
    assert out.pair[0][:, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert torch.equal(full.a, before), "the full state is not modified in place"
    all_rows = merge_rows(
        full,
        _State(torch.full((5, 1), 9.0), full.shared, full.pair),
        torch.tensor([False, True, False, True, True]),
        None,
    )
    assert all_rows.a.flatten().tolist() == [0.0, 9.0, 2.0, 9.0, 9.0]


def test_merge_x_keeps_rejected_rows():
    x = torch.arange(4.0).reshape(4, 1)
    out = merge_x(
        x.clone(), torch.full((2, 1), -1.0), torch.tensor([False, True]), torch.tensor([3, 1])
    )
    assert out.flatten().tolist() == [0.0, -1.0, 2.0, 3.0]
    out = merge_x(x, torch.full((4, 1), -1.0), torch.tensor([True, False, False, True]), None)
    assert out.flatten().tolist() == [-1.0, 1.0, 2.0, -1.0]


def test_every_attempt_starts_from_its_own_first_stage():
    """FSAL: the first stage handed to each attempt is the drift at the attempt's start — after a
    rejection too, and for rows stepped while others were rejected (the merged solver state)."""
    oracle = gaussian_oracle(seed=6, dim=8)
    y = observations(oracle, n=3, seed=7)
    y[0] = oracle.mean + 1e-3 * (y[0] - oracle.mean)
    solver = _Recorder(rtol=1e-7, atol=1e-9, dt0=0.3)  # too big: rejections first
    fr.solve(fr.InDIFlow(oracle), solver, y, t_end=0.05)
    rejected = 0
    for t, _, x, xn, err, k1, flow in solver.attempts:
        assert k1 is not None
        torch.testing.assert_close(k1, flow.drift(t, x), rtol=1e-13, atol=1e-13)
        rejected += int((_per_row_norms(x, xn, err, solver.controller) > 1).sum())
    assert rejected >= 2


def _per_row_norms(x, xn, err, ctrl):
    scale = ctrl.atol + ctrl.rtol * torch.maximum(x.abs(), xn.abs())
    return (err / scale).pow(2).mean(1).sqrt()


# ------------------------------------------------------------------ a controller from outside
@dataclass(kw_only=True)
class _HalvingSchedule(Schedule):
    times: list[float]


class _HalvingRun(ControllerRun):
    def __init__(self, times, x):
        self.ts = [torch.tensor(v, dtype=x.dtype) for v in times]
        self.i = 0

    def next(self):
        if self.i + 1 >= len(self.ts):
            return None
        return Proposal(None, self.ts[self.i], self.ts[self.i + 1] - self.ts[self.i])

    def report(self, prop, x, x_new, error):
        self.i += 1
        return Outcome(None, None, self.ts[self.i])

    def time(self):
        return self.ts[self.i]

    def progress(self):
        return float(self.i), float(len(self.ts) - 1)


@dataclass(frozen=True)
class _Halving(StepController):
    """Steps that halve the remaining distance to the end, ``n`` of them, then one to the end."""

    n: int = 6

    def schedule(self, request):
        t0, t1 = request.need_span()
        ts = [t0]
        for _ in range(self.n):
            ts.append(ts[-1] + (t1 - ts[-1]) / 2)
        ts.append(t1)
        return _HalvingSchedule(
            t0=t0,
            t1=t1,
            lands=False,
            t_stop=t1,
            save_times=None,
            start_slot=None,
            end_slot=None,
            times=ts,
        )

    def start(self, schedule, x, *, solver, evaluate):
        return _HalvingRun(schedule.times, x)


def test_a_controller_written_outside_the_package_drives_the_loop():
    flow, x0, exact = linear_system()
    sol = fr.solve(flow, fr.RK4(), x0, t_span=(0.0, 1.0), controller=_Halving(n=6))
    assert sol.stats.steps.tolist() == [7, 7, 7] and sol.stats.nfe.tolist() == [28] * 3
    grid = [0.0, 0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984375, 1.0]
    assert torch.equal(sol.x, fr.solve(flow, fr.RK4(), x0, grid=grid).x)
    assert float((sol.x - exact(1.0)).abs().max()) < 0.05
    with pytest.raises(fr.ConfigError, match="no default time span"):
        fr.solve(flow, fr.RK4(), x0, controller=_Halving())


def test_initial_step_is_hairers_rule_in_closed_form():
    """Hairer, Nørsett & Wanner I, §II.4: ``d0 = ‖x0‖``, ``d1 = ‖f0‖`` (scaled RMS norms);
    ``h0 = 10⁻⁶`` when either is below ``10⁻⁵`` (else ``0.01·d0/d1``); one probe at ``h0`` gives
    ``d2``; ``h1 = (0.01 / max(d1, d2))^(1/k)``; the step is ``min(100·h0, h1)``."""
    ctl = fr.PIController(rtol=1e-3, atol=1e-6)
    k = 5.0
    probed = []

    def probe_constant(h):  # f does not change: d2 = 0
        probed.append(h.clone())
        return f0

    for x0, f0, want_h0 in (
        (torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64), 1e-6),
        (torch.ones(2, 4, dtype=torch.float64), torch.full((2, 4), 1e-12, dtype=torch.float64),
         1e-6),
        (torch.ones(2, 4, dtype=torch.float64), torch.full((2, 4), 2.0, dtype=torch.float64),
         0.005),
    ):  # fmt: skip
        probed.clear()
        scale = 1e-6 + 1e-3 * x0.abs()
        d1 = float((f0 / scale).pow(2).mean().sqrt())
        h = ctl.initial_step(x0, f0, probe_constant, k, span=1.0)
        torch.testing.assert_close(probed[0], torch.full((2,), want_h0, dtype=torch.float64))
        h1 = (0.01 / d1) ** (1 / k)
        torch.testing.assert_close(h, torch.full((2,), min(100 * want_h0, h1), dtype=torch.float64))
