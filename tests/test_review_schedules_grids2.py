"""Second review of schedules, noise sources and time grids (user and numerical review)."""

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError, ConfigError, GridError, ShapeError
from flowrestore.grids import Karras, NoiseLevels, Uniform, make_grid
from flowrestore.noise import BrownianIncrements, PerSampleNoise
from flowrestore.schedules import (
    FunctionSchedule,
    Geometric,
    Linear,
    PiecewiseLinear,
    check_on_unit_interval,
)

F64 = torch.float64


# --- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("start, end", [(0.01, 80.0), (0.002, 80.0), (80.0, 0.002), (0.7, 0.1)])
def test_schedules_hit_their_endpoints_exactly(dtype, start, end):
    # Geometric(0.01, 80)(0) was 0.010000000000000004 and (1) 79.99999999999997 in float64
    # (exp of a log); Linear(0.7, 0.1)(1) was 0.09999999999999998 (s + (e − s) is not e)
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    want = torch.tensor([start, end], dtype=dtype)
    assert torch.equal(Geometric(start, end)(t), want)
    assert torch.equal(Linear(start, end)(t), want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_geometric_in_half_precision_is_correctly_rounded(dtype):
    # computed in bfloat16 (a log to ~8 bits, then exp) σ_t was up to 3.9 % off in bfloat16 (ten
    # units in the last place; float16 0.4 %): the value at a half-precision t must be within
    # half a unit of the exact σ at that t
    sigma = Geometric(0.002, 80.0)
    t = torch.linspace(0, 1, 257, dtype=torch.float64).to(dtype)
    exact = 0.002 ** (1 - t.double()) * 80.0 ** t.double()
    got = sigma(t)
    assert got.dtype == dtype
    half_ulp = torch.finfo(dtype).eps / 2
    assert float(((got.double() - exact) / exact).abs().max()) <= half_ulp * 1.0001
    # its slope is v(t) log(end/start) to the same accuracy
    slope = sigma.derivative(t).double()
    assert float((slope / (exact * math.log(80 / 0.002)) - 1).abs().max()) <= half_ulp * 1.0001


def test_geometric_beyond_the_dtypes_range_stays_finite_below_it():
    # σ_max above the dtype's range (float16's 65504; 1e39 in float32) made σ(0) NaN (0 · log ∞)
    # and every interior value ∞
    s16 = Geometric(1e-3, 1e5)(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float16))
    assert float(s16[0]) == pytest.approx(1e-3, rel=1e-3)
    assert float(s16[1]) == pytest.approx(10.0, rel=1e-3)
    assert math.isinf(float(s16[2]))
    s32 = Geometric(0.01, 1e39)(torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(s32, torch.tensor([0.01, math.sqrt(0.01 * 1e39)]))


def test_geometric_keeps_gradients_to_tensor_parameters():
    start = torch.tensor(0.01, dtype=F64, requires_grad=True)
    end = torch.tensor(80.0, dtype=F64, requires_grad=True)
    t = torch.tensor([0.25, 0.5], dtype=F64)
    v = Geometric(start, end)(t)
    v.sum().backward()
    # ∂v/∂start = (1 − t) v / start, ∂v/∂end = t v / end
    torch.testing.assert_close(start.grad, ((1 - t) * v / start).sum().detach())
    torch.testing.assert_close(end.grad, (t * v / end).sum().detach())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_piecewise_linear_passes_through_every_knot_exactly(dtype):
    # v0 + (t − t0)(v1 − v0)/(t1 − t0) missed the last knot value (at t = 1) by round-off for
    # about a third of random knot tables; interpolation must return the knot values themselves
    g = torch.Generator().manual_seed(0)
    zero, one = torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64)
    for _ in range(200):
        knots = torch.cat([zero, torch.sort(torch.rand(3, generator=g, dtype=F64))[0], one])
        values = 10 * torch.rand(5, generator=g, dtype=F64)
        got = PiecewiseLinear(knots, values)(knots.to(dtype))
        assert torch.equal(got, values.to(dtype)), (knots, values, got)


