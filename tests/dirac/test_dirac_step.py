"""Dirac's discrete step (paper eq. 7), its options, guidance, records, seeds and typed errors."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import (
    ConfigError,
    FlowRestoreError,
    GridError,
    IncompatibleSolverError,
    PredictorOutputError,
    ShapeError,
)
from flowrestore.flows import DiracSDE, ODEFlow, SDEFlow
from flowrestore.integrate import BrownianIncrements, GeneratorNoise, PerSampleNoise
from flowrestore.solvers import SRA1, DiracStep, Euler, EulerMaruyama

SIGMA = fr.schedules.Geometric(0.01, 0.05)


def _phi(y, t):
    """A nonlinear, time-dependent stand-in for a network (acts per sample)."""
    tt = t.reshape(-1, *([1] * (y.dim() - 1)))
    return 0.8 * y + 0.1 * torch.tanh(3 * y) * (1 + tt)


def _blur():
    return fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 1.5))


def _images(b=3, seed=0, dtype=torch.float64):
    return torch.rand(b, 2, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- eq. 7
def test_dirac_step_is_eq7_to_roundoff():
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    grid = torch.tensor([1.0, 0.7, 0.45, 0.1, 0.0], dtype=torch.float64)
    dw = torch.randn(4, *y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dw = dw * grid.diff().abs().sqrt().reshape(-1, 1, 1, 1, 1)
    sol = fr.solve(
        sde, DiracStep(), y, grid=grid, save_at="steps", noise=BrownianIncrements(grid, dw)
    )
    for i in range(4):
        t, s = float(grid[i]), float(grid[i + 1])
        yt = sol.trajectory[i]
        phi = _phi(yt, torch.full((3,), t, dtype=torch.float64))
        st, ss = (float(SIGMA(torch.tensor(v, dtype=torch.float64))) ** 2 for v in (t, s))
        score = (A(phi, t) - yt) / st
        r_hat = A(phi, s) - A(phi, t)
        z = dw[i] / (t - s) ** 0.5
        expect = yt + r_hat - (ss - st) * score + (st - ss) ** 0.5 * z
        torch.testing.assert_close(sol.trajectory[i + 1], expect, rtol=1e-12, atol=1e-12)


def test_drift_and_diffusion_match_math():
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    t = torch.tensor(0.37, dtype=torch.float64)
    phi = _phi(y, t.expand(3))
    dvar = SIGMA.variance_derivative(t)
    expect = A.time_derivative(phi, 0.37) - dvar * (A(phi, 0.37) - y) / SIGMA(t) ** 2
    torch.testing.assert_close(sde.drift(t, y), expect)
    torch.testing.assert_close(sde.diffusion(t, y), dvar.sqrt())
    # per-sample times give per-sample values
    tb = torch.tensor([0.1, 0.37, 0.9], dtype=torch.float64)
    fb = sde.drift(tb, y)
    torch.testing.assert_close(fb[1], expect[1])
    assert sde.diffusion(tb, y).shape == (3, 1, 1, 1)


def test_look_ahead_tends_to_the_tangent():
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    t = torch.tensor(0.6, dtype=torch.float64)
    phi = _phi(y, t.expand(3))
    tangent = A.time_derivative(phi, 0.6)
    errs = []
    for h in (1e-2, 5e-3):
        h_t = torch.tensor(-h, dtype=torch.float64)
        r = DiracStep().incremental_reconstruction(sde, t, h_t, phi)
        errs.append(float((r / -h - tangent).abs().max()))
    assert errs[0] / errs[1] == pytest.approx(2.0, rel=0.1)  # first-order difference quotient


@pytest.mark.parametrize(
    "increment", ["look_ahead", "small_look_ahead", "look_back", "small_look_back", "tangent"]
)
def test_increment_estimates_exact_for_affine_family(increment):
    """For ``A_t = (1 − c t) I`` every estimate of ``A_{t−Δt}(Φ) − A_t(Φ)`` is exact."""
    c = 0.7
    fam = fr.degradations.DiagonalFamily(a=lambda t: 1 - c * t, derivative=lambda t: -c + 0 * t)
    sde = DiracSDE(_phi, fam, SIGMA)
    small = {"small_step": 0.01} if increment.startswith("small_") else {}
    step = DiracStep(increment=increment, **small)
    y = _images()
    for t, h in ((1.0, -0.2), (0.5, -0.1), (0.05, -0.05)):
        tt, hh = torch.tensor(t, dtype=torch.float64), torch.tensor(h, dtype=torch.float64)
        phi = _phi(y, tt.expand(3))
        r = step.incremental_reconstruction(sde, tt, hh, phi)
        torch.testing.assert_close(r, -c * h * phi, rtol=1e-9, atol=1e-12)


def test_increment_probes_stay_in_unit_interval_and_follow_the_paper():
    seen = []

    def A(x, t):
        seen.append(t.detach().clone())
        return x * (1 - 0.5 * t.reshape(-1, 1, 1, 1) ** 2)

    y = _images()
    for increment, t, h, probe in (
        ("look_ahead", 0.5, -0.1, 0.4),
        ("small_look_ahead", 0.5, -0.1, 0.49),
        ("look_back", 0.5, -0.1, 0.6),
        ("small_look_back", 0.5, -0.1, 0.51),
        ("look_back", 1.0, -0.1, 0.9),  # t + Δt > 1: reflected to the look-ahead probe
        ("small_look_back", 0.995, -0.1, 0.985),
        ("small_look_ahead", 0.5, -0.001, 0.499),  # δ capped at the step
    ):
        small = {"small_step": 0.01} if increment.startswith("small_") else {}
        sde, step = DiracSDE(_phi, A, SIGMA), DiracStep(increment=increment, **small)
        seen.clear()
        tt, hh = torch.tensor(t, dtype=torch.float64), torch.tensor(h, dtype=torch.float64)
        step.incremental_reconstruction(sde, tt, hh, y, A(y, tt.expand(3)))
        probes = torch.cat([s.reshape(-1) for s in seen[1:]])
        assert torch.allclose(probes, torch.tensor(probe, dtype=torch.float64)), (increment, probes)
    # a whole solve with every option never evaluates A or phi outside [0, 1]
    for increment in ("look_back", "small_look_back", "small_look_ahead"):
        seen.clear()
        fr.solve(
            DiracSDE(_phi, A, SIGMA),
            DiracStep(increment=increment),
            y,
            steps=7,
            generator=torch.Generator().manual_seed(0),
        )
        allt = torch.cat([s.reshape(-1) for s in seen])
        assert float(allt.min()) >= 0 and float(allt.max()) <= 1


def test_tangent_step_is_generic_euler_maruyama_up_to_noise_scale():
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    grid = torch.tensor([0.8, 0.6], dtype=torch.float64)
    noise = BrownianIncrements(grid, torch.zeros(1, *y.shape, dtype=torch.float64))
    x1 = fr.solve(sde, DiracStep(increment="tangent"), y, grid=grid, noise=noise).x
    t, h = grid[0], grid[1] - grid[0]
    # eq. 7's score term uses σ²_{t+h} − σ²_t in place of h dσ²/dt; with zero noise, the rest
    # is Euler
    phi = _phi(y, t.expand(3))
    dvar = SIGMA(grid[1]) ** 2 - SIGMA(t) ** 2
    expect = y + h * A.time_derivative(phi, 0.8) - dvar * (A(phi, 0.8) - y) / SIGMA(t) ** 2
    torch.testing.assert_close(x1, expect)


def test_generic_euler_maruyama_on_dirac_uses_the_continuous_drift():
    """EulerMaruyama on a DiracSDE is x + h f(t, x) + g ΔW with the exact ∂_t A_t; DiracStep with
    increment="tangent" differs from it only by σ² differences in place of h dσ²/dt."""
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    grid = torch.tensor([0.8, 0.6], dtype=torch.float64)
    dw = 0.1 * torch.randn(
        1, *y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    x1 = fr.solve(sde, EulerMaruyama(), y, grid=grid, noise=BrownianIncrements(grid, dw)).x
    t, h = grid[0], grid[1] - grid[0]
    expect = y + h * sde.drift(t, y) + sde.diffusion(t, y) * dw[0]
    torch.testing.assert_close(x1, expect, rtol=1e-12, atol=1e-12)
    phi = _phi(y, t.expand(3))
    f = (
        A.time_derivative(phi, 0.8)
        - SIGMA.variance_derivative(t) * (A(phi, 0.8) - y) / SIGMA(t) ** 2
    )
    torch.testing.assert_close(sde.drift(t, y), f)


# ------------------------------------------------------------------------- guidance
def _residual(sde, y, t, obs):
    phi = sde.denoise(torch.tensor(t, dtype=y.dtype), y)
    return torch.linalg.vector_norm((obs - sde.degrade(phi, 1.0)).reshape(y.shape[0], -1), dim=1)


@pytest.mark.parametrize("scaling", ["std", "error"])
def test_guidance_decreases_the_residual(scaling):
    A = _blur()
    y = _images(seed=1)
    obs = A(_images(seed=2), 1.0) + 0.05 * _images(seed=3)
    sde = DiracSDE(_phi, A, SIGMA, observation=obs, guidance=0.5, guidance_scaling=scaling)
    t = torch.tensor(0.6, dtype=torch.float64)
    with torch.no_grad():  # as inside fr.solve
        est = sde.estimate(t, y, obs)
    assert est.guidance is not None and not est.guidance.requires_grad
    before = _residual(sde, y, 0.6, obs)
    torch.testing.assert_close(est.residual, before)
    eps = 1e-3 / float(est.guidance.abs().max())
    after = _residual(sde, y + eps * est.guidance, 0.6, obs)
    assert (after < before).all(), (before, after)
    # one full guided step ends with a smaller residual than the unguided step on the same noise
    grid = torch.tensor([0.6, 0.55], dtype=torch.float64)
    dw = 0.2 * torch.randn(
        1, *y.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    plain = DiracSDE(_phi, A, SIGMA, observation=obs)
    out = {}
    for name, flow in (("guided", sde), ("plain", plain)):
        out[name] = fr.solve(flow, DiracStep(), y, grid=grid, noise=BrownianIncrements(grid, dw)).x
    guided, plain = (_residual(sde, out[k], 0.55, obs) for k in ("guided", "plain"))
    assert (guided < plain).all()


def test_guidance_values_std_and_error_scaling():
    A = _blur()
    y, obs = _images(seed=1), _images(seed=5)
    t = torch.tensor(0.4, dtype=torch.float64)
    yl = y.clone().requires_grad_(True)
    r = obs - A(_phi(yl, t.expand(3)), 1.0)
    sq = r.pow(2).reshape(3, -1).sum(1)
    (grad,) = torch.autograd.grad(0.5 * sq.sum(), yl)
    std = DiracSDE(_phi, A, SIGMA, observation=obs, guidance=0.3).estimate(t, y, obs).guidance
    torch.testing.assert_close(std, -0.3 / 0.05**2 * grad)
    err = DiracSDE(_phi, A, SIGMA, observation=obs, guidance=0.3, guidance_scaling="error")
    torch.testing.assert_close(
        err.estimate(t, y, obs).guidance, -(0.3 / sq.sqrt()).reshape(3, 1, 1, 1) * grad
    )
    eta_fn = DiracSDE(_phi, A, SIGMA, observation=obs, guidance=lambda tt: 0.3 * (1 - tt))
    torch.testing.assert_close(eta_fn.estimate(t, y, obs).guidance, -0.6 * 0.3 / 0.05**2 * grad)


def test_guided_solve_is_differentiable():
    A = _blur()
    y = _images().requires_grad_(True)
    sde = DiracSDE(_phi, A, SIGMA, guidance=0.2)
    sol = fr.solve(
        sde,
        DiracStep(),
        y,
        steps=3,
        differentiable=True,
        generator=torch.Generator().manual_seed(0),
    )
    sol.x.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


@pytest.mark.parametrize("wrt", ["start", "observation"])
def test_a_guided_solves_gradient_is_the_discrete_solves(wrt):
    """With guidance the step differentiates ``Φ`` inside itself; a differentiable solve
    differentiates that gradient too, so the gradient with respect to the start or to the
    measurement (a start that does not require grad) is the central difference of the same
    seeded solve."""
    A, y0 = _blur(), _images(b=2)
    obs0 = _images(b=2, seed=4)
    w = torch.randn(y0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d = torch.randn(y0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def run(v):
        y, obs = (v, obs0) if wrt == "start" else (y0, v)
        sde = DiracSDE(_phi, A, SIGMA, observation=obs, guidance=0.2)
        return fr.solve(sde, DiracStep(), y, steps=3, seeds=[1, 2], differentiable=True).x

    v = (y0 if wrt == "start" else obs0).clone().requires_grad_(True)
    (g,) = torch.autograd.grad((run(v) * w).sum(), v)
    with torch.no_grad():
        e = 1e-6
        fd = ((run(v + e * d) * w).sum() - (run(v - e * d) * w).sum()) / (2 * e)
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=1e-6)


# ------------------------------------------------------------ records, output, stop
def test_data_consistency_record_and_posterior_mean_output():
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    sol = fr.solve(
        sde,
        DiracStep(),
        y,
        steps=8,
        t_end=0.25,
        save_at="steps",
        output="posterior_mean",
        generator=torch.Generator().manual_seed(0),
    )
    rec = sol.records["data_consistency"]
    assert rec.shape == (8, 3)
    grid = torch.linspace(1.0, 0.25, 9, dtype=torch.float64)
    for i in (0, 3, 7):
        torch.testing.assert_close(rec[i], _residual(sde, sol.trajectory[i], float(grid[i]), y))
    # output: Φ(y_{t_end}, t_end), one extra evaluation after the 8 steps
    torch.testing.assert_close(sol.x, _phi(sol.trajectory[-1], torch.full((3,), 0.25)))
    assert sol.stats.nfe.tolist() == [9, 9, 9]
    assert float(sol.t_final[0]) == pytest.approx(0.25)
    # an explicit observation is used as given
    obs = _images(seed=7)
    sol2 = fr.solve(
        DiracSDE(_phi, A, SIGMA, observation=obs),
        DiracStep(),
        y,
        steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(sol2.records["data_consistency"][0], _residual(sde, y, 1.0, obs))
    # a solve that does not start at t = 1 knows no observation: no record
    sol3 = fr.solve(
        sde, DiracStep(), y, grid=[0.8, 0.4, 0.0], generator=torch.Generator().manual_seed(0)
    )
    assert "data_consistency" not in sol3.records
    # the generic SDE solvers integrate the continuous drift: no Dirac record
    sol4 = fr.solve(sde, SRA1(), y, steps=4, generator=torch.Generator().manual_seed(0))
    assert sol4.records == {}


# ----------------------------------------------------------------- seeded sampling
@pytest.mark.parametrize("solver", [DiracStep(), SRA1()])
def test_seeded_sampling_is_batch_composition_invariant(solver):
    A = _blur()
    y = _images(b=4, dtype=torch.float32)
    sde = DiracSDE(_phi, A, SIGMA)
    full = fr.solve(sde, solver, y, steps=5, seeds=[10, 11, 12, 13]).x
    part = fr.solve(sde, solver, y[[2, 0]], steps=5, seeds=[12, 10]).x
    torch.testing.assert_close(part, full[[2, 0]], rtol=0, atol=1e-6)
    other = fr.solve(sde, solver, y[[2, 0]], steps=5, seeds=[99, 10]).x
    assert not torch.allclose(other[0], full[2])
    torch.testing.assert_close(other[1], full[0], rtol=0, atol=1e-6)


# -------------------------------------------------------------------- noise sources
def test_increment_and_area_joint_law():
    n, h = 200_000, 0.3
    like = torch.empty(n, 1, dtype=torch.float64)
    t0, t1 = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    for src in (GeneratorNoise(torch.Generator().manual_seed(0)),):
        dw, dz = src.increment_and_area(t0, t1, like)
        cov = torch.cov(torch.cat([dw, dz], 1).T)
        expect = torch.tensor([[h, h**2 / 2], [h**2 / 2, h**3 / 3]], dtype=torch.float64)
        assert torch.allclose(cov, expect, rtol=0.02), cov
    # a path drawn on a fine grid has the same joint law over each of its intervals
    grid = torch.tensor([0.5, 0.2], dtype=torch.float64)
    path = BrownianIncrements.sample(grid, (n, 1), generator=torch.Generator().manual_seed(1))
    dw, dz = path.increment_and_area(t0, t1, like)
    cov = torch.cov(torch.cat([dw, dz], 1).T)
    assert torch.allclose(cov, expect, rtol=0.02), cov
    seeded = PerSampleNoise([3, 4])
    a = seeded.increment_and_area(t0, t1, torch.empty(2, 3))
    b = PerSampleNoise([4]).increment_and_area(t0, t1, torch.empty(1, 3))
    torch.testing.assert_close(a[0][1:], b[0])
    torch.testing.assert_close(a[1][1:], b[1])


def test_increment_and_area_are_built_from_two_normals_as_documented():
    """``ΔW = sqrt(h) ξ₁``, ``ΔZ = (h/2)(ΔW + sqrt(h/3) ξ₂)`` from the source's two normals, in
    that order (the construction of the exact joint law, checked on known normals)."""

    class Known(GeneratorNoise):
        def __init__(self, values):
            super().__init__(None)
            self.values = list(values)

        def normal(self, like, index=None):
            return torch.full_like(like, self.values.pop(0))

    h = 0.3
    t0, t1 = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    dw, dz = Known([0.7, -1.3]).increment_and_area(t0, t1, torch.empty(1, 2, dtype=torch.float64))
    want_dw = h**0.5 * 0.7
    torch.testing.assert_close(dw, torch.full_like(dw, want_dw), rtol=1e-14, atol=0)
    want_dz = h / 2 * (want_dw + (h / 3) ** 0.5 * -1.3)
    torch.testing.assert_close(dz, torch.full_like(dz, want_dz), rtol=1e-14, atol=0)
    # a sampled path: all increments' normals first, then all areas', from the generator
    grid = torch.tensor([0.5, 0.2, 0.1], dtype=torch.float64)
    path = BrownianIncrements.sample(grid, (2, 3), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    xi1, xi2 = (torch.randn(2, 2, 3, generator=g, dtype=torch.float64) for _ in range(2))
    like = torch.empty(2, 3, dtype=torch.float64)
    for k, hk in enumerate((0.3, 0.1)):
        dw, dz = path.increment_and_area(grid[k], grid[k + 1], like)
        torch.testing.assert_close(dw, hk**0.5 * xi1[k], rtol=1e-13, atol=1e-15)
        want = hk / 2 * (hk**0.5 * xi1[k] + (hk / 3) ** 0.5 * xi2[k])
        torch.testing.assert_close(dz, want, rtol=1e-12, atol=1e-15)


def test_brownian_areas_sum_consistently():
    grid = torch.linspace(1.0, 0.0, 9, dtype=torch.float64)
    path = BrownianIncrements.sample(grid, (5, 2), generator=torch.Generator().manual_seed(0))
    like = torch.empty(5, 2, dtype=torch.float64)
    dw, dz = path.increment_and_area(grid[2], grid[5], like)
    fine = [path.increment_and_area(grid[k], grid[k + 1], like) for k in range(2, 5)]
    h = 1 / 8
    w = torch.zeros_like(like)
    z = torch.zeros_like(like)
    for fw, fz in fine:
        z = z + w * h + fz
        w = w + fw
    torch.testing.assert_close(dw, w)
    torch.testing.assert_close(dz, z)
    with pytest.raises(ConfigError):
        BrownianIncrements(grid, torch.zeros(8, 5, 2)).increment_and_area(grid[0], grid[1], like)


def test_generic_euler_maruyama_step_diagonal_noise_forward():
    f = lambda t, x: -x * t[:, None]  # noqa: E731
    g = lambda t, x: 0.3 * x  # noqa: E731
    sde = SDEFlow(f, g, noise_type="diagonal")
    x0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    grid = torch.tensor([0.0, 0.25, 0.5], dtype=torch.float64)
    dw = torch.tensor([[[0.1, -0.2]], [[0.3, 0.05]]], dtype=torch.float64)
    sol = fr.solve(sde, EulerMaruyama(), x0, grid=grid, noise=BrownianIncrements(grid, dw))
    x1 = x0 + 0.25 * (-x0 * 0.0) + 0.3 * x0 * dw[0]
    x2 = x1 + 0.25 * (-x1 * 0.25) + 0.3 * x1 * dw[1]
    torch.testing.assert_close(sol.x, x2)
    assert EulerMaruyama().strong_order_for(sde) == 0.5
    assert EulerMaruyama().strong_order_for(DiracSDE(_phi, _blur(), SIGMA)) == 1.0
    assert EulerMaruyama.weak_order == 1.0 and SRA1.strong_order == 1.5


# ---------------------------------------------------------------------- typed errors
def test_typed_errors():
    A, y = _blur(), _images()
    sde = DiracSDE(_phi, A, SIGMA)
    with pytest.raises(GridError):
        fr.solve(sde, DiracStep(), y, steps=4, t_end=-0.1)
    with pytest.raises(GridError):
        fr.solve(sde, DiracStep(), y, grid=[1.2, 0.5, 0.0])
    with pytest.raises(GridError, match="1.0005"):  # [0, 1] exactly: a hair past 1 is refused
        fr.solve(sde, DiracStep(), y, grid=[1.0005, 0.5, 0.0])
    with pytest.raises(FlowRestoreError):
        sde.drift(torch.tensor(1.5, dtype=torch.float64), y)
    with pytest.raises(PredictorOutputError, match="phi returned shape"):
        fr.solve(DiracSDE(lambda y, t: y[:, :1], A, SIGMA), DiracStep(), y, steps=2)
    for bad in (
        fr.schedules.Linear(-0.1, 0.5),
        0.0,
        -1.0,
        fr.schedules.Linear(0.5, 0.1),
        lambda t: 0.05 - 0.04 * t,
        "geometric",
    ):
        with pytest.raises(ConfigError):
            DiracSDE(_phi, A, bad)
    too_big = fr.degradations.GaussianBlurFamily(kernel_size=61, width=fr.schedules.Linear(0.3, 3))
    with pytest.raises(ShapeError, match="does not fit"):
        fr.solve(DiracSDE(_phi, too_big, SIGMA), DiracStep(), y, steps=2)
    with pytest.raises(ShapeError, match="same shape"):
        fr.solve(DiracSDE(_phi, lambda x, t: x[..., :3, :3], SIGMA), DiracStep(), y, steps=2)
    with pytest.raises(ShapeError, match="observation"):
        fr.solve(DiracSDE(_phi, A, SIGMA, observation=y[:2]), DiracStep(), y, steps=2)
    with pytest.raises(ConfigError):
        DiracStep(increment="look_sideways")
    for bad in ({"small_step": 0.0}, {"small_step": 2.0}, {"track_consistency": "yes"}):
        with pytest.raises(ConfigError):
            DiracStep(**bad)
    # the step's options moved to the solver: the flow says where they went
    for moved in ({"increment": "look_back"}, {"small_step": 0.01}, {"track_consistency": False}):
        name = next(iter(moved))
        with pytest.raises(ConfigError, match=rf"fr\.DiracStep\({name}="):
            DiracSDE(_phi, A, SIGMA, **moved)
    with pytest.raises(TypeError, match="unexpected keyword argument 'incremnt'"):
        DiracSDE(_phi, A, SIGMA, incremnt="look_back")
    with pytest.raises(ConfigError):
        DiracSDE(_phi, A, SIGMA, guidance=-1.0)
    with pytest.raises(ConfigError):
        DiracSDE(_phi, A, SIGMA, guidance_scaling="l2")
    with pytest.raises(TypeError):
        DiracSDE(_phi, "blur", SIGMA)
    with pytest.raises(ConfigError, match="guidance needs the measurement"):
        fr.solve(DiracSDE(_phi, A, SIGMA, guidance=1.0), DiracStep(), y, grid=[0.5, 0.0])
    with pytest.raises(IncompatibleSolverError):
        fr.solve(SDEFlow(lambda t, x: -x, lambda t, x: x), SRA1(), y, grid=[0.0, 1.0])
    with pytest.raises(IncompatibleSolverError):
        fr.solve(ODEFlow(lambda t, x: -x), EulerMaruyama(), y, grid=[0.0, 1.0])
    with pytest.raises(IncompatibleSolverError):
        fr.solve(sde, Euler(), y, steps=2)


def test_a_guidance_callable_of_the_wrong_shape_is_a_shape_error():
    """``guidance=eta(t)`` must give a number or one value per sample: a [3] result for a batch of
    6 is a ShapeError naming ``guidance`` and both shapes (was a raw reshape RuntimeError)."""
    A, y = _blur(), _images(b=6)
    sde = DiracSDE(_phi, A, SIGMA, guidance=lambda tt: 0.3 * tt[:3])
    with pytest.raises(ShapeError, match=r"guidance.*\[B\]=\[6\].*shape \(3,\)"):
        fr.solve(sde, DiracStep(), y, steps=3, seeds=list(range(6)))
    ok = DiracSDE(_phi, A, SIGMA, guidance=lambda tt: 0.3 * tt)
    assert fr.solve(ok, DiracStep(), y, steps=3, seeds=list(range(6))).x.shape == y.shape
