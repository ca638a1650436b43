"""Param, blind operators and the invariants BlindInversion keeps after every iteration.

Sphere ``‖z_i‖ = sqrt(d)``, bounds, positivity and the simplex (kernels non-negative and
normalised) are checked after every update through the run's callback; bad specifications give
typed errors that name the argument and show the value.
"""

from __future__ import annotations

import math

import pytest
import torch
from _inversion_common import camera_oracle

import flowrestore as fr
from flowrestore.degradations import Blur, Downsample, GaussianBlur, Inpainting
from flowrestore.errors import ConfigError, FlowRestoreError, ShapeError
from flowrestore.inversion import (
    POSITIVE_FLOOR,
    BlindInversion,
    BlindOperator,
    Param,
    project_simplex,
)


def _gauss2d(width, k):
    u = torch.arange(k, dtype=torch.float64) - k // 2
    g = torch.exp(-(u**2) / (2 * width**2))
    g = torch.outer(g, g)
    return g / g.sum()


def _observe(op, n=2, seed=0, noise=0.01):
    oracle, flow = camera_oracle(std=0.02)
    g = torch.Generator().manual_seed(seed)
    x = oracle.sample(n, generator=g)
    y = op(x)
    return flow, x, y + noise * torch.randn(y.shape, generator=g, dtype=y.dtype)


class _Checker:
    """Callback asserting the invariants after every update."""

    def __init__(self, checks):
        self.checks, self.calls = checks, 0

    def __call__(self, k, state):
        self.calls += 1
        z = state["latent"]
        d = z[0].numel()
        norms = z.flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(d)), rtol=1e-12, atol=0)
        for key, check in self.checks.items():
            check(state["params"][key])


# ----------------------------------------------------------------------------- Param


def test_param_errors_are_typed_and_show_the_value():
    cases = [
        (dict(init="wide"), "init", "'wide'"),
        (dict(init=float("nan")), "init", "nan"),
        (dict(init=True), "init", "True"),
        (dict(init=1.0, bounds=(2.0, 1.0)), "bounds", "(2.0, 1.0)"),
        (dict(init=1.0, bounds=(0.0,)), "bounds", "(0.0,)"),
        (dict(init=7.0, bounds=(0.1, 5.0)), "init", "7.0"),
        (dict(init=-1.0, constraint="positive"), "init", "-1.0"),
        (dict(init=1.0, constraint="unit"), "constraint", "'unit'"),
        (dict(init=1.0, constraint="simplex"), "simplex", "1.0"),
        (dict(init=torch.tensor([[0.5, -0.5], [0.5, 0.5]]), constraint="simplex"), "init", "-0.5"),
        (dict(init=torch.ones(3, 3), constraint="simplex", bounds=(0, 1)), "bounds", "(0, 1)"),
        (dict(init=1.0, lr=-1e-2), "lr", "-0.01"),
        (dict(init=1.0, shared="yes"), "shared", "'yes'"),
    ]
    for kwargs, name, shown in cases:
        init = kwargs.pop("init")
        with pytest.raises(ConfigError) as info:
            Param(init, **kwargs)
        assert isinstance(info.value, (FlowRestoreError, ValueError))
        assert name in str(info.value) and shown in str(info.value), str(info.value)


