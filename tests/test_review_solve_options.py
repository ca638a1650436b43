"""Found by a review of ``fr.solve`` and the solvers: wrong options refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError, GridError

F64 = torch.float64


def _decay():
    return fr.ODEFlow(lambda t, x: -x)


@pytest.mark.parametrize("solver", [fr.Dopri5(rtol=1e-6, atol=1e-6), fr.Bosh3(rtol=1e-5)])
def test_save_at_against_the_span_is_refused_under_error_control(solver):
    # it stepped to 0.5, then chased 0.25 past the end: MaxStepsReachedError at t = 3e4
    x0 = torch.ones(2, 3, dtype=F64)
    with pytest.raises(GridError, match="save_at must run in the span's direction"):
        fr.solve(_decay(), solver, x0, t_span=(0.0, 1.0), save_at=[0.5, 0.25])
    sol = fr.solve(_decay(), solver, x0, t_span=(0.0, 1.0), save_at=[0.25, 0.5])
    assert sol.ts.tolist() == [0.25, 0.5]
    assert torch.allclose(sol.trajectory[:, 0, 0], torch.exp(-sol.ts.to(F64)), atol=1e-4)


def test_save_at_in_any_order_on_a_fixed_grid():
    x0 = torch.ones(2, 3, dtype=F64)
    sol = fr.solve(_decay(), fr.RK4(), x0, t_span=(0.0, 1.0), steps=4, save_at=[0.5, 0.25])
    assert sol.ts.tolist() == [0.5, 0.25]
    assert torch.allclose(sol.trajectory[:, 0, 0], torch.exp(-sol.ts.to(F64)), atol=1e-3)


@pytest.mark.parametrize("option", ["ab_order", "landing_order"])
def test_ipndm_orders_must_be_integers(option):
    # IPNDM(ab_order=2.0) was accepted and failed mid-solve: TypeError slice indices
    with pytest.raises(ConfigError, match=f"{option} must be .*got 2.0"):
        fr.IPNDM(**{option: 2.0})
    assert fr.IPNDM(**{option: torch.tensor(2).numpy()[()]}).ab_order in (2, 3)


@pytest.mark.parametrize(
    ("compile", "match"),
    [
        ({"bogus": 1}, "keys torch.compile does not take: 'bogus'"),
        ({"mode": "fast"}, "'fast'"),
        ({"mode": "default", "options": {}}, "both mode and options"),
    ],
)
def test_compile_dict_is_checked_before_any_evaluation(compile, match):
    # compile={"bogus": 1} passed prepare and raised torch.compile's untyped TypeError at the
    # call; {"mode": "fast"} a RuntimeError from inside torch
    calls = []

    def drift(t, x):
        calls.append(1)
        return -x

    x0 = torch.ones(2, 3)
    with pytest.raises(ConfigError, match=match):
        fr.solve(fr.ODEFlow(drift), fr.Euler(), x0, t_span=(0.0, 1.0), steps=3, compile=compile)
    assert not calls


@pytest.mark.parametrize("solver", [fr.NaiveSampler(), fr.ColdDiffusionSampler()])
def test_naive_and_cold_diffusion_declare_no_convergence_order(solver):
    # both declared order 1, but neither approaches the residual ODE's solution as the steps
    # shrink (errors at t = 0 on a Gaussian oracle: naive 0.34 -> 0.72, cold 0.42 -> 0.39 from
    # 16 to 128 steps; InDISampler, order 1, falls 8x)
    g = torch.Generator().manual_seed(0)
    oracle = fr.oracles.GaussianOracle(
        mean=torch.randn(16, generator=g, dtype=F64),
        std=0.5 + torch.rand(16, generator=g, dtype=F64),
        noise_std=0.8,
    )
    _, y = oracle.sample(4, generator=torch.Generator().manual_seed(1))
    exact = oracle.ode_solution(y, torch.tensor(0.0, dtype=F64))

    def error(s, n):
        x = fr.solve(fr.InDIFlow(oracle.posterior_mean), s, y, steps=n).x
        return float((x - exact).abs().max())

    ratio = error(solver, 16) / error(solver, 128)
    assert ratio < 2 and solver.order == 0  # a convergent order-1 method would gain 8x
    assert error(fr.InDISampler(), 16) / error(fr.InDISampler(), 128) > 6


def test_a_prepared_solve_called_on_a_non_tensor_says_so():
    # PreparedSolve read x_start.shape before checking it was a tensor: AttributeError
    plan = fr.integrate.prepare(_decay(), fr.Euler(), torch.ones(2, 3), t_span=(0, 1), steps=3)
    with pytest.raises(fr.ArgumentTypeError, match="x_start must be a tensor of the planned shape"):
        plan([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    with pytest.raises(ConfigError, match="planned shape"):
        plan(torch.ones(2, 4))


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: fr.Dopri5(rtol=1e-3, bogus=1), r"Dopri5\(\)"),
        (lambda: fr.Bosh3(dt_max=0.1), r"Bosh3\(\)"),
        (lambda: fr.Torchdiffeq("dopri5", bogus=1), r"Torchdiffeq\('dopri5'\)"),
    ],
)
def test_an_unknown_tolerance_keyword_names_the_solver(build, name):
    # a plain TypeError "PIController.__init__() got an unexpected keyword argument"
    with pytest.raises(fr.ArgumentTypeError, match=f"{name} got unexpected keyword arguments"):
        build()


@pytest.mark.parametrize(
    ("method", "options"),
    [("euler", {"dt": 0.1}), ("srk", {"grad_free": True}), ("milstein", {"bogus": 1})],
)
def test_torchsde_options_it_would_ignore_are_refused(method, options):
    # Torchsde("euler", options={"dt": 0.1}) was accepted, and the option did nothing
    key = next(iter(options))
    with pytest.raises(ConfigError, match=f"options\\['{key}'\\] is not an option"):
        fr.Torchsde(method, options=options)
    with pytest.raises(ConfigError, match="options must be a dict or None"):
        fr.Torchsde(method, options=3)
    assert fr.Torchsde("milstein", options={"grad_free": True}).options == {"grad_free": True}


def test_t_end_takes_a_0d_tensor_as_t_span_does():
    # t_span=(torch.tensor(1.0), torch.tensor(0.2)) ran, t_end=torch.tensor(0.2) was refused
    flow = fr.InDIFlow(lambda x, t: 0.5 * x)
    y = torch.ones(2, 3)
    sol = fr.solve(flow, fr.Heun(), y, steps=3, t_end=torch.tensor(0.2))
    want = fr.solve(flow, fr.Heun(), y, steps=3, t_span=(torch.tensor(1.0), torch.tensor(0.2)))
    assert torch.equal(sol.x, want.x) and sol.t_final.tolist() == want.t_final.tolist()
    for bad in (torch.tensor(True), torch.tensor([0.2]), True):
        with pytest.raises(ConfigError, match="t_end must be a number"):
            fr.solve(flow, fr.Heun(), y, steps=3, t_end=bad)


@pytest.mark.parametrize("rho", [np.int64(2), np.float32(2.0), np.float64(2.0), torch.tensor(2.0)])
def test_spacing_exponents_take_numpy_and_0d_tensor_numbers(rho):
    # Power(rho=np.int64(2)) was refused with "rho must be a finite number >= 1, got 2"
    for spacing in (fr.Power(rho=rho), fr.StartRefined(rho=rho)):
        assert type(spacing.rho) is float and spacing.rho == 2.0
    grid = fr.integrate.make_grid(3, 1.0, 0.0, fr.Power(rho=rho))
    assert torch.equal(grid, fr.integrate.make_grid(3, 1.0, 0.0, fr.Power(rho=2)))
    assert repr(fr.Power(rho=2)) == "Power(rho=2)"
    with pytest.raises(ConfigError, match="rho must be a finite number >= 1"):
        fr.Power(rho=np.float64(0.5))


def test_shifted_takes_numpy_numbers():
    # Shifted(np.int64(3)) was refused with "shift must be a number, got 3"
    s = fr.Shifted(np.int64(3), rho=np.float32(2), end_shift=np.float64(3) ** 0.5)
    assert s == fr.Shifted(3.0, rho=2.0, end_shift=3**0.5)
    assert all(type(v) is float for v in (s.shift, s.rho, s.end_shift))


def test_save_at_ends_in_any_order_under_error_control():
    x0 = torch.ones(2, 3, dtype=F64)
    solver = fr.Dopri5(rtol=1e-6, atol=1e-6)
    sol = fr.solve(_decay(), solver, x0, t_span=(0.0, 1.0), save_at=[1.0, 0.5, 0.0])
    assert sol.ts.tolist() == [1.0, 0.5, 0.0]
    assert torch.allclose(sol.trajectory[:, 0, 0], torch.exp(-sol.ts.to(F64)), atol=1e-5)


@pytest.mark.parametrize("solver", [fr.SemiLinearMultistep(), fr.Heun()])
def test_grid_times_that_collide_in_float32_are_refused_before_any_evaluation(solver):
    # Power(rho=7) at 200 steps ending at 0.3: distinct in float64, 18 pairs equal in float32;
    # SemiLinearMultistep divided by the zero-length step: NonFiniteError mid-solve
    calls = []

    def predictor(x, t):
        calls.append(1)
        return 0.5 * x

    y = torch.ones(2, 3)
    flow = fr.InDIFlow(predictor)
    kw = {"steps": 200, "t_span": (1.0, 0.3), "spacing": fr.Power(rho=7)}
    with pytest.raises(GridError, match="collide in torch.float32"):
        fr.solve(flow, solver, y, **kw)
    assert not calls
    kw["steps"] = 5  # its times stay apart in float32
    assert fr.solve(flow, solver, y, **kw).status == "success"


def test_semilinear_orders_and_powers_are_integers_and_unipc_names_its_power():
    """SemiLinearMultistep(order=3.0) was kept as a float (its repr read 3.0) and UniPC(power=1)
    was refused with a message about bh, an argument the user never passed."""
    import numpy as np

    for kw in ({"order": 3.0}, {"power": 1.0}, {"order": True}):
        with pytest.raises(ConfigError, match=f"{next(iter(kw))} must be"):
            fr.SemiLinearMultistep(**kw)
    s = fr.SemiLinearMultistep(order=np.int64(2), power=np.int64(1))
    assert type(s.order) is int and type(s.power) is int and "order=2" in repr(s)
    with pytest.raises(ConfigError, match="UniPC interpolates in the log-SNR: power must be 0"):
        fr.UniPC(power=1)
