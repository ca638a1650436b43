"""Review of ``fr.solve``'s loop, grids and tableaus as a demanding user (second pass). Each test
named after a bug failed before its fix; the few others guard what those fixes must keep."""

from __future__ import annotations

import math

import pytest
import torch
from syncs import SyncCounter

import flowrestore as fr
from flowrestore.errors import ConfigError, GridError
from flowrestore.integrate.refine import refine_grid

F64 = torch.float64


def _decay(rate: float = 0.7) -> fr.ODEFlow:
    return fr.ODEFlow(lambda t, x: -rate * x)


# ---------------------------------------------------------------- Butcher tableaus


@pytest.mark.parametrize(
    "kwargs, match",
    [
        # a first stage not at the step's start: rk_step evaluated it at t anyway (a "midpoint
        # Euler" c=(0.5,) stepped exactly as Euler)
        ({"c": (0.5,), "a": (), "b": (1.0,), "order": 1}, "c must start with 0.0"),
        # NaN passed every sum check and stepped NaN
        ({"c": (0.0,), "a": (), "b": (math.nan,), "order": 1}, "b must be a sequence of finite"),
        (
            {"c": (0.0, math.nan), "a": ((math.nan,),), "b": (0.5, 0.5), "order": 2},
            "c must be a sequence of finite",
        ),
        ({"c": (0.0, 1.0), "a": ((1.0,),), "b": (0.5, 0.5), "order": 0}, "order must be an int"),
        ({"c": (0.0, 1.0), "a": ((1.0,),), "b": (0.5, 0.5), "order": "2"}, "order must be an int"),
    ],
)
def test_a_tableau_that_cannot_be_an_explicit_method_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fr.ButcherTableau(**kwargs)


def test_an_embedded_pair_needs_both_error_weights_and_error_order():
    # error_order without b_error crashed mid-solve (AttributeError on the missing estimate)
    with pytest.raises(ConfigError, match="b_error and error_order come together"):
        fr.ButcherTableau(c=(0.0, 1.0), a=((1.0,),), b=(0.5, 0.5), order=2, error_order=1)


def test_error_weights_must_sum_to_zero():
    """``b_error = b − b̂`` of two consistent weight sets sums to 0; one that does not gives an
    error estimate ``O(h)`` whatever the method (it took 403 steps for ``exp(-t)`` on [0, 1])."""
    with pytest.raises(ConfigError, match="must sum to 0"):
        fr.ButcherTableau(
            c=(0.0, 1.0), a=((1.0,),), b=(0.5, 0.5), order=2, b_error=(0.6, -0.4), error_order=1
        )
    heun_euler = fr.ButcherTableau(
        c=(0.0, 1.0), a=((1.0,),), b=(0.5, 0.5), order=2, b_error=(-0.5, 0.5), error_order=1
    )
    assert heun_euler.b_error == (-0.5, 0.5)


def test_tableau_coefficients_given_as_lists_are_stored_as_tuples():
    tab = fr.ButcherTableau(c=[0, 0.5], a=[[0.5]], b=[0, 1], order=2)
    assert tab == fr.solvers.tableau.MIDPOINT
    hash(tab)  # frozen and hashable (lists made it unhashable)


def test_a_tableau_of_tensor_coefficients_steps_without_a_host_read_per_step():
    """Coefficients given as 0-d tensors (``torch.tensor(0.5)``) were kept as tensors, and the
    stepper's ``coef == 0.0`` test read each one on the host at every step (a GPU stall per
    stage); they are stored as Python floats, and the method steps as the float one."""
    half, one = torch.tensor(0.5, dtype=F64), torch.tensor(1.0, dtype=F64)

    class TensorHeun(fr.ExplicitRK):
        tableau = fr.ButcherTableau(
            c=(torch.tensor(0.0), one), a=((one,),), b=(half, half), order=2
        )

    x0 = torch.ones(2, 3, dtype=F64)
    counts = []
    for steps in (2, 4):
        with SyncCounter() as sc:
            sol = fr.solve(_decay(), TensorHeun(), x0, steps=steps, t_span=(0.0, 1.0))
        counts.append(sc.count)
        want = fr.solve(_decay(), fr.Heun(), x0, steps=steps, t_span=(0.0, 1.0))
        torch.testing.assert_close(sol.x, want.x, rtol=1e-15, atol=0)
    assert counts[0] == counts[1], counts