def test_simplex_init_is_normalised_and_projection_is_exact():
    p = Param(torch.ones(3, 3), constraint="simplex")
    torch.testing.assert_close(p.init.sum(), torch.tensor(1.0, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    w = project_simplex(v, 2)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum((1, 2)), torch.ones(4, dtype=torch.float64))
    # optimality (KKT): w = max(v - θ, 0) for one θ per block, so v - w is constant on the support
    for i in range(4):
        diff = (v[i] - w[i])[w[i] > 0]
        assert float(diff.max() - diff.min()) < 1e-12
        zeros = v[i][w[i] == 0]
        if zeros.numel():
            assert float(zeros.max()) <= float(diff.min()) + 1e-12
    # points of the simplex are fixed
    torch.testing.assert_close(project_simplex(w, 2), w)


def test_operator_with_param_is_a_blind_template():
    op = BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 5.0)))
    assert isinstance(op, BlindOperator) and not isinstance(op, GaussianBlur)
    assert op.fixed["kernel_size"] == 31  # fixed from the upper bound: 2 ceil(3·5) + 1
    concrete = op.materialize(width=torch.tensor([1.0, 2.0]))
    assert isinstance(concrete, GaussianBlur) and concrete.kernel_size == 31
    with pytest.raises(ConfigError, match="BlindInversion"):
        op(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="width"):
        op.materialize()
    # plain construction is unchanged; a Param handed to an operator is refused with the hint
    assert type(GaussianBlur(1.0)) is GaussianBlur
    assert type(Downsample(2)) is Downsample
    with pytest.raises(ConfigError, match=r"GaussianBlur: width is a Param.*BlindOperator"):
        GaussianBlur(width=Param(1.0))
    with pytest.raises(ConfigError, match=r"GaussianBlur: width is a Param"):
        GaussianBlur(Param(1.0))
    # a misnamed argument is named, with what the operator takes (issue 19 item 6)
    takes = r"it takes \(width, kernel_size=None, padding='reflect'\)"
    with pytest.raises(ConfigError, match=rf"GaussianBlur has no argument 'sigma'; {takes}"):
        BlindOperator(GaussianBlur, sigma=Param(1.0))
    with pytest.raises(ConfigError, match=rf"missing a required argument: 'width'; {takes}"):
        BlindOperator(GaussianBlur, kernel_size=5)


def test_inversion_configuration_errors():
    _, flow = camera_oracle()
    blind = BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 5.0)))
    good = dict(solver=fr.Euler(), steps=5, degradation=blind)
    bad = [
        (dict(gradient="approx"), "gradient", "'approx'"),
        (dict(iterations=-1), "iterations", "-1"),
        (dict(lr_latent=0.0), "lr_latent", "0.0"),
        (dict(lr_degradation=float("inf")), "lr_degradation", "inf"),
        (dict(schedule="step"), "schedule", "'step'"),
        (dict(solver=fr.InDISampler(eps=0.1)), "deterministic", "eps=0.1"),
        (dict(steps=None), "steps", "steps"),
        (dict(degradation=Param(1.0)), "degradation", "Param"),
        (dict(degradation=3), "degradation", "3"),
        (dict(noise_std=-0.1), "noise_std", "-0.1"),
        (dict(noise_std=Param(0.1)), "noise_std", "positive"),
        (
            dict(degradation=[blind, BlindOperator(GaussianBlur, width=Param(1.0))]),
            "width",
            "name=",
        ),
    ]
    for change, name, shown in bad:
        with pytest.raises(ConfigError) as info:
            BlindInversion(flow, **{**good, **change})
        assert name in str(info.value) and shown in str(info.value), str(info.value)
    with pytest.raises(TypeError, match="Flow"):
        BlindInversion(lambda x, t: x, **good)
    with pytest.raises(TypeError, match="Solver"):
        BlindInversion(flow, **{**good, "solver": "euler"})
    inv = BlindInversion(flow, **good, iterations=1)
    y = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"params\['width'\] violates bounds=\(0.1, 5.0\)"):
        inv.run(y, params={"width": torch.tensor([1.0, 9.0])})
    with pytest.raises(ShapeError, match=r"params\['width'\]"):
        inv.run(y, params={"width": torch.ones(3)})
    with pytest.raises(ConfigError, match="sigma"):
        inv.run(y, params={"sigma": 1.0})
    with pytest.raises(ShapeError, match="latent"):
        inv.run(y, latent=torch.zeros(2, 1, 16, 16))
    with pytest.raises(ShapeError, match="observation"):
        inv.run(torch.zeros(2, 1, 16, 16, dtype=torch.float64), image_shape=(1, 32, 32))


