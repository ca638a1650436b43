"""CUDA subset: results match CPU float64, and fixed-step loops do not synchronise per step.

Skipped without a CUDA device. The fixed-step loop is designed to synchronise a constant number
of times (grid validation before the loop, the non-finite flag after it), never per step: the test
counts synchronisation warnings of ``torch.cuda.set_sync_debug_mode("warn")`` and checks the count
does not grow from 5 to 50 steps. (The oracles validate their ``t`` on the host, so the sync test
uses a plain tensor predictor.)
"""

import warnings

import pytest
import torch

import flowrestore as fr

from .helpers import gaussian_oracle, max_err, observations

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def problem():
    oracle = gaussian_oracle(seed=31, dim=64)
    return oracle, observations(oracle, n=8)


@pytest.mark.parametrize(
    "solver",
    [
        fr.Euler(),
        fr.Heun(),
        fr.RK4(),
        fr.Dopri5(rtol=1e-7, atol=1e-9),
        fr.InDISampler(),
        fr.Torchdiffeq("rk4"),
        fr.Torchdiffeq("dopri5", rtol=1e-7, atol=1e-9),
    ],
    ids=["Euler", "Heun", "RK4", "Dopri5", "InDI", "Torchdiffeq-rk4", "Torchdiffeq-dopri5"],
)
def test_cuda_matches_cpu_float64(problem, solver):
    oracle, y = problem
    kw = {} if solver.adaptive else {"steps": 10}
    cpu = fr.solve(fr.InDIFlow(oracle), solver, y, **kw)
    gpu = fr.solve(fr.InDIFlow(oracle), solver, y.cuda(), **kw)
    assert gpu.x.device.type == "cuda"
    if solver.adaptive:  # an accept/reject decision at the margin may flip with FMA rounding
        assert max_err(gpu.x.cpu(), cpu.x) <= 1e-8
    else:
        assert max_err(gpu.x.cpu(), cpu.x) <= 1e-12
        assert torch.equal(gpu.stats.nfe, cpu.stats.nfe)


def test_cuda_float32_close_to_float64(problem):
    oracle, y = problem
    ref = oracle.ode_solution(y, 0.0)
    sol = fr.solve(fr.InDIFlow(oracle), fr.Dopri5(rtol=1e-5, atol=1e-7), y.float().cuda())
    assert sol.x.dtype == torch.float32
    assert max_err(sol.x.double().cpu(), ref) < 1e-3


def _count_syncs(steps, solver, check_finite=True):
    w = torch.randn(64, dtype=torch.float32, device="cuda") * 0.1
    pred = lambda x, t: x * (1 - t[:, None]) * 0.9 + w  # noqa: E731  (device-only work)
    y = torch.randn(16, 64, device="cuda")
    for _ in range(2):  # warm-up: lazy initialisation (pinned memory, kernels) may sync once
        fr.solve(fr.InDIFlow(pred), solver, y, steps=steps, check_finite=check_finite)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fr.solve(fr.InDIFlow(pred), solver, y, steps=steps, check_finite=check_finite)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(c.message).lower() for c in caught)


@pytest.mark.parametrize(
    "solver",
    [fr.Euler(), fr.Heun(), fr.InDISampler(eps=0.1, brownian=True)],
    ids=["Euler", "Heun", "InDI-eps"],
)
def test_fixed_step_loop_does_not_sync_per_step(solver):
    few, many = _count_syncs(5, solver), _count_syncs(50, solver)
    # a per-step sync adds 45 at 50 steps; one-off initialisation syncs can only lower ``many``
    assert many <= few, f"{few} syncs for 5 steps but {many} for 50: the loop synchronises per step"
    assert few <= 4


def _device_predictor():
    w = torch.randn(64, dtype=torch.float32, device="cuda") * 0.1
    return lambda x, t: x * (1 - t[:, None]) * 0.9 + w  # device-only work


@pytest.mark.parametrize(
    "make",
    [
        fr.Euler,
        fr.Heun,
        fr.RK4,
        fr.SemiLinearMultistep,
        lambda: fr.InDISampler(eps=0.1, brownian=True),
    ],
    ids=["Euler", "Heun", "RK4", "Multistep", "InDI-eps"],
)
def test_fixed_grid_solve_never_synchronises(make):
    """Issue 17: with check_finite=False a whole fixed-grid solve — planning, steps, landing,
    solution — runs under torch.cuda.set_sync_debug_mode("error")."""
    pred = _device_predictor()
    y = torch.randn(8, 64, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    kw = {"steps": 8, "check_finite": False, "generator": gen}
    fr.solve(fr.InDIFlow(pred), make(), y, **kw)  # warm-up (lazy CUDA init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sol = fr.solve(fr.InDIFlow(pred), make(), y, **kw)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(sol.x).all()


def test_compiled_solve_replays_without_synchronising():
    pred = _device_predictor()
    y = torch.randn(8, 64, device="cuda")
    eager = fr.solve(fr.InDIFlow(pred), fr.Heun(), y, steps=8, check_finite=False)
    for _ in range(3):  # compile, record the CUDA graph, replay
        fr.solve(fr.InDIFlow(pred), fr.Heun(), y, steps=8, check_finite=False, compile=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sol = fr.solve(fr.InDIFlow(pred), fr.Heun(), y, steps=8, check_finite=False, compile=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(sol.x, eager.x, rtol=1e-5, atol=1e-5)


def test_error_control_synchronises_once_per_step():
    pred = _device_predictor()
    y = torch.randn(16, 64, device="cuda")
    fr.solve(fr.InDIFlow(pred), fr.Dopri5(rtol=1e-5), y, t_end=0.05)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            sol = fr.solve(fr.InDIFlow(pred), fr.Dopri5(rtol=1e-5), y, t_end=0.05)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(c.message).lower() for c in caught)
    attempts = int((sol.stats.steps + sol.stats.rejected).max())
    assert syncs <= attempts + 8, (syncs, attempts)  # one per step, a few at the start and end
