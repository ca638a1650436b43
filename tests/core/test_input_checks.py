"""Inputs that used to run silently wrong or fail inside the library are refused first, typed.

* a spacing's grid is checked like a user's ``grid=`` (points, finiteness, monotony, ends);
* spacing exponents must be finite numbers ≥ 1, ``EndRefined``'s resolution an int ≥ 2,
  ``Fitted`` times real and strictly decreasing (NaN included);
* a bfloat16/float16 state whose grid times collide once rounded is refused with ``GridError``
  before any evaluation (README, "Precision");
* ``save_at`` must be finite times;
* ``FittedGrids`` records: malformed keys, grids and spans raise ``ConfigError`` naming them;
* ``fit_grids`` checks every try (keywords, teacher, budgets) before its reference solve.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.integrate import fit_grids

F64 = torch.float64


class _Counted:
    """A Gaussian posterior mean that counts its evaluations."""

    def __init__(self, dim=8):
        self.oracle = fr.oracles.GaussianOracle(
            mean=torch.zeros(dim, dtype=F64), std=torch.ones(dim, dtype=F64), noise_std=0.8
        )
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return self.oracle.posterior_mean(x, t)


@pytest.fixture
def problem():
    f = _Counted()
    _, y = f.oracle.sample(3, generator=torch.Generator().manual_seed(0))
    return f, fr.InDIFlow(f), y


class _TwoPoints(fr.Spacing):
    def __call__(self, steps, t0, t1):
        return torch.tensor([t0, t1], dtype=F64)


class _Unordered(fr.Spacing):
    def __call__(self, steps, t0, t1):
        return torch.tensor([t0, 0.2, 0.6, t1], dtype=F64)


class _Repeated(fr.Spacing):
    """Two points that coincide (a table's points collapsing onto its top did this)."""

    def __call__(self, steps, t0, t1):
        return torch.tensor([t0, 0.7, 0.7, 0.65, t1], dtype=F64)


@pytest.mark.parametrize(
    "spacing, kw, match",
    [
        (_TwoPoints(), {"steps": 3}, "has 2 points, not steps \\+ 1 = 4"),
        (_Unordered(), {"steps": 3}, "strictly monotone"),
        (_Repeated(), {"steps": 4, "t_end": 0.6}, "_Repeated.*strictly monotone"),
    ],
)
def test_a_spacings_grid_is_checked_before_any_evaluation(problem, spacing, kw, match):
    f, flow, y = problem
    with pytest.raises(fr.GridError, match=match):
        fr.solve(flow, fr.Euler(), y, spacing=spacing, **kw)
    assert f.calls == 0


def test_a_grid_with_complex_times_is_refused():
    flow = fr.ODEFlow(lambda t, x: -x)
    with pytest.raises(fr.GridError, match="real times"):
        fr.solve(flow, fr.Euler(), torch.ones(2, 3, dtype=F64), steps=4, spacing=fr.Karras(),
                 t_span=(-1.0, 1.0))  # fmt: skip


@pytest.mark.parametrize("bad", [math.inf, math.nan, 0.5, "2", True])
@pytest.mark.parametrize(
    "make",
    [
        lambda r: fr.Power(rho=r),
        lambda r: fr.StartRefined(rho=r),
        lambda r: fr.Karras(rho=r),
        lambda r: fr.NoiseLevels((0.1, 0.5, 1.0), rho=r),
        lambda r: fr.EndRefined(base=fr.Uniform(), rho=r),
    ],
    ids=["Power", "StartRefined", "Karras", "NoiseLevels", "EndRefined"],
)
def test_spacing_exponents_must_be_finite_numbers_of_at_least_one(make, bad):
    with pytest.raises(fr.ConfigError, match="rho must be a finite number >= 1"):
        make(bad)


@pytest.mark.parametrize("resolution", [0, 1, -1, 1.5, True])
def test_end_refined_resolution_must_be_an_int_of_at_least_two(resolution):
    with pytest.raises(fr.ConfigError, match="resolution"):
        fr.EndRefined(base=fr.Uniform(), resolution=resolution)


@pytest.mark.parametrize(
    "times", [(1.0, math.nan, 0.0), (1.0, "a", 0.0), (1.0, 0.5, 0.5, 0.0), (1.0, 0.2, 0.6, 0.0)]
)
def test_fitted_times_must_be_real_and_strictly_decreasing(times):
    with pytest.raises(fr.ConfigError, match="times must"):
        fr.Fitted(times)


@pytest.mark.parametrize(
    "dtype, kw, match",
    [
        (torch.bfloat16, {"grid": torch.tensor([1.0, 0.5, 0.4999, 0.0], dtype=F64)}, "0.4999"),
        (torch.bfloat16, {"steps": 600}, "collide in torch.bfloat16"),
        (torch.float16, {"steps": 20, "spacing": fr.Karras()}, "collide in torch.float16"),
    ],
)
def test_times_colliding_in_a_low_precision_state_are_refused_first(problem, dtype, kw, match):
    f, flow, y = problem
    with pytest.raises(fr.GridError, match=match):
        fr.solve(flow, fr.Euler(), y.to(dtype), **kw)
    assert f.calls == 0
    sol = fr.solve(flow, fr.Euler(), y.to(dtype), steps=20)  # distinct in bfloat16: runs
    assert sol.x.dtype == dtype and int(sol.stats.nfe.max()) == 20


@pytest.mark.parametrize("save_at", [math.nan, [math.nan], [0.5, math.inf]])
def test_save_at_must_be_finite(problem, save_at):
    f, flow, y = problem
    with pytest.raises(fr.GridError, match="save_at"):
        fr.solve(flow, fr.Euler(), y, steps=4, save_at=save_at)
    assert f.calls == 0


GRID = [1.0, 0.5, 0.0]


@pytest.mark.parametrize(
    "record, match",
    [
        ({"times": {"two": GRID}}, "times\\['two'\\]"),
        ({"times": {"2.0": GRID}}, "times\\['2.0'\\]"),
        ({"times": {2.7: GRID}}, "times\\[2.7\\]"),
        ({"times": {True: [1.0, 0.0]}}, "times\\[True\\]"),
        ({"times": {"1": None}}, "times\\['1'\\]"),
        ({"times": GRID}, "times must map step counts"),
        ({"times": None}, "times must map step counts"),
        ({"times": {2: GRID, "2": GRID}}, "2 steps twice"),
        ({"times": {"2": GRID}, "t_span": None}, "t_span"),
        ({"times": {"2": GRID}, "t_span": "10"}, "t_span"),
        ({"times": {"2": [1.0, math.nan, 0.0]}}, "times must decrease"),
    ],
)
def test_a_malformed_fitted_grids_record_is_refused_by_name(record, match):
    with pytest.raises(fr.ConfigError, match=match):
        fr.FittedGrids.from_dict({"solver": "IPNDM()", **record})


def test_a_well_formed_record_reads_back():
    g = fr.FittedGrids.from_dict({"solver": "IPNDM()", "times": {"2": GRID}, "t_span": [1, 0]})
    assert g.steps() == (2,) and g.t_span == (1.0, 0.0)
    assert fr.FittedGrids.from_dict(g.to_dict()) == g
    # a record without t_span (written before it was recorded) spans the default 1 -> 0
    old = fr.FittedGrids.from_dict({"solver": "IPNDM()", "times": {"2": GRID}})
    assert old.t_span == (1.0, 0.0) and old == g


@pytest.mark.parametrize(
    "kw, solver, match",
    [
        ({}, fr.InDISampler(eps=0.1), "stochastic"),
        ({}, fr.Dopri5(rtol=1e-3), "error control"),
        ({"tries": {"a": {}, "b": {"refin": 4}}}, fr.Euler(), "refin"),
        ({"tries": {"d": {"steps": 3}}}, fr.Euler(), "steps"),
        ({"tries": {"d": {"teacher": "rk4"}}}, fr.Euler(), "teacher must be"),
        ({"tries": {"d": {"teacher": fr.InDISampler(eps=0.1)}}}, fr.Euler(), "teacher must be"),
        ({"tries": {"d": {"refine": -1}}}, fr.Euler(), "refine"),
        ({"reference": [1, 2]}, fr.Euler(), "reference must be a tensor"),
        ({"error": 0.5}, fr.Euler(), "error must be a callable"),
    ],
)
def test_fit_grids_refuses_a_wrong_request_before_its_reference_solve(problem, kw, solver, match):
    f, flow, y = problem
    with pytest.raises(fr.FlowRestoreError, match=match):
        fit_grids(flow, solver, y, (2,), x_check=y, **kw)
    assert f.calls == 0


def test_fit_grids_refuses_an_error_that_is_not_per_sample(problem):
    _, flow, y = problem
    with pytest.raises(fr.ConfigError, match="one value per sample"):
        fit_grids(flow, fr.Euler(), y, (2,), x_check=y, error=lambda a, b: (a - b).norm())


@pytest.mark.parametrize(
    "solver", [fr.ExplicitRK(), fr.EmbeddedRK(), fr.Solver(), fr.RestorationSampler()], ids=repr
)
def test_an_abstract_solver_base_is_refused_before_any_evaluation(problem, solver):
    f, flow, y = problem
    with pytest.raises(fr.ArgumentTypeError, match="abstract base class"):
        fr.solve(flow, solver, y, steps=2)
    assert f.calls == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda flow, y: fr.solve(flow, fr.Heun, y, steps=2),  # the class, not an instance
        lambda flow, y: fr.solve("flow", fr.Heun(), y, steps=2),
        lambda flow, y: fr.solve(flow, fr.Heun(), y.long(), steps=2),
        lambda flow, y: fr.InDIFlow("not callable"),
        lambda flow, y: fr.ODEFlow(3),
    ],
    ids=["solver-class", "flow-str", "integer-state", "predictor", "drift"],
)
def test_a_wrong_kind_of_argument_is_a_typed_error(problem, call):
    """Every error is a ``FlowRestoreError`` (``errors.py``); wrong kinds are ``TypeError``s too."""
    _, flow, y = problem
    with pytest.raises(fr.ArgumentTypeError) as info:
        call(flow, y)
    assert isinstance(info.value, fr.FlowRestoreError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "timesteps, kw, match",
    [
        ([math.nan], {}, "finite and lie in \\[0, 999\\]"),
        ([1500, 0], {}, "finite and lie in \\[0, 999\\]"),
        ([-5], {}, "finite and lie in \\[0, 999\\]"),
        (["a"], {}, "timesteps must be numbers"),
        ([999, 500], {"final_alpha_cumprod": "x"}, "final_alpha_cumprod"),
    ],
)
def test_diffusion_timesteps_outside_the_models_are_refused(timesteps, kw, match):
    from tests.fewnfe.helpers import diffusion_problem

    _, flow, _, _ = diffusion_problem(dim=4, batch=1)
    with pytest.raises(fr.ConfigError, match=match):
        flow.grid_from_timesteps(timesteps, **kw)
    grid = flow.grid_from_timesteps([999, 500, 0])
    assert grid.numel() == 4 and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0