def test_inversion_time_grid_is_checked_when_built():
    """What ``run``'s solve of Ψ would refuse about its grid is refused by the constructor, with
    the argument named and its value shown: nothing is evaluated (the predictor counts calls).
    An error-controlled solver without ``steps=`` is a valid Ψ and still runs."""
    oracle, _ = camera_oracle()
    calls = [0]

    def predictor(x, t):
        calls[0] += 1
        return oracle.posterior_mean(x, t)

    flow = fr.InDIFlow(predictor)
    blind = BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 5.0)))
    good = dict(solver=fr.Euler(), steps=3, degradation=blind)
    bad = [
        (dict(steps=0), ConfigError, "steps must be a positive int, got 0"),
        (dict(steps=2.5), ConfigError, "steps must be a positive int, got 2.5"),
        (dict(steps=True), ConfigError, "steps must be a positive int, got True"),
        (dict(solver=fr.Dopri5(rtol=1e-3)), ConfigError, "Dopri5(rtol=0.001) configures error"),
        (dict(steps=None, grid=[1.0, 0.5, 0.0], solver=fr.Bosh3(atol=1e-6)), ConfigError, "grid="),
        (dict(steps=None, grid=[0.0, 0.5, 1.0]), fr.GridError, "wrong direction"),
        (dict(steps=None, grid=[1.5, 0.5, 0.0]), fr.GridError, "grid"),
        (dict(grid=[1.0, 0.0]), ConfigError, "got steps=3"),
        (dict(steps=None, grid=[1.0, 0.0], spacing=fr.Power(2)), ConfigError, "spacing="),
        (dict(spacing="quadratic"), ConfigError, "spacing must be a flowrestore Spacing"),
        (dict(steps=None, spacing=fr.Power(2)), ConfigError, "spacing= lays out steps="),
        (dict(steps=None, solver=fr.RK4()), ConfigError, "steps="),
    ]
    for change, error, shown in bad:
        with pytest.raises(error) as info:
            BlindInversion(flow, **{**good, **change})
        assert shown in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match="default time span"):
        BlindInversion(fr.ODEFlow(lambda t, x: -x), **good)
    assert calls[0] == 0
    y = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    for change in (dict(steps=None, solver=fr.Dopri5(rtol=1e-2)), dict(solver=fr.Dopri5())):
        BlindInversion(flow, **{**good, **change}, iterations=1).run(
            y, generator=torch.Generator().manual_seed(0)
        )
    assert calls[0] > 0


# ----------------------------------------------------------------------------- invariants


def test_sphere_and_bounds_hold_after_every_iteration():
    flow, _, y = _observe(GaussianBlur(torch.tensor([0.3, 4.5]), kernel_size=31))
    lo, hi = 0.5, 4.0  # the true widths lie outside: the bounds are active

    def within(w):
        assert (w >= lo).all() and (w <= hi).all(), w

    checker = _Checker({"width": within})
    inv = BlindInversion(
        flow,
        solver=fr.Heun(),
        steps=3,
        iterations=60,
        lr_latent=0.05,
        lr_degradation=0.1,
        degradation=BlindOperator(GaussianBlur, width=Param(2.0, bounds=(lo, hi))),
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(0), callback=checker)
    assert checker.calls == 60
    torch.testing.assert_close(res.params["width"], torch.tensor([lo, hi], dtype=torch.float64))
    within(res.history["width"])


def test_blind_free_kernel_stays_on_the_simplex_and_approaches_the_truth():
    k_true = torch.stack([_gauss2d(0.8, 7), _gauss2d(1.6, 7)])
    flow, _, y = _observe(Blur(k_true), noise=0.005)

    def on_simplex(k):
        assert (k >= 0).all()
        torch.testing.assert_close(k.sum((1, 2)), torch.ones(2, dtype=k.dtype), rtol=0, atol=1e-12)

    checker = _Checker({"kernel": on_simplex})
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=4,
        spacing=fr.Power(2.0),
        iterations=150,
        lr_degradation=1e-2,
        gradient="detached",
        degradation=BlindOperator(Blur, kernel=Param(torch.ones(7, 7), constraint="simplex")),
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(0), callback=checker)
    assert checker.calls == 150
    start = (torch.full((7, 7), 1 / 49, dtype=torch.float64) - k_true).flatten(1).norm(dim=1)
    end = (res.params["kernel"] - k_true).flatten(1).norm(dim=1)
    assert (end < 0.7 * start).all(), (start, end)


