"""Third review of the closed-form oracles: the samplers' generator and device, independent
quadratures of the Gaussian-mixture posterior, a SciPy solve of the EDM probability flow, and
the closed forms in float32 for priors with tiny or huge standard deviations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from flowrestore.errors import ConfigError
from flowrestore.oracles import (
    DiracMixture,
    GaussianDenoiserOracle,
    GaussianMixtureOracle,
    GaussianOracle,
)

F64 = torch.float64


class _MetaGenerator(torch.Generator):
    """A generator that reports another device than the CPU (as a CUDA generator does on a
    machine with a GPU); its draws are the CPU generator's."""

    @property
    def device(self):
        return torch.device("meta")


def _multinomial_on_the_generators_device(real):
    """``torch.multinomial`` with CUDA's rule: the input must be on the generator's device."""

    def multinomial(input, *args, generator=None, **kwargs):
        if generator is not None and input.device != generator.device:
            raise RuntimeError(
                f"Expected a '{input.device.type}' device type for generator but found "
                f"'{generator.device.type}'"
            )
        return real(input, *args, generator=generator, **kwargs)

    return multinomial


def test_mixture_sample_draws_its_component_on_the_generators_device(monkeypatch):
    # the component was drawn from the CPU weights with the user's generator: a CUDA generator
    # with device="cuda" failed inside torch.multinomial
    oracle = GaussianMixtureOracle(
        means=torch.tensor([[0.0, 1.0], [3.0, -1.0], [5.0, 5.0]]),
        weights=torch.tensor([0.2, 0.3, 0.5]),
    )
    monkeypatch.setattr(
        torch, "multinomial", _multinomial_on_the_generators_device(torch.multinomial)
    )
    g = _MetaGenerator()
    g.manual_seed(0)
    x, i = oracle.sample(7, generator=g, device="meta", dtype=torch.float32)
    assert x.device.type == "meta" and i.device.type == "meta"
    assert x.shape == (7, 2) and i.shape == (7,) and x.dtype == torch.float32


def test_mixture_sample_on_the_cpu_is_the_multinomial_then_normal_draw():
    # the CPU draw is unchanged by the fix: component from the weights, then the noise, one
    # generator in that order
    means = torch.tensor([[0.0, 1.0], [3.0, -1.0], [5.0, 5.0]], dtype=F64)
    stds = torch.tensor([[0.5], [1.0], [2.0]], dtype=F64)
    w = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    oracle = GaussianMixtureOracle(means=means, stds=stds, weights=w)
    for dtype in (F64, torch.float32):
        x, i = oracle.sample(50, generator=torch.Generator().manual_seed(3), dtype=dtype)
        g = torch.Generator().manual_seed(3)
        j = torch.multinomial(w, 50, replacement=True, generator=g)
        z = torch.randn(50, 2, generator=g, dtype=dtype)
        assert torch.equal(i, j)
        assert torch.equal(x, means[j].to(dtype) + stds[j].to(dtype) * z)