_BAD_SPANS = [
    ((1.0, 0.5, 0.0), fr.ConfigError, r"t_span must be a pair.*\(1.0, 0.5, 0.0\)"),
    ((1.0,), fr.ConfigError, r"t_span must be a pair.*\(1.0,\)"),
    (1.0, fr.ConfigError, "t_span must be a pair.*got 1.0"),
    ("10", fr.ConfigError, "t_span must be a pair.*got '10'"),
    ((True, False), fr.ConfigError, "t_span must be a pair"),
    ((1.0, "0"), fr.ConfigError, "t_span must be a pair"),
    ((math.nan, 0.0), fr.GridError, r"t_span must be finite, got \(nan, 0.0\)"),
    ((1.0, -math.inf), fr.GridError, r"t_span must be finite, got \(1.0, -inf\)"),
    ((0.5, 0.5), fr.GridError, "t_span must be strictly monotone.*0.5"),
]


def test_a_t_span_that_is_not_two_times_is_refused_by_name(problem):
    """``t_span`` is a pair of finite, different numbers: three times used to integrate to the
    second silently, one time or a number failed inside the library, a string ran as its
    characters; non-finite or equal ends stay refused. A pair in a tensor is a pair."""
    f, flow, y = problem
    for t_span, error, match in _BAD_SPANS:
        with pytest.raises(error, match=match):
            fr.solve(flow, fr.Euler(), y, steps=3, t_span=t_span)
    assert f.calls == 0
    pair = fr.solve(flow, fr.Euler(), y, steps=3, t_span=torch.tensor([1.0, 0.0]))
    assert torch.equal(pair.x, fr.solve(flow, fr.Euler(), y, steps=3).x)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"callback": 5}, fr.ArgumentTypeError, "callback must be None or a callable.*got 5"),
        ({"differentiable": "yes"}, fr.ConfigError, "differentiable must be True or False.*'yes'"),
        ({"progress": "yes"}, fr.ConfigError, "progress must be True or False.*'yes'"),
        ({"check_finite": 1}, fr.ConfigError, "check_finite must be True or False.*1"),
        ({"seeds": [2**70, 0, 1]}, fr.ConfigError, r"seeds must fit in 64 bits.*seeds\[0\]="),
        ({"seeds": [0, -(2**63) - 1, 1]}, fr.ConfigError, r"seeds must fit.*seeds\[1\]="),
    ],
)
def test_a_wrong_solve_option_is_refused_before_any_evaluation(problem, kw, error, match):
    """Options that used to fail after an evaluation or inside torch (a callback that is not
    callable, a non-bool switch, a seed ``torch.Generator.manual_seed`` overflows on) are typed
    errors naming the argument, raised before the flow is evaluated."""
    f, flow, y = problem
    solver = fr.InDISampler(eps=0.1)  # stochastic: the seeds seed generators
    with pytest.raises(error, match=match):
        fr.solve(flow, solver, y, steps=3, **kw)
    assert f.calls == 0
    fr.solve(flow, solver, y, steps=3, seeds=[2**64 - 1, -(2**63), 0])  # the range's ends