def test_unknown_downsampling_kernel_and_noise_level():
    """Super-resolution with an unknown anti-aliasing kernel (Blur then Downsample) and an unknown
    noise level (Gaussian likelihood): σ tracks the residual and stays positive."""
    k_true = _gauss2d(1.0, 5)
    noise = 0.02
    flow, _, y = _observe(lambda x: Downsample(2)(Blur(k_true)(x)), noise=noise)
    assert y.shape[-1] == 16

    def positive(s):
        assert (s >= POSITIVE_FLOOR).all()

    checker = _Checker({"noise_std": positive})
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=4,
        spacing=fr.Power(2.0),
        iterations=150,
        lr_degradation=1e-2,
        degradation=[
            BlindOperator(Blur, kernel=Param(torch.ones(5, 5), constraint="simplex")),
            Downsample(2),
        ],
        noise_std=Param(0.1, constraint="positive", lr=2e-2),
    )
    res = inv.run(
        y, generator=torch.Generator().manual_seed(0), image_shape=(1, 32, 32), callback=checker
    )
    assert res.x.shape == (2, 1, 32, 32) and res.prediction.shape == y.shape
    assert set(res.params) == {"kernel", "noise_std"}
    # the maximum-likelihood σ is the RMS residual
    torch.testing.assert_close(res.params["noise_std"], res.residual_rms, rtol=0.1, atol=0)
    # from 0.1 toward the true 0.02 (the free 5×5 kernel is still converging after 150 steps)
    assert (res.params["noise_std"] < 2 * noise).all(), res.params["noise_std"]
    assert (res.history["noise_std"][0] == 0.1).all()


def test_unknown_inpainting_mask_and_shared_parameters():
    mask = torch.ones(1, 32, 32, dtype=torch.float64)
    mask[:, 10:20, 8:24] = 0
    flow, _, y = _observe(Inpainting(mask))

    def in_unit_interval(m):
        assert m.shape == (1, 32, 32)  # shared: one mask for the batch
        assert (m >= 0).all() and (m <= 1).all()

    checker = _Checker({"mask": in_unit_interval})
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=3,
        iterations=30,
        lr_degradation=0.05,
        degradation=BlindOperator(
            Inpainting, Param(torch.ones(1, 32, 32), bounds=(0.0, 1.0), shared=True)
        ),
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(0), callback=checker)
    assert checker.calls == 30 and res.history["mask"].shape == (31, 1, 32, 32)


def test_non_blind_and_zero_iterations():
    op = GaussianBlur(1.5)
    flow, _, y = _observe(op)
    z0 = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    inv = BlindInversion(flow, solver=fr.Euler(), steps=3, degradation=op, iterations=0)
    res = inv.run(y, latent=z0)
    assert res.params == {} and res.history["loss"].shape == (1, 2)
    z = fr.inversion.project_sphere(z0.clone())
    torch.testing.assert_close(res.latent, z)
    torch.testing.assert_close(res.x, fr.solve(flow, fr.Euler(), z, steps=3).x)


def test_regularizer_enters_the_objective():
    flow, _, y = _observe(GaussianBlur(torch.tensor([1.0, 2.0]), kernel_size=31))
    blind = BlindOperator(GaussianBlur, width=Param(1.5, bounds=(0.1, 5.0)))
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=3,
        degradation=blind,
        iterations=0,
        regularizer=lambda p: 10.0 * (p["width"] - 1.5) ** 2 + 1.0,
    )
    res = inv.run(y, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.loss, res.mse + 1.0)


def test_param_repr_shows_a_number_init_and_a_tensor_init_by_shape():
    """A scalar init reads back as the number; a tensor init as its shape; only options set."""
    assert repr(Param(1.5, bounds=(0.5, 3.0))) == "Param(init=1.5, bounds=(0.5, 3.0))"
    r = repr(Param(torch.ones(3, 3), constraint="simplex", shared=True, name="k"))
    assert r == "Param(init=tensor(shape=(3, 3)), constraint='simplex', shared=True, name='k')"
