"""Empirical convergence orders (docs/math.md §6), float64, least-squares slope over ≥ 5 levels.

* The stepper order is measured on spans that stop before the singular endpoint: the InDI flow on
  a Gaussian oracle with a diagonal degradation from t = 1 to t = 0.05 (closed form
  ``GaussianOracle.ode_solution``), and two ODEFlows with exact solutions.
* At t = 0 the loop lands Heun/RK4/Bosh3/Dopri5 by the denoising step
  ``x_0 = F(x_{t_{N−1}}, t_{N−1})``, whose error is ``O(t_{N−1}²)``: on an explicitly uniform grid
  every such method is order 2 at t = 0, and ``spacing=Power(rho=order/2)`` restores the declared
  order. **With plain ``steps=N``** (the default grid) every solver has its declared order at 0.

Midpoint is *superconvergent* (order 3) on the InDI Gaussian flow: per coordinate the drift is
``λ(t)(x − m(t))`` with ``λ = t/(t² + a)``-type rates, for which the midpoint rule's principal
local-error coefficient ``λ³/6 + λ''/24 + λλ'/4`` vanishes identically. Its order 2 is checked on
the ODEFlows, where it is not special.
"""

import warnings

import pytest

import flowrestore as fr

from .helpers import (
    RK_FIXED,
    cos_decay,
    fit_order,
    gaussian_oracle,
    linear_system,
    max_err,
    observations,
    roundoff_floor,
)

TOL = 0.2
# levels per solver: in the asymptotic regime and above round-off
LEVELS = {
    "Euler": [8, 16, 32, 64, 128],
    "Midpoint": [8, 16, 32, 64, 128],
    "Heun": [8, 16, 32, 64, 128],
    "RK4": [8, 16, 32, 64, 128],
    "Bosh3": [8, 16, 32, 64, 128],
    "Dopri5": [12, 16, 24, 32, 48, 64],
}
SUPERCONVERGENT_ON_ORACLE = {"Midpoint": 3}


@pytest.fixture(scope="module")
def problem():
    oracle = gaussian_oracle(seed=0, dim=64, std=(0.3, 1.0), h=(0.2, 0.5))
    y = observations(oracle, n=4, seed=0)
    return oracle, y


def _orders_on_oracle(problem, name, t_end=0.05, spacing=None, levels=None):
    oracle, y = problem
    make, _ = RK_FIXED[name]
    exact = oracle.ode_solution(y, t_end)
    levels = levels or LEVELS[name]
    errs = [
        max_err(
            fr.solve(
                fr.InDIFlow(oracle),
                make(),
                y,
                steps=n,
                t_end=t_end if t_end else None,
                spacing=spacing,
            ).x,
            exact,
        )
        for n in levels
    ]
    return fit_order([1 / n for n in levels], errs, roundoff_floor(exact))


@pytest.mark.parametrize("name", list(RK_FIXED))
def test_order_on_indi_oracle_before_zero(problem, name):
    slope, _ = _orders_on_oracle(problem, name)
    declared = RK_FIXED[name][1]
    expected = SUPERCONVERGENT_ON_ORACLE.get(name, declared)
    assert abs(slope - expected) <= TOL, f"{name}: fitted order {slope:.3f}, expected {expected}"
    assert slope >= declared - TOL


# (T, levels) per system and solver: spans and step counts in each method's asymptotic regime
# (a method's error constant can cross zero at particular T, e.g. Midpoint on -x cos t near T=6)
ODE_LEVELS = {
    "linear": {
        "default": (2.0, [16, 32, 64, 128, 256]),
        "Dopri5": (2.0, [24, 32, 48, 64, 96, 128]),
    },
    "cos": {"default": (2.0, [16, 32, 64, 128, 256]), "Dopri5": (4.0, [16, 24, 32, 48, 64, 96])},
}


@pytest.mark.parametrize("name", list(RK_FIXED))
@pytest.mark.parametrize("system", ["linear", "cos"])
def test_order_on_odeflow(name, system):
    make, declared = RK_FIXED[name]
    flow, x0, exact = linear_system() if system == "linear" else cos_decay()
    T, levels = ODE_LEVELS[system].get(name, ODE_LEVELS[system]["default"])
    ref = exact(T)
    errs = [max_err(fr.solve(flow, make(), x0, steps=n, t_span=(0.0, T)).x, ref) for n in levels]
    slope, _ = fit_order([T / n for n in levels], errs, roundoff_floor(ref))
    assert abs(slope - declared) <= TOL, f"{name} on {system}: fitted order {slope:.3f}"


