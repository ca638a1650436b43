"""Time distributions p(t): KS tests against their cdf, bias toward t = 1, reproducibility."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from flowrestore.errors import ConfigError
from flowrestore.training.tdist import Beta, Power, Uniform, resolve_tdist

CASES = [
    ("uniform", {}),
    ("power", {"k": 2.0}),
    ("power", {"k": 4}),
    ("beta", {"a": 2.0, "b": 1.0}),
    ("beta", {"a": 3.0, "b": 1.5}),
]


@pytest.mark.parametrize("name,params", CASES)
def test_ks_against_cdf(name, params):
    d = resolve_tdist(name, **params)
    t = d.sample(2000, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert t.shape == (2000,) and bool(((t >= 0) & (t <= 1)).all())
    assert scipy.stats.kstest(t.numpy(), d.cdf).pvalue > 1e-3
    assert float(t.mean()) == pytest.approx(d.mean, abs=0.03)


def test_ks_detects_a_wrong_cdf():
    t = resolve_tdist("power", k=3).sample(
        2000, torch.Generator().manual_seed(2), dtype=torch.float64
    )
    assert scipy.stats.kstest(t.numpy(), Uniform().cdf).pvalue < 1e-6


@pytest.mark.parametrize("d", [Power(k=2.0), Power(k=5.0), Beta(a=3.0, b=1.0)])
def test_biased_family_leans_toward_one(d):
    t = d.sample(4000, torch.Generator().manual_seed(0))
    assert d.mean > 0.5 and float(t.mean()) > 0.55


def test_reproducible_and_resolve_forms():
    d = resolve_tdist({"name": "beta", "a": 2.0, "b": 1.0})
    a = d.sample(50, torch.Generator().manual_seed(7))
    b = d.sample(50, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert resolve_tdist(d.to_spec()) == d
    assert resolve_tdist(d) is d
    c = resolve_tdist(lambda n, g: torch.full((n,), 0.25))
    assert torch.equal(c.sample(3), torch.full((3,), 0.25))
    with pytest.raises(ConfigError, match="outside"):
        resolve_tdist(lambda n, g: torch.full((n,), 2.0)).sample(3)
    with pytest.raises(ConfigError, match="unknown time distribution"):
        resolve_tdist("gamma")
    with pytest.raises(ConfigError, match="k must be"):
        resolve_tdist("power", k=-1)
    with pytest.raises(ConfigError, match="bad parameters"):
        resolve_tdist("uniform", k=2)


@pytest.mark.parametrize("name,params", CASES)
def test_sampler_is_the_inverse_of_the_documented_cdf(name, params):
    """Each draw is F⁻¹ of the generator's uniform, with F the documented law: uniform F(s) = s;
    power P(t ≤ s) = 1 − (1 − s)^(1/k) from t = 1 − u^k (so F(t) = 1 − u); Beta(a, b) its
    regularised incomplete beta. Exact to rounding, so an exponent off by 10 % is seen at once."""
    n = 500
    dist = resolve_tdist(name, **params)
    t = dist.sample(n, torch.Generator().manual_seed(3), dtype=torch.float64)
    u = torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    t = t.numpy()
    if name == "uniform":
        assert np.array_equal(t, u)
    elif name == "power":
        k = params["k"]
        ok = u > 1e-3  # below, 1 − t = u^k is under float64's resolution near t = 1
        assert ok.sum() > 490
        assert np.allclose((1 - (1 - t) ** (1 / k))[ok], (1 - u)[ok], rtol=0, atol=1e-9)
        assert resolve_tdist(name, **params).mean == pytest.approx(k / (k + 1), rel=1e-15)
    else:
        assert np.allclose(scipy.special.betainc(params["a"], params["b"], t), u, atol=1e-12)
    # the class's cdf is that law: F(t) at each draw, and F = 0, 1 at the ends
    want = 1 - u if name == "power" else u
    keep = u > 1e-3
    assert np.allclose(np.asarray(dist.cdf(t))[keep], want[keep], rtol=0, atol=1e-9)
    assert np.allclose(np.asarray(dist.cdf(np.array([0.0, 1.0]))), [0.0, 1.0], rtol=0, atol=1e-15)