def test_refining_a_one_step_grid_returns_it():
    # a grid with no interior point crashed Nelder-Mead (ValueError on a zero-size array)
    flow = fr.InDIFlow(lambda x, t: 0.5 * x)
    y = torch.ones(2, 3, dtype=F64)
    grid = torch.tensor([1.0, 0.0], dtype=F64)
    ref = fr.solve(flow, fr.Euler(), y, steps=8).x
    assert torch.equal(refine_grid(flow, fr.Euler(), y, ref, grid, budget=10), grid)


# ---------------------------------------------------------------- solve's arguments


@pytest.mark.parametrize("t_end", [2.0, -1.0])
def test_t_end_outside_t_span_is_refused_before_any_evaluation(t_end):
    # t_span=(0, 1), t_end=2 integrated to 2; t_end=-1 integrated backwards to -1, silently
    calls = []

    def f(t, x):
        calls.append(t)
        return -x

    with pytest.raises(ConfigError, match="t_end is an early end of t_span"):
        fr.solve(
            fr.ODEFlow(f), fr.Euler(), torch.ones(2, 1), steps=4, t_span=(0.0, 1.0), t_end=t_end
        )
    assert calls == []


def test_t_end_inside_t_span_ends_early():
    x0 = torch.ones(2, 1, dtype=F64)
    sol = fr.solve(_decay(), fr.RK4(), x0, steps=20, t_span=(0.0, 1.0), t_end=0.5)
    assert sol.t_final.tolist() == [0.5, 0.5]
    torch.testing.assert_close(sol.x, x0 * math.exp(-0.7 * 0.5), rtol=1e-8, atol=0)


def test_t_end_past_a_part_way_restoration_span_is_refused():
    # t_span=(1, 0.5), t_end=0.2 ran to 0.2
    flow = fr.InDIFlow(lambda x, t: 0.5 * x)
    with pytest.raises(ConfigError, match="t_end"):
        fr.solve(flow, fr.Euler(), torch.ones(2, 3), steps=4, t_span=(1.0, 0.5), t_end=0.2)


@pytest.mark.parametrize(
    "save_at",
    [True, [[0.5, 0.25]], torch.tensor([[1.0], [0.5]]), torch.tensor([0.5 + 1j])],
    ids=["bool", "nested-list", "2d-tensor", "complex"],
)
def test_save_at_that_is_not_a_1d_sequence_of_real_times_is_refused(save_at):
    """``save_at=True`` saved ``t = 1``; a ``[B, S]`` table (per-sample times, which solve does
    not take) was flattened into ``B·S`` times shared by every sample; a complex time lost its
    imaginary part with a warning."""
    with pytest.raises(GridError, match="save_at must be 'steps' or a 1-D sequence of real"):
        fr.solve(
            _decay(), fr.Euler(), torch.ones(2, 1), steps=4, t_span=(0.0, 1.0), save_at=save_at
        )


def test_save_at_python_floats_keep_float64_resolution():
    sol = fr.solve(
        _decay(),
        fr.Euler(),
        torch.ones(2, 1, dtype=F64),
        steps=10,
        t_span=(0.0, 1.0),
        save_at=[0.1, 0.7],
    )
    assert sol.ts.tolist() == [0.1, 0.7]


# ---------------------------------------------------------------- non-finite tracking


