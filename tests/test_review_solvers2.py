"""Second review of the SDE steps and the library adapters, against closed forms.

* Euler–Maruyama's weak order on the Ornstein–Uhlenbeck SDE ``dX = a X dt + b dW``: its final
  variance is, exactly, the discrete sum ``b² h Σ_k (1 + a h)^{2k}`` (noise of variance ``|h|`` per
  step: a ``dt`` instead of ``sqrt(dt)`` scaling, or a lost last step, moves it by tens of standard
  errors), and its distance to the SDE's ``b² (e^{2aT} − 1)/(2a)`` halves when the steps double.
* SRA1 (and ``Torchsde("srk")``) and torchsde's Stratonovich Heun and midpoint methods are linear
  on it too: their variances are closed forms in ``h``.
* ``fr.Torchsde``: a landing step onto a singular ``t = 0`` for the samples that did not fail.
* ``fr.Torchdiffeq``'s Adams methods: torchdiffeq's coefficients are those of equal steps
  (documented); the adapters' and guided steps' arguments: numpy numbers, names that are not
  names.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.flows import ODEFlow, SDEFlow
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod

F64 = torch.float64
A, B = -1.0, 1.0
SAMPLES = 200_000


def _ou():
    return SDEFlow(lambda t, x: A * x, lambda t, x: B + 0 * x[..., :1], noise_type="additive")


def _em_variance(a: float, n: int, span: float = 1.0) -> float:
    """Euler–Maruyama's exact variance after ``n`` steps of ``h = span/n`` from a fixed start."""
    h = span / n
    q = (1 + a * h) ** 2
    return B * B * h * (q**n - 1) / (q - 1)


def _sde_variance(a: float, span: float = 1.0) -> float:
    return B * B * math.expm1(2 * a * span) / (2 * a)


@pytest.mark.parametrize("span", [(0.0, 1.0), (1.0, 0.0)], ids=["forward", "reverse"])
@pytest.mark.parametrize("solver", [fr.EulerMaruyama(), fr.Torchsde("euler")], ids=repr)
def test_euler_maruyama_variance_is_the_discrete_closed_form_and_weak_order_one(solver, span):
    """Run backward in time the SDE is ``dX = −a X dτ + b dW_τ`` in the elapsed time ``τ``."""
    a = A if span[1] > span[0] else -A
    x0 = torch.ones(SAMPLES, 1, dtype=F64)
    se = math.sqrt(2 / SAMPLES)  # relative standard error of a sample variance (normal law)
    gaps = []
    for n in (4, 8, 16):
        grid = torch.linspace(*span, n + 1, dtype=F64)
        x = fr.solve(_ou(), solver, x0, grid=grid, generator=torch.Generator().manual_seed(n)).x
        want = _em_variance(a, n)
        assert float(x.var()) == pytest.approx(want, rel=5 * se), (n, float(x.var()), want)
        assert float(x.mean()) == pytest.approx((1 + a / n) ** n, abs=5 * math.sqrt(want / SAMPLES))
        gaps.append(abs(float(x.var()) - _sde_variance(a)))
    for coarse, fine in zip(gaps, gaps[1:], strict=False):
        assert 1.6 < coarse / fine < 2.6, gaps  # weak order 1: the gap halves


def _sra1_variance(a: float, n: int) -> float:
    """SRA1 on ``dX = a X dt + b dW`` (elapsed time) is linear: ``X⁺ = R X + b (ΔW + a ΔZ)``,
    ``R = 1 + ah + (ah)²/2``, and ``Var(ΔW + a ΔZ) = h + a h² + a² h³/3``
    (``Var ΔZ = h³/3``, ``Cov(ΔW, ΔZ) = h²/2``)."""
    h = 1.0 / n
    q = (1 + a * h + (a * h) ** 2 / 2) ** 2
    return B * B * (h + a * h * h + a * a * h**3 / 3) * (q**n - 1) / (q - 1)


