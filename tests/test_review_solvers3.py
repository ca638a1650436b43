"""Third review of the deterministic solvers: options that are tensors or numpy numbers, reprs that
are constructor calls, and measured orders that no earlier test measured.

* ``==`` of the dataclass solvers with a tensor ``start_estimate`` (IPNDM, DataIPNDM,
  SemiLinearMultistep, UniPC, FittedMultistep) compared the fields as tuples and raised
  "Boolean value of Tensor ... is ambiguous"; it now compares tensors by value.
* ``eval(repr(solver))`` builds the same solver (UniPC's non-default ``bh`` /
  ``lower_order_final``, DataIPNDM's ``form``, Torchdiffeq's ``options`` were dropped).
* An embedded pair's error estimate is ``O(h^{q+1})`` for its declared ``error_order`` ``q``
  (measured on a smooth ODE); SemiLinearMultistep's ``power=1`` and log variable (``power=0``,
  exact and UniPC's ``B(h)``) converge at their declared orders on InDI's Gaussian oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.flows import ODEFlow
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod
from flowrestore.solvers.semilinear import SemiLinearMultistep
from flowrestore.solvers.tableau import BOSH3, DOPRI5, rk_step

F64 = torch.float64

FITTED = {"weights": ((1.0,), (1.5, -0.5)), "times": (1.0, 0.5, 0.0)}
ESTIMATE_SOLVERS = {
    "IPNDM": lambda m: fr.IPNDM(start_estimate=m),
    "DataIPNDM": lambda m: fr.DataIPNDM(start_estimate=m),
    "SemiLinearMultistep": lambda m: fr.SemiLinearMultistep(start_estimate=m),
    "UniPC": lambda m: fr.UniPC(start_estimate=m),
    "FittedMultistep": lambda m: fr.FittedMultistep(**FITTED, start_estimate=m),
}


@pytest.mark.parametrize("name", list(ESTIMATE_SOLVERS))
def test_solvers_with_a_tensor_start_estimate_compare_by_value(name):
    make = ESTIMATE_SOLVERS[name]
    m = torch.tensor([0.1, -0.2, 0.3])
    assert make(m) == make(m.clone())  # raised: Boolean value of Tensor ... is ambiguous
    assert make(m) != make(m + 1)
    assert make(m) != make(m.double())  # another dtype: another option
    assert make(m) != make(None) and make(None) == make(None)
    assert make(torch.tensor(0.5)) != make(0.5)  # a tensor is not the number
    assert make(0.5) == make(0.5)
    with pytest.raises(TypeError, match="unhashable"):
        hash(make(m))  # a mutable dataclass, as before


def test_equality_still_tells_the_options_and_classes_apart():
    m = torch.zeros(2)
    assert fr.IPNDM(start_estimate=m, ab_order=2) != fr.IPNDM(start_estimate=m)
    # same fields, another class: DataIPNDM is not IPNDM(form="data", ab_order=2)
    assert fr.DataIPNDM() != fr.IPNDM(form="data", ab_order=2)
    assert fr.UniPC() != fr.SemiLinearMultistep(power=0, bh="bh2", lower_order_final=True)
    assert fr.UniPC(nodes=3) != fr.UniPC() and fr.UniPC(nodes=3) == fr.UniPC(nodes=3)


NAMESPACE = {
    "IPNDM": fr.IPNDM,
    "DataIPNDM": fr.DataIPNDM,
    "SemiLinearMultistep": fr.SemiLinearMultistep,
    "UniPC": fr.UniPC,
    "FittedMultistep": fr.FittedMultistep,
}


@pytest.mark.parametrize(
    "solver",
    [
        fr.UniPC(lower_order_final=False),  # printed as UniPC(...) without it: True again
        fr.UniPC(bh=None),  # printed without bh: "bh2" again
        fr.UniPC(bh="bh1", nodes=3),
        fr.SemiLinearMultistep(power=0, bh="bh2", lower_order_final=True),
        fr.DataIPNDM(form="velocity"),  # printed without form: the data form again
        fr.DataIPNDM(ab_order=3, start_estimate=0.25),
        fr.IPNDM(ab_order=2, landing_guard=True, start_corrector=False),
        fr.FittedMultistep(**FITTED, start_estimate=-0.5),
    ],
    ids=repr,
)
def test_repr_is_the_constructor_call(solver):
    assert eval(repr(solver), NAMESPACE) == solver  # noqa: S307 - our own repr


def test_torchdiffeq_repr_keeps_its_options():
    """``options=`` was left out: the printed ``Torchdiffeq('explicit_adams')`` builds
    Adams–Bashforth 4 (``max_order=5``), not the Adams–Bashforth 3 that was built."""
    pytest.importorskip("torchdiffeq")
    solver = fr.Torchdiffeq("explicit_adams", options={"max_order": np.int64(4)})
    again = eval(repr(solver), {"Torchdiffeq": fr.Torchdiffeq})  # noqa: S307
    assert again.options == solver.options == {"max_order": 4} and again.order == 3.0
    assert repr(fr.Torchdiffeq("rk4")) == "Torchdiffeq('rk4')"
    pair = fr.Torchdiffeq("dopri5", rtol=1e-4)
    assert eval(repr(pair), {"Torchdiffeq": fr.Torchdiffeq}).controller_options == {"rtol": 1e-4}  # noqa: S307


def _diffusion():
    abar = linear_alphas_cumprod()
    c = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    std = torch.tensor([0.4, 0.7, 0.2], dtype=F64)
    oracle = GaussianDiffusionOracle(mean=c, std=std, alphas_cumprod=abar)
    return oracle, fr.DiffusionFlow(oracle, alphas_cumprod=abar)


@pytest.mark.parametrize("name", list(ESTIMATE_SOLVERS))
def test_start_estimate_takes_a_numpy_number(name):
    """A numpy scalar (a mean read from an array) is a number, as everywhere else in the
    package; ``np.float32`` was refused as "must be None, a finite number or ..."."""
    oracle, flow = _diffusion()
    x = oracle.sample_latent(2, torch.Generator().manual_seed(0))
    make = ESTIMATE_SOLVERS[name]
    steps = 2 if name == "FittedMultistep" else 4
    got = fr.solve(flow, make(np.float32(0.25)), x, steps=steps)
    want = fr.solve(flow, make(0.25), x, steps=steps)
    torch.testing.assert_close(got.x, want.x, rtol=0, atol=0)
    assert int(got.stats.nfe.max()) == steps - 1
    for bad in (np.float64("nan"), np.bool_(True), "0.5"):
        with pytest.raises(fr.ConfigError, match="start_estimate"):
            make(bad)


def test_semilinear_node_counts_take_numpy_integers():
    """``nodes`` / ``final_nodes`` from a config array (``np.int64``) were refused while
    ``order`` took them; kept as Python ints (they slice the history)."""
    solver = SemiLinearMultistep(order=np.int64(3), nodes=np.int64(3), final_nodes=np.int64(4))
    assert (solver.nodes, solver.final_nodes) == (3, 4)
    assert type(solver.nodes) is int and type(solver.final_nodes) is int
    assert solver == SemiLinearMultistep(order=3, nodes=3, final_nodes=4)
    for bad in (True, 3.0, np.float64(3.0), 6):
        with pytest.raises(fr.ConfigError, match="nodes"):
            SemiLinearMultistep(nodes=bad)
    with pytest.raises(fr.ConfigError, match="final_nodes"):
        SemiLinearMultistep(final_nodes=np.int64(7))


def _slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.mark.parametrize("tableau", [BOSH3, DOPRI5], ids=["Bosh3", "Dopri5"])
def test_embedded_error_estimate_has_the_declared_local_order(tableau):
    """The local error of the embedded solution ``b̂`` is ``O(h^{q+1})``, ``q = error_order``,
    and it dominates ``h Σ (b − b̂) k``: measured from one step of ``x' = −(1 + t) x``, whose
    solution is ``x(s) = x(t) exp(−(s − t)(1 + (s + t)/2))``. (The tableau tests check the order
    conditions algebraically; this checks what :func:`rk_step` returns: its scale in ``h`` and
    its sign, against the true local error of the embedded solution ``x_next − err``.)"""
    flow = ODEFlow(lambda t, x: -(1 + t) * x)
    x0, t = torch.ones(1, 1, dtype=F64), 0.3
    hs = [0.1, 0.05, 0.025, 0.0125]
    ests, trues = [], []
    for h in hs:
        x_next, err, _, _ = rk_step(
            tableau, flow, torch.tensor(t, dtype=F64), x0, torch.tensor(h, dtype=F64)
        )
        exact = math.exp(-h * (1 + t + h / 2))
        ests.append(float(err.abs()))
        trues.append(abs(float(x_next - err) - exact))
    q = tableau.error_order
    assert abs(_slope(hs, ests) - (q + 1)) < 0.3, ests
    assert abs(_slope(hs, trues) - (q + 1)) < 0.3, trues
    # the estimate is the embedded solution's error to leading order (ratio -> 1)
    assert math.isclose(ests[-1], trues[-1], rel_tol=0.1), (ests, trues)


def _indi_gaussian():
    g = torch.Generator().manual_seed(0)
    std = 0.5 + torch.rand(32, generator=g, dtype=F64)
    orc = fr.oracles.GaussianOracle(std=std, noise_std=0.8)
    _, y = orc.sample(8, generator=g)
    return orc, y


@pytest.mark.parametrize(
    "options, t_end, order",
    [
        ({"power": 1}, None, 3),  # onto t = 0 by the extrapolation of the history
        ({"power": 1, "order": 2}, None, 2),
        ({"power": 0}, 0.05, 3),  # the log variable: its landing is first order, stop short
        ({"power": 0, "order": 2}, 0.05, 2),
        ({"power": 0, "bh": "bh1"}, 0.05, 3),
        ({"power": 0, "bh": "bh2"}, 0.05, 3),
        ({"power": 0, "nodes": 3}, 0.05, 3),
    ],
)
def test_semilinear_variables_converge_at_the_declared_order(options, t_end, order):
    """Not measured before: only the default ``power`` (2 on InDI) was, and UniPC's
    ``B(h)`` only on a diffusion model."""
    orc, y = _indi_gaussian()
    ref = orc.ode_solution(y, t_end or 0.0)
    flow = fr.InDIFlow(orc.posterior_mean)
    solver = SemiLinearMultistep(**options)
    levels = [16, 32, 64, 128]
    errs = []
    for n in levels:
        x = fr.solve(flow, solver, y, steps=n, t_end=t_end, spacing=fr.Power(2.0)).x
        errs.append(float((x - ref).norm() / ref.norm()))
    assert all(e > 1e-12 for e in errs), errs  # above round-off
    assert abs(-_slope(levels, errs) - order) <= 0.35, (options, errs)
    assert solver.order == order


@pytest.mark.parametrize(
    "options, names",
    [
        ({"c": (0.0, 0.5), "a": ((0.4,),), "b": (0.5, 0.5)}, ["a[0]=(0.4,)", "sum 0.4"]),
        ({"c": (0.0, 0.5), "a": ((0.5,),), "b": (1.0,)}, ["b must have 2", "got 1"]),
        (
            {
                "c": (0.0, 0.5),
                "a": ((0.5,),),
                "b": (0.0, 1.0),
                "b_error": (1.0, -1.0, 0.0),
                "error_order": 1,
            },
            ["b_error must have 2", "got 3"],
        ),
    ],
)
def test_tableau_errors_name_the_argument_and_its_value(options, names):
    """A row of ``a`` off its ``c`` and a weight vector of the wrong length were refused
    without the value that was wrong ("b and b_error must have 2 entries": which one?)."""
    with pytest.raises(fr.ConfigError) as err:
        fr.ButcherTableau(**options, order=1)
    for name in names:
        assert name in str(err.value), str(err.value)