def test_the_plan_time_probe_of_a_huge_sigma_max_names_it():
    # the non-decreasing check squared max σ with a float power: σ_max = 1e200 raised a bare
    # OverflowError where the schedule was adopted (a flow's constructor)
    with pytest.raises(ConfigError, match="sigma's dσ²/dt .* must be finite"):
        check_on_unit_interval(
            Geometric(0.01, 1e200), name="sigma", positive=True, nondecreasing=True
        )
    check_on_unit_interval(Geometric(0.01, 1e100), name="sigma", positive=True, nondecreasing=True)


def test_function_schedule_is_never_evaluated_outside_the_unit_interval():
    seen = []

    def fn(u):
        seen.append(u.clone())
        return torch.sqrt(1 - u) + torch.sqrt(u)

    FunctionSchedule(fn, fd_step=1e-3).derivative(torch.tensor([0.0, 0.5, 1.0]))
    allt = torch.cat(seen)
    assert bool((allt >= 0).all()) and bool((allt <= 1).all())


# --- noise --------------------------------------------------------------------------------------


def test_brownian_areas_walked_backwards_are_the_integral_of_the_path():
    # a solve from 1 to 0 on an increasing fine grid walks the path backwards; its ΔZ was
    # A_b − A_a − W_a·span instead of ∫ (W − W_a) (mean 0 but the wrong covariance, growing
    # with |W_a|). On a piecewise-linear path (ΔZ_k = h_k ΔW_k / 2) ΔZ is the trapezoid integral.
    fine = torch.linspace(0, 1, 9, dtype=F64)
    h = fine.diff().reshape(-1, 1)
    dw = torch.randn(8, 1, dtype=F64, generator=torch.Generator().manual_seed(0)) * h.sqrt()
    path = BrownianIncrements(fine, dw, h * dw / 2)
    w = torch.cat([torch.zeros(1, 1, dtype=F64), dw.cumsum(0)])[:, 0]
    for a, b in [(2, 6), (6, 2), (8, 0), (5, 4)]:
        lo, hi = min(a, b), max(a, b)
        want_z = torch.trapezoid(w[lo : hi + 1] - w[a], fine[lo : hi + 1])
        got_w, got_z = path.increment_and_area(fine[a], fine[b], torch.zeros(1, dtype=F64))
        torch.testing.assert_close(got_w, (w[b] - w[a]).reshape(1))
        torch.testing.assert_close(got_z, want_z.reshape(1))


def test_sra1_on_a_shared_path_agrees_forwards_and_backwards():
    # dx = dW (additive, zero drift): x(T) − x(0) is ΔW over the span whichever way the grid
    # runs; with drift −x the SRA1 step uses ΔZ, which must be the path's (a decreasing solve on
    # an increasing fine grid got areas of the wrong sign)
    flow = fr.SDEFlow(lambda t, x: -x, lambda t, x: torch.ones_like(x), noise_type="additive")
    fine = torch.linspace(0, 1, 65, dtype=F64)
    rev = fine.flip(0)
    g = torch.Generator().manual_seed(3)
    path_up = BrownianIncrements.sample(fine, (64, 1), generator=g)
    # the same path described on the decreasing fine grid
    path_down = BrownianIncrements(
        rev,
        -path_up.cumulative.diff(dim=0).flip(0),
        # ΔZ of a step walked backwards: h ΔW' + Z_k (see the noise module)
        (fine.diff().reshape(-1, 1, 1) * -path_up.cumulative.diff(dim=0) + _fine_areas(path_up))
        .flip(0)
        .contiguous(),
    )
    x0 = torch.zeros(64, 1, dtype=F64)
    a = fr.solve(flow, fr.SRA1(), x0, grid=rev[::8], noise=path_up).x
    b = fr.solve(flow, fr.SRA1(), x0, grid=rev[::8], noise=path_down).x
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _fine_areas(path):
    """The fine ΔZ_k of a path, recovered from its cumulative sums."""
    hk = path.fine_grid.diff().abs().reshape(-1, 1, 1)
    return path.area_cumulative.diff(dim=0) - path.cumulative[:-1] * hk