@pytest.mark.parametrize("kind", ["fixed", "error-control"])
def test_a_large_finite_float32_state_is_not_reported_non_finite(kind):
    """``dx/dt = 10 x`` from ones: every entry ends near ``1e34``-``1e37``, finite in float32, but
    4·10⁴ of them sum past float32's maximum (3.4e38). The loop tracked finiteness through that
    row sum and raised ``NonFiniteError`` on a finite state."""
    flow = fr.ODEFlow(lambda t, x: 10 * x)
    x0 = torch.ones(2, 40_000)
    if kind == "fixed":  # Euler's exact answer on its grid: (1 + 10 h)^N, h = 9/800
        sol = fr.solve(flow, fr.Euler(), x0, steps=800, t_span=(0, 9))
        exact = (1 + 10 * 9 / 800) ** 800
    else:
        sol = fr.solve(flow, fr.Dopri5(), x0, t_span=(0, 8))
        exact = math.exp(80)
    assert sol.stats.status.tolist() == [0, 0]
    assert bool(torch.isfinite(sol.x).all())
    rel = float((sol.x.double() / exact - 1).abs().max())
    assert rel < 1e-2, rel


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_non_finite_entry_is_still_found_in_every_dtype(bad, dtype):
    calls = {"n": 0}

    def f(t, x):
        calls["n"] += 1
        out = -x
        if calls["n"] == 2:  # the second step's drift: one entry of sample 1
            out = out.clone()
            out[1, 3] = bad
        return out

    x0 = torch.ones(3, 5, dtype=dtype)
    sol = fr.solve(fr.ODEFlow(f), fr.Euler(), x0, steps=4, t_span=(0, 1), on_failure="return")
    assert sol.stats.status.tolist() == [0, 3, 0]
    assert sol.t_final[1].item() == 0.25  # the start of the step that went bad


# ---------------------------------------------------------------- grids


def test_make_grid_takes_a_numpy_step_count_as_solve_does():
    # fr.solve(steps=np.int64(3)) ran; fr.integrate.make_grid(np.int64(3), ...) was refused with
    # "steps must be a positive int, got 3"
    np = pytest.importorskip("numpy")
    grid = fr.integrate.make_grid(np.int64(3), 1.0, 0.0, fr.Power(2))
    want = torch.tensor([1.0, 4 / 9, 1 / 9, 0.0], dtype=F64)
    torch.testing.assert_close(grid, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("t0, t1", [("a", 0.0), (1.0, None)])
def test_make_grid_refuses_ends_that_are_not_numbers_by_name(t0, t1):
    # float("a") raised a bare ValueError
    with pytest.raises(ConfigError, match="t0 must be a real number|t1 must be a real number"):
        fr.integrate.make_grid(3, t0, t1)


def test_spacing_integer_fields_take_numpy_integers():
    # StartRefined(min_pair_steps=np.int64(4)) was refused with "must be an int >= 3, got 4"
    np = pytest.importorskip("numpy")
    a = fr.StartRefined(min_pair_steps=np.int64(4))
    b = fr.EndRefined(fr.Uniform(), resolution=np.int32(64))
    c = fr.EulerMatchedEnd(fr.Uniform(), stages=np.int64(2))
    assert (a.min_pair_steps, b.resolution, c.stages) == (4, 64, 2)
    assert all(type(v) is int for v in (a.min_pair_steps, b.resolution, c.stages))
    assert torch.equal(a(6, 1.0, 0.0), fr.StartRefined(min_pair_steps=4)(6, 1.0, 0.0))
    with pytest.raises(ConfigError, match="stages must be an int >= 1, got 1.0"):
        fr.EulerMatchedEnd(fr.Uniform(), stages=1.0)


def test_fitted_grids_take_numpy_step_counts():
    # FittedGrids(times={np.int64(2): [...]}) was refused: "times[2] must be a grid for a whole
    # number of steps"
    np = pytest.importorskip("numpy")
    grids = fr.FittedGrids(solver="Euler()", times={np.int64(2): [1.0, 0.4, 0.0]})
    assert grids.steps() == (2,) and type(grids.steps()[0]) is int
    flow = fr.InDIFlow(lambda x, t: 0.5 * x, grids=grids)
    sol = fr.solve(flow, fr.Euler(), torch.ones(1, 2, dtype=F64), steps=2, save_at="steps")
    assert sol.ts.tolist() == [1.0, 0.4, 0.0]