def test_solver_tolerances_and_a_controller_are_refused_together(problem):
    """``Dopri5(rtol=...)`` builds its own controller: with ``controller=`` too one of the two
    tolerances would be dropped silently (as with ``steps=``, a ``ConfigError``)."""
    f, flow, y = problem
    with pytest.raises(fr.ConfigError, match=r"configures its own error control.*controller="):
        fr.solve(flow, fr.Dopri5(rtol=1e-2, atol=1e-2), y, controller=fr.PIController(rtol=1e-6))
    assert f.calls == 0
    ctrl = fr.PIController(rtol=1e-6, atol=1e-6)
    own = fr.solve(flow, fr.Dopri5(rtol=1e-6, atol=1e-6), y)
    assert torch.equal(fr.solve(flow, fr.Dopri5(), y, controller=ctrl).x, own.x)


def test_per_sample_noise_refuses_seeds_beyond_64_bits_when_built():
    """``noise=PerSampleNoise(...)`` built by hand is checked as ``seeds=`` is: when built."""
    from flowrestore.noise import PerSampleNoise

    with pytest.raises(fr.ConfigError, match=r"seeds must fit in 64 bits.*seeds\[1\]="):
        PerSampleNoise([0, 2**70])
    assert PerSampleNoise([-(2**63), 2**64 - 1]).seeds == [-(2**63), 2**64 - 1]