@pytest.mark.parametrize("span", [(0.0, 1.0), (1.0, 0.0)], ids=["forward", "reverse"])
@pytest.mark.parametrize("solver", [fr.SRA1(), fr.Torchsde("srk")], ids=repr)
def test_sra1_variance_is_its_discrete_closed_form(solver, span):
    """The space-time area enters SRA1's noise as ``a ΔZ``: a wrong sign or scale of ``ΔZ``
    (or of its reversal) moves the variance by many standard errors at 4 steps."""
    a = A if span[1] > span[0] else -A
    x0 = torch.ones(SAMPLES, 1, dtype=F64)
    se = math.sqrt(2 / SAMPLES)
    for n in (4, 8):
        grid = torch.linspace(*span, n + 1, dtype=F64)
        x = fr.solve(_ou(), solver, x0, grid=grid, generator=torch.Generator().manual_seed(n)).x
        want = _sra1_variance(a, n)
        assert float(x.var()) == pytest.approx(want, rel=5 * se), (n, float(x.var()), want)
        mean = (1 + a / n + (a / n) ** 2 / 2) ** n
        assert float(x.mean()) == pytest.approx(mean, abs=5 * math.sqrt(want / SAMPLES))


def _heun_variance(a: float, n: int) -> float:
    """torchsde's Heun and midpoint on ``dX = a X dt + b dW`` (additive noise: Stratonovich is
    Itô): ``X⁺ = R X + b (1 + ah/2) ΔW``, ``R = 1 + ah + (ah)²/2``."""
    h = 1.0 / n
    q = (1 + a * h + (a * h) ** 2 / 2) ** 2
    return B * B * h * (1 + a * h / 2) ** 2 * (q**n - 1) / (q - 1)


@pytest.mark.parametrize("span", [(0.0, 1.0), (1.0, 0.0)], ids=["forward", "reverse"])
@pytest.mark.parametrize("method", ["heun", "midpoint"])
def test_torchsde_stratonovich_variance_is_its_discrete_closed_form(method, span):
    a = A if span[1] > span[0] else -A
    x0 = torch.ones(SAMPLES, 1, dtype=F64)
    grid = torch.linspace(*span, 5, dtype=F64)
    gen = torch.Generator().manual_seed(5)
    x = fr.solve(_ou(), fr.Torchsde(method), x0, grid=grid, generator=gen).x
    want = _heun_variance(a, 4)
    assert float(x.var()) == pytest.approx(want, rel=5 * math.sqrt(2 / SAMPLES)), float(x.var())


def _diffusion_sde():
    abar = linear_alphas_cumprod()
    c = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    std = torch.tensor([0.4, 0.7, 0.2], dtype=F64)
    oracle = GaussianDiffusionOracle(mean=c, std=std, alphas_cumprod=abar)
    return oracle, fr.DiffusionFlow(oracle, alphas_cumprod=abar).reverse_sde()


@pytest.mark.parametrize("method", ["srk", "euler"])
def test_torchsde_lands_the_samples_that_did_not_fail(method):
    """A sample whose state turns non-finite fails; the others land onto ``t = 0`` by the
    method's own last step. With ``Torchsde`` that landing (on the surviving rows only) raised a
    ConfigError about Brownian increments (the loop's row selection copied the step's cell) or
    could not reshape the rows; now the survivors are exactly what they are solved alone with
    their seeds (and, for ``"srk"``, SRA1's)."""
    oracle, sde = _diffusion_sde()
    x = oracle.sample_latent(3, torch.Generator().manual_seed(0))
    x[1, 0] = float("nan")
    seeds = [11, 12, 13]
    sol = fr.solve(sde, fr.Torchsde(method), x, steps=6, seeds=seeds, on_failure="return")
    assert sol.stats.status.tolist()[1] != 0 and sol.stats.status.tolist()[::2] == [0, 0]
    alone = fr.solve(sde, fr.Torchsde(method), x[[0, 2]], steps=6, seeds=seeds[::2]).x
    torch.testing.assert_close(sol.x[[0, 2]], alone, rtol=1e-12, atol=1e-12)
    if method == "srk":
        native = fr.solve(sde, fr.SRA1(), x[[0, 2]], steps=6, seeds=seeds[::2]).x
        torch.testing.assert_close(alone, native, rtol=1e-10, atol=1e-10)