@pytest.mark.parametrize("name", ["Heun", "RK4", "Bosh3", "Dopri5"])
def test_order_at_zero_uniform_grid_is_two(problem, name):
    """Documented: with a uniform grid the final denoising step caps the order at 2 at t = 0."""
    slope, _ = _orders_on_oracle(
        problem, name, t_end=0.0, spacing=fr.Uniform(), levels=[8, 16, 32, 64, 128]
    )
    assert abs(slope - 2) <= TOL, f"{name}: order at t=0 on a uniform grid {slope:.3f}"


@pytest.mark.parametrize("name", list(RK_FIXED))
def test_default_grid_keeps_declared_order_at_zero(problem, name):
    """Plain ``steps=N``: every solver converges at its declared order at t = 0 (Midpoint: ≥ 2,
    it is superconvergent on this oracle)."""
    declared = RK_FIXED[name][1]
    slope, _ = _orders_on_oracle(problem, name, t_end=0.0, levels=[8, 16, 32, 64, 128])
    if name == "Midpoint":
        assert slope >= declared - TOL, f"{name}: order at t=0 with steps=N {slope:.3f}"
    else:
        assert abs(slope - declared) <= TOL, f"{name}: order at t=0 with steps=N {slope:.3f}"


@pytest.mark.parametrize("name", list(RK_FIXED))
def test_order_at_zero_power_grid_keeps_order(problem, name):
    declared = RK_FIXED[name][1]
    expected = SUPERCONVERGENT_ON_ORACLE.get(name, declared)
    spacing = fr.Power(rho=max(1.0, expected / 2))
    slope, _ = _orders_on_oracle(
        problem, name, t_end=0.0, spacing=spacing, levels=[8, 16, 32, 64, 128]
    )
    assert abs(slope - expected) <= TOL, f"{name}: order at t=0 with {spacing} {slope:.3f}"


def test_euler_and_midpoint_keep_their_order_at_zero_on_uniform_grid(problem):
    """Their stages never reach a step's end, so their own last step onto 0 is taken."""
    for name, expected in (("Euler", 1), ("Midpoint", 3)):
        slope, _ = _orders_on_oracle(problem, name, t_end=0.0, levels=[8, 16, 32, 64, 128])
        assert abs(slope - expected) <= TOL


def test_order_fit_can_fail(problem):
    """A solver that is secretly Euler is caught by the RK4 order check."""

    class FakeRK4(fr.Euler):
        order = 4.0

    oracle, y = problem
    exact = oracle.ode_solution(y, 0.05)
    levels = [8, 16, 32, 64, 128]
    errs = [
        max_err(fr.solve(fr.InDIFlow(oracle), FakeRK4(), y, steps=n, t_end=0.05).x, exact)
        for n in levels
    ]
    slope, _ = fit_order([1 / n for n in levels], errs, roundoff_floor(exact))
    assert abs(slope - FakeRK4.order) > TOL


#: torchdiffeq's fixed-grid methods through fr.Torchdiffeq: the order each is declared with is
#: what it converges at (the implicit Adams correctors converge faster: at least it)
TORCHDIFFEQ_EXPLICIT = ("euler", "midpoint", "rk4", "heun2", "heun3", "explicit_adams")


@pytest.mark.parametrize(
    ("method", "options"),
    [
        *[(m, None) for m in TORCHDIFFEQ_EXPLICIT],
        ("explicit_adams", {"max_order": 4}),  # Adams–Bashforth 4 after its start: order 3
        ("explicit_adams", {"max_order": 3}),  # below 4 torchdiffeq runs RK4
        ("implicit_adams", None),
        ("fixed_adams", None),
    ],
)
@pytest.mark.parametrize("system", ["linear", "cos"])
def test_torchdiffeq_fixed_grid_methods_converge_at_their_declared_order(method, options, system):
    flow, x0, exact = linear_system() if system == "linear" else cos_decay()
    T, levels = ODE_LEVELS[system]["default"]
    ref = exact(T)
    declared = fr.Torchdiffeq(method, options=options).order
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # torchdiffeq's notes (rk4 fallback, iteration)
        errs = [
            max_err(
                fr.solve(
                    flow, fr.Torchdiffeq(method, options=options), x0, steps=n, t_span=(0.0, T)
                ).x,
                ref,
            )
            for n in levels
        ]
    slope, _ = fit_order([T / n for n in levels], errs, roundoff_floor(ref))
    assert slope >= declared - TOL, f"{method}: fitted order {slope:.3f} < declared {declared}"
    if method in TORCHDIFFEQ_EXPLICIT:
        assert abs(slope - declared) <= TOL, f"{method}: fitted order {slope:.3f}"