def test_a_flow_evaluated_at_a_real_number_time_equals_the_tensor_time():
    """``flow.drift(0.5, x)`` — what a user probing a flow types — raised AttributeError ('float'
    has no attribute 'dim') on every flow; a real number is now a 0-d time in x's dtype, and a
    bool or a string is refused by name."""
    import numpy as np

    from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

    abar = linear_alphas_cumprod()
    oracle = GaussianDiffusionOracle(
        mean=torch.zeros(4, dtype=torch.float64),
        std=torch.linspace(0.5, 1.0, 4, dtype=torch.float64),
        alphas_cumprod=abar,
        prediction_type="epsilon",
    )
    diffusion = fr.DiffusionFlow(oracle, alphas_cumprod=abar)
    flows = (
        diffusion,
        diffusion.reverse_sde(),
        fr.InDIFlow(lambda x, t: 0.5 * x),
        fr.FlowMatchingFlow(lambda x, t: x - t[:, None]),
        fr.ODEFlow(lambda t, x: -x * t[:, None]),
    )
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for flow in flows:
        want = flow.drift(torch.tensor(0.25, dtype=torch.float64), x)
        for t in (0.25, np.float32(0.25), np.float64(0.25)):
            torch.testing.assert_close(flow.drift(t, x), want, rtol=0, atol=0)
    with pytest.raises(fr.ArgumentTypeError, match="t must be a tensor or a real number"):
        diffusion.drift(True, x)
    with pytest.raises(fr.ArgumentTypeError, match="t must be a tensor or a real number"):
        diffusion.drift("0.5", x)