def _decay():
    return ODEFlow(lambda t, x: -(1 + t)[:, None] * x)


def test_torchdiffeq_adams_is_order_two_on_unequal_steps_as_documented():
    """The module docstring's caveat: torchdiffeq's Adams coefficients are those of equal steps,
    so on the smooth unequal grid ``t = u (2 − u)`` AB4 converges at order 2 (and 1300× less
    accurately than on equal steps at 64 steps), while on equal steps it keeps its order 4."""
    x0 = torch.ones(1, 1, dtype=F64)
    solver = fr.Torchdiffeq("explicit_adams")
    errs = {"equal": [], "unequal": []}
    for n in (32, 64, 128):
        u = torch.linspace(0, 1, n + 1, dtype=F64)
        for kind, grid in (("equal", u), ("unequal", u * (2 - u))):
            x = fr.solve(_decay(), solver, x0, grid=grid).x
            errs[kind].append(abs(float(x) - math.exp(-1.5)))
    slope = {k: math.log2(e[0] / e[-1]) / 2 for k, e in errs.items()}
    assert slope["equal"] > solver.order - 0.3 and abs(slope["unequal"] - 2) < 0.2, (slope, errs)
    assert errs["unequal"][1] > 300 * errs["equal"][1], errs


@pytest.mark.parametrize(
    "make, field, value",
    [
        (lambda v: fr.DPSStep(zeta=v), "zeta", np.float32(0.5)),
        (lambda v: fr.DPSStep(zeta=v), "zeta", np.int64(1)),
        (lambda v: fr.DPSStep(eta=v), "eta", np.float32(0.5)),
        (lambda v: fr.DDRMStep(eta=v), "eta", np.float32(0.5)),
        (lambda v: fr.DDRMStep(eta_b=v), "eta_b", np.float64(0.75)),
        (lambda v: fr.DiffPIRStep(zeta=v), "zeta", np.float32(0.25)),
    ],
)
def test_guided_steps_take_numpy_numbers(make, field, value):
    """A numpy scalar (a value read from a config array) is a number, as everywhere else in the
    package; it was refused as "must be a number"."""
    solver = make(value)
    assert getattr(solver, field) == float(value) and type(getattr(solver, field)) is float


def test_guided_steps_still_refuse_what_is_not_a_number_in_range():
    for bad in (True, float("nan"), -0.1, 1.5, "0.5"):
        with pytest.raises(ConfigError, match="eta"):
            fr.DDRMStep(eta=bad)
    for bad in (True, float("inf"), float("nan"), -1.0, "1"):
        with pytest.raises(ConfigError, match="zeta"):
            fr.DPSStep(zeta=bad)


def test_torchdiffeq_adams_takes_a_numpy_max_order():
    solver = fr.Torchdiffeq("explicit_adams", options={"max_order": np.int64(4)})
    assert solver.options["max_order"] == 4 and type(solver.options["max_order"]) is int
    assert solver.order == 3.0
    with pytest.raises(ConfigError, match="max_order"):
        fr.Torchdiffeq("explicit_adams", options={"max_order": np.float64(4.0)})


@pytest.mark.parametrize("make", [fr.Torchsde, fr.Torchdiffeq], ids=["Torchsde", "Torchdiffeq"])
@pytest.mark.parametrize("method", [["srk"], {"method": "rk4"}, 3])
def test_adapter_method_that_is_not_a_name_is_a_config_error(make, method):
    """An unhashable method (a list, a dict) raised ``TypeError: unhashable type`` from the
    membership test; now it is the typed error naming the accepted methods."""
    with pytest.raises(ConfigError, match="method must be"):
        make(method)


def test_torchsde_grad_free_must_be_a_bool():
    """torchsde reads ``grad_free`` as a truth value: ``"no"`` silently meant yes."""
    assert fr.Torchsde("milstein", options={"grad_free": True}).options == {"grad_free": True}
    for bad in ("no", 0, None):
        with pytest.raises(ConfigError, match="grad_free"):
            fr.Torchsde("milstein", options={"grad_free": bad})