@pytest.mark.parametrize(
    "draw",
    [
        lambda g: GaussianMixtureOracle(means=torch.zeros(2, 3)).sample(
            2, generator=g, device="meta"
        ),
        lambda g: GaussianOracle(noise_std=0.1, event_shape=(3,)).sample(
            2, generator=g, device="meta"
        ),
        lambda g: DiracMixture(centers=torch.zeros(2, 3), noise_std=0.1).sample(
            2, generator=g, device="meta"
        ),
    ],
    ids=["gaussian_mixture", "gaussian", "dirac_mixture"],
)
def test_a_generator_of_another_device_than_the_draws_is_refused_by_name(draw):
    with pytest.raises(ConfigError, match=r"generator lives on cpu.*device=meta"):
        draw(torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ independent quadratures


def _mixture_1d():
    means = torch.tensor([[-2.0], [0.5], [3.0]], dtype=F64)
    stds = torch.tensor([[0.4], [1.0], [0.2]], dtype=F64)
    w = torch.tensor([0.3, 0.5, 0.2], dtype=F64)
    return GaussianMixtureOracle(means=means, stds=stds, weights=w), means[:, 0], stds[:, 0], w


def _quadrature_posterior(x, a, b, means, stds, w):
    """``E[x_0 | a x_0 + b ε = x]`` and ``E[ε | x]`` by the trapezoid rule over ``x_0`` on a fine
    grid (float64): the prior density times the likelihood, normalised."""
    x0 = torch.linspace(-12.0, 12.0, 240001, dtype=F64)
    prior = sum(
        wi * torch.exp(-0.5 * ((x0 - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        for wi, m, s in zip(w, means, stds, strict=True)
    )
    out_x0, out_eps = [], []
    for xi in x.tolist():
        like = torch.exp(-0.5 * ((xi - a * x0) / b) ** 2)
        dens = prior * like
        z = torch.trapezoid(dens, x0)
        m = torch.trapezoid(x0 * dens, x0) / z
        out_x0.append(m)
        out_eps.append((xi - a * m) / b)
    return torch.stack(out_x0), torch.stack(out_eps)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.3), (1.0, 2.0), (0.8, 0.6), (0.05, 0.998)])
def test_mixture_posterior_mean_is_the_quadrature_of_bayes_rule(a, b):
    oracle, means, stds, w = _mixture_1d()
    x = torch.tensor([-3.0, -1.0, 0.2, 1.7, 2.6, 4.0], dtype=F64)
    want_x0, want_eps = _quadrature_posterior(x, a, b, means, stds, w)
    aa = torch.full((6, 1), a, dtype=F64)
    bb = torch.full((6, 1), b, dtype=F64)
    got_x0, got_eps = oracle._clean_and_noise(x[:, None], aa, bb)
    torch.testing.assert_close(got_x0[:, 0], want_x0, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(got_eps[:, 0], want_eps, rtol=1e-6, atol=1e-6)
    if a == 1.0:  # the EDM denoiser at sigma = b
        torch.testing.assert_close(oracle(x[:, None], b)[:, 0], want_x0, rtol=1e-7, atol=1e-7)


def test_mixture_flow_matching_velocity_is_the_quadrature_of_bayes_rule():
    oracle, means, stds, w = _mixture_1d()
    model = oracle.flow_matching_model(num_train_timesteps=1000)
    x = torch.tensor([-3.0, -1.0, 0.2, 1.7, 2.6, 4.0], dtype=F64)
    for t in (0.1, 0.5, 0.9):
        want_x0, want_eps = _quadrature_posterior(x, 1 - t, t, means, stds, w)
        got = model(x[:, None], 1000 * t)[:, 0]
        torch.testing.assert_close(got, want_eps - want_x0, rtol=1e-6, atol=1e-6)


def test_edm_exact_map_is_the_probability_flow_solved_numerically():
    """EDM's ODE ``dx/dσ = (x − D(x, σ))/σ`` with ``D`` the Gaussian posterior mean written here
    from the joint covariance, solved by DOP853 between two noise levels (down to ``σ = 0``,
    where the drift's limit is 0: started from ``σ = 10⁻⁹``)."""
    c = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    sc = torch.tensor([0.5, 0.3, 1.7], dtype=F64)
    oracle = GaussianDenoiserOracle(mean=c, std=sc)
    x = torch.tensor([[1.0, -2.0, 0.5], [30.0, 4.0, -60.0]], dtype=F64)

    def rhs(sig, xs):
        xx = torch.from_numpy(xs).reshape(2, 3)
        d = c + sc**2 / (sc**2 + sig * sig) * (xx - c)
        return ((xx - d) / sig).reshape(-1).numpy()

    for s_from, s_to in ((80.0, 0.0), (5.0, 0.7), (0.2, 3.0)):
        stop = max(s_to, 1e-9)
        sol = solve_ivp(
            rhs, (s_from, stop), x.reshape(-1).numpy(), method="DOP853", rtol=1e-12, atol=1e-12
        )
        ref = torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).reshape(2, 3)
        got = oracle.exact_map(x, s_from, s_to)
        torch.testing.assert_close(got, ref, rtol=1e-8, atol=1e-8)


# ------------------------------------------------------------------ clean(x, a, b) arguments


def test_mixture_clean_takes_numbers_and_per_sample_coefficients():
    # a number failed with AttributeError ('float' object has no attribute 'unsqueeze'), a 0-d
    # tensor with IndexError and a [B] tensor with a broadcasting RuntimeError
    oracle, means, stds, w = _mixture_1d()
    x = torch.tensor([-3.0, 0.2, 2.6, 4.0], dtype=F64)
    want, _ = _quadrature_posterior(x, 0.8, 0.6, means, stds, w)
    full = oracle.clean(x[:, None], torch.full((4, 1), 0.8, dtype=F64), torch.full((4, 1), 0.6))
    torch.testing.assert_close(full[:, 0], want, rtol=1e-7, atol=1e-7)
    for a, b in (
        (0.8, 0.6),
        (torch.tensor(0.8), torch.tensor(0.6, dtype=F64)),
        (torch.full((4,), 0.8), torch.full((4,), 0.6)),
        (np.float64(0.8), 0.6),
    ):
        torch.testing.assert_close(oracle.clean(x[:, None], a, b), full)
    # one coefficient per sample: row i is the posterior at (a_i, b_i)
    a, b = torch.tensor([1.0, 0.8, 0.5, 0.1]), torch.tensor([0.3, 0.6, 0.9, 1.0])
    rows = oracle.clean(x[:, None], a, b)[:, 0]
    for i in range(4):
        want_i, _ = _quadrature_posterior(x[i : i + 1], float(a[i]), float(b[i]), means, stds, w)
        torch.testing.assert_close(rows[i : i + 1], want_i, rtol=1e-6, atol=1e-6)


def test_mixture_clean_on_images_takes_a_per_sample_vector():
    # with an image-shaped event a [B] vector was unsqueezed to [B, 1] and broadcast against
    # the last image axis
    means = torch.tensor([[[0.0, 1.0], [2.0, -1.0]], [[3.0, 0.5], [-2.0, 1.5]]], dtype=F64)
    oracle = GaussianMixtureOracle(means=means, stds=0.7)
    x = torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    a, b = torch.tensor([0.9, 0.4], dtype=F64), torch.tensor([0.5, 1.2], dtype=F64)
    got = oracle.clean(x, a, b)
    for i in range(2):
        torch.testing.assert_close(
            got[i : i + 1], oracle.clean(x[i : i + 1], float(a[i]), float(b[i]))
        )
    torch.testing.assert_close(got, oracle.clean(x, a.reshape(2, 1, 1), b.reshape(2, 1, 1)))


@pytest.mark.parametrize(
    ("a", "b", "error", "match"),
    [
        (torch.ones(3), 0.5, "ShapeError", r"^a must be"),
        (1.0, torch.ones(2, 2, 1), "ShapeError", r"^b must be"),
        (math.inf, 0.5, "ConfigError", r"^a must be finite"),
        (1.0, "0.5", "ConfigError", r"^b must be a number"),
    ],
)
def test_mixture_clean_refuses_wrong_coefficients_by_name(a, b, error, match):
    import flowrestore.errors as errors

    oracle = GaussianMixtureOracle(means=torch.zeros(2, 2, 1), stds=1.0)
    with pytest.raises(getattr(errors, error), match=match):
        oracle.clean(torch.zeros(2, 2, 1), a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixture_component_of_a_half_precision_image_is_the_nearest_component(dtype):
    # in fp16 the squared deviations of a 3x32x32 image overflowed to inf for both components:
    # NaN responsibilities and component 0 for an image far on component 1's side
    means = torch.stack([torch.full((3, 32, 32), -1.0), torch.full((3, 32, 32), 1.0)])
    oracle = GaussianMixtureOracle(means=means, stds=0.3)
    x = torch.stack([torch.full((3, 32, 32), 5.0), torch.full((3, 32, 32), -4.0)])
    # equal weights and stds: the most probable component is the nearest mean
    assert oracle.component(x.to(dtype)).tolist() == [1, 0]
    assert oracle.component(x.double()).tolist() == [1, 0]


# ------------------------------------------------------------------ float32 near the ends


_TIMES = (0.0, 2.0**-20, 0.5, 1 - 2.0**-20, 1.0)  # exact in float32


@pytest.mark.parametrize("sc", [1e-6, 1.0, 1e6])
def test_gaussian_oracles_in_float32_near_both_ends_match_the_float64_closed_forms(sc):
    """Each Gaussian closed form evaluated on float32 states at times next to 0 and 1 and for a
    tiny or huge prior std, against the same posterior written here from the joint covariance
    in float64: within float32's resolution of the output's scale."""
    from flowrestore.oracles import GaussianFlowMatchingOracle, GaussianGenerativeOracle

    c, sig = 0.3, 0.1
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(len(_TIMES), 4, generator=g, dtype=F64) * max(sc, 1.0)).float()
    xd = x.double()
    t = torch.tensor(_TIMES, dtype=F64)[:, None]

    def close(got, want):
        scale = want.abs().max() + 1e-30
        assert got.dtype == torch.float32
        assert float((got.double() - want).abs().max() / scale) < 1e-5, (got, want)

    for h in (1.0, 0.5):  # InDI: x_t = h_t x + t σ n, h_t = 1 - t + t h
        o = GaussianOracle(mean=c, std=sc, noise_std=sig, h=h, event_shape=(4,))
        ht = 1 - t + t * h
        cov, var = sc**2 * ht, ht**2 * sc**2 + (t * sig) ** 2
        close(o.posterior_mean(x, t[:, 0].float()), c + cov / var * (xd - ht * c))
    o = GaussianGenerativeOracle(mean=c, std=sc, event_shape=(4,))  # x_t = (1 - t) x + t z
    a = 1 - t
    close(
        o.posterior_mean(x, t[:, 0].float()), c + a * sc**2 / (a**2 * sc**2 + t**2) * (xd - a * c)
    )
    close(o.ode_solution(x, t[:, 0].float()), a * c + xd * torch.sqrt(a**2 * sc**2 + t**2))
    fm = GaussianFlowMatchingOracle(mean=c, std=sc, num_train_timesteps=1, event_shape=(4,))
    V = a**2 * sc**2 + t**2
    x0 = c + a * sc**2 / V * (xd - a * c)
    eps = t / V * (xd - a * c)
    close(fm(x, t[:, 0].float()), eps - x0)
    den = GaussianDenoiserOracle(mean=c, std=sc, event_shape=(4,))
    s = t / (1 - t).clamp_min(2.0**-20)  # noise levels 0 … 2²⁰
    close(den(x, s[:, 0].float()), c + sc**2 / (sc**2 + s**2) * (xd - c))


@pytest.mark.parametrize("bad", ["80", True, torch.tensor([1.0, 2.0])])
def test_exact_maps_refuse_a_noise_level_or_time_that_is_no_number_by_name(bad):
    # float() read the string '80' and True as numbers (a map from the wrong level) and a
    # two-element tensor failed with an untyped error
    from flowrestore.oracles import GaussianFlowMatchingOracle

    x = torch.zeros(2, 3)
    den = GaussianDenoiserOracle(mean=0.0, std=0.5, event_shape=(3,))
    fm = GaussianFlowMatchingOracle(mean=0.0, std=0.5, event_shape=(3,))
    with pytest.raises(ConfigError, match="^sigma_from must be a number"):
        den.exact_map(x, bad)
    with pytest.raises(ConfigError, match="^sigma_to must be a number"):
        den.exact_map(x, 80.0, bad)
    with pytest.raises(ConfigError, match="^t_from must be a number"):
        fm.exact_map(x, bad, 0.0)
    with pytest.raises(ConfigError, match="^t_to must be a number"):
        fm.exact_map(x, 1.0, bad)
    # a one-element tensor is its number
    torch.testing.assert_close(den.exact_map(x + 1, torch.tensor(80.0)), den.exact_map(x + 1, 80.0))
    torch.testing.assert_close(fm.exact_map(x + 1, torch.tensor([0.5])), fm.exact_map(x + 1, 0.5))