def test_brownian_path_refuses_samples_at_different_times():
    # per-sample [B] times (what error control hands a step) were read as sample 0's time for
    # every sample: the others got the increment of another span
    path = BrownianIncrements.sample(torch.linspace(0, 1, 5, dtype=F64), (2, 1))
    like = torch.zeros(2, 1, dtype=F64)
    with pytest.raises(GridError, match="samples are at different times"):
        path.increment(torch.tensor([0.25, 0.5], dtype=F64), torch.tensor([0.5, 0.75]), like)
    with pytest.raises(GridError, match="samples are at different times"):
        path.increment_and_area(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.25]), like)
    same = path.increment(torch.tensor([0.25, 0.25]), torch.tensor([0.75, 0.75]), like)
    torch.testing.assert_close(same, path.increment(torch.tensor(0.25), torch.tensor(0.75), like))


@pytest.mark.parametrize(
    "grid", [torch.tensor([0.0, 0.5, 0.2, 1.0]), torch.tensor([0.0, 0.5, 0.5, 1.0])]
)
def test_brownian_path_refuses_a_fine_grid_that_is_not_a_path_in_time(grid):
    with pytest.raises(GridError, match="fine_grid must be strictly monotone"):
        BrownianIncrements(grid, torch.zeros(3, 2, 1))


def test_brownian_path_refuses_increments_that_are_not_a_float_tensor():
    with pytest.raises(ArgumentTypeError, match="increments must be a floating-point tensor"):
        BrownianIncrements(torch.linspace(0, 1, 3), [[0.1], [0.2]])


def test_per_sample_noise_of_another_batch_size_is_refused_before_any_work():
    # 2 seeds for 3 samples was accepted by check_state (the base's: any state) and failed at the
    # first draw, inside the steps: after the network had run where a step denoises first
    # (DiffPIR with zeta > 0, InDI's Brownian sampler)
    with pytest.raises(ShapeError, match="has 2 seeds, one per sample"):
        PerSampleNoise([1, 2]).check_state(torch.zeros(3, 4))
    PerSampleNoise([1, 2, 3]).check_state(torch.zeros(3, 4))
    calls = []

    def drift(t, x):
        calls.append(1)
        return -x

    flow = fr.SDEFlow(drift, lambda t, x: torch.ones_like(x), noise_type="additive")
    with pytest.raises(ShapeError, match="has 2 seeds, one per sample"):
        fr.solve(
            flow,
            fr.EulerMaruyama(),
            torch.zeros(3, 4),
            grid=torch.linspace(1, 0, 5),
            noise=PerSampleNoise([1, 2]),
        )
    assert calls == []


@pytest.mark.parametrize("solver", [fr.EulerMaruyama, fr.SRA1])
def test_a_samples_noise_does_not_depend_on_its_batch(solver):
    flow = fr.SDEFlow(lambda t, x: -x, lambda t, x: torch.ones_like(x), noise_type="additive")
    grid = torch.linspace(1, 0, 5)
    a = fr.solve(flow, solver(), torch.zeros(3, 4), grid=grid, seeds=[5, 6, 7]).x
    b = fr.solve(flow, solver(), torch.zeros(1, 4), grid=grid, seeds=[6]).x
    assert torch.equal(a[1:2], b)
    assert not torch.equal(a[0], a[1])


# --- grids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("t_min", [np.float32(0.002), torch.tensor(0.002)])
def test_karras_takes_a_numpy_or_tensor_t_min(t_min):
    # np.float32(σ_min/σ_max) was refused: "t_min must be a number in [0, 1), got 0.002"
    grid = make_grid(5, 1.0, 0.0, Karras(7.0, t_min))
    assert float(grid[-2]) == pytest.approx(0.002, rel=1e-6)
    assert float(grid[-1]) == 0.0


def test_karras_refuses_negative_times_by_name():
    # t^(1/ρ) of a negative time is complex: the error said "must hold real times"
    with pytest.raises(GridError, match=r"Karras spacing lays real times only for t = σ/σ_max"):
        make_grid(3, -1.0, 0.0, Karras())


@pytest.mark.parametrize("spacing", [NoiseLevels((0.1, 1.0)), Uniform(), Karras()])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_make_grid_refuses_a_non_finite_span_by_name(spacing, bad):
    # NoiseLevels raised a bare ValueError ("cannot convert float NaN to integer")
    with pytest.raises(ConfigError, match="t0 must be a finite time"):
        make_grid(3, bad, 0.0, spacing)
    with pytest.raises(ConfigError, match="t1 must be a finite time"):
        make_grid(3, 1.0, bad, spacing)
