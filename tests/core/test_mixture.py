"""Dirac-mixture prior (docs/math.md §2c): trajectories end on centres, landing frequencies are the
weights, and one step regresses to the mean.

Centres (±1, ±1), w = (0.1, 0.2, 0.3, 0.4), H = diag(1, 0.3), σ = 0.5, Euler with 400 steps,
x_1 ~ p(y). The default run uses 40 000 samples (float32, ~10 s on a shared core); the
2·10⁵-sample version of docs/math.md is marked slow.
"""

import pytest
import torch

import flowrestore as fr

CENTRES = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


@pytest.fixture(scope="module")
def mixture():
    return fr.oracles.DiracMixture(
        centers=CENTRES, weights=WEIGHTS, H=torch.tensor([1.0, 0.3]), noise_std=0.5
    )


def landing_frequencies(mixture, n, dtype, seed=0, steps=400):
    _, y, _ = mixture.sample(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    sol = fr.solve(fr.InDIFlow(mixture), fr.Euler(), y, steps=steps)
    index, dist = mixture.nearest_center(sol.x)
    freq = torch.bincount(index, minlength=4).double() / n
    return freq, dist


def _check_binomial(freq, n, k=4.0):
    se = (WEIGHTS * (1 - WEIGHTS) / n).sqrt()
    z = (freq - WEIGHTS) / se
    assert bool((z.abs() < k).all()), f"frequencies {freq.tolist()} vs weights, z = {z.tolist()}"


def test_landing_frequencies_default(mixture):
    n = 40_000
    freq, dist = landing_frequencies(mixture, n, torch.float32)
    _check_binomial(freq, n)
    assert float(dist.max()) < 1e-5  # float32: every sample sits on a centre


@pytest.mark.slow
def test_landing_frequencies_full(mixture):
    n = 200_000
    freq, dist = landing_frequencies(mixture, n, torch.float64, seed=1)
    _check_binomial(freq, n)
    assert float((freq - WEIGHTS).abs().max()) < 4e-3
    assert float(dist.max()) < 1e-12


def test_binomial_check_can_fail(mixture):
    """One-step regression lands off the centres; uniform weights fail the binomial check."""
    n = 20_000
    freq = torch.full((4,), 0.25, dtype=torch.float64)
    with pytest.raises(AssertionError, match="frequencies"):
        _check_binomial(freq, n)


def test_distance_to_nearest_centre_vanishes_as_step_shrinks(mixture):
    _, y, _ = mixture.sample(4000, generator=torch.Generator().manual_seed(2))
    means, maxes = [], []
    for steps in (1, 2, 3, 4, 6, 8, 16, 400):
        sol = fr.solve(fr.InDIFlow(mixture), fr.Euler(), y, steps=steps)
        _, d = mixture.nearest_center(sol.x)
        means.append(float(d.mean()))
        maxes.append(float(d.max()))
    assert means[0] > 0.3  # one step: between centres
    assert all(a >= b for a, b in zip(means, means[1:], strict=False)), means
    assert maxes[-1] <= 1e-12 and means[-2] <= 1e-12


@pytest.mark.parametrize(
    "solver", [fr.Heun(), fr.RK4(), fr.Dopri5(rtol=1e-5)], ids=["Heun", "RK4", "Dopri5"]
)
def test_higher_order_solvers_also_land_on_centres(mixture, solver):
    _, y, _ = mixture.sample(500, generator=torch.Generator().manual_seed(3))
    kw = {} if solver.adaptive else {"steps": 100}
    sol = fr.solve(fr.InDIFlow(mixture), solver, y, **kw)
    _, d = mixture.nearest_center(sol.x)
    assert float(d.max()) <= 1e-9


def test_one_step_regresses_to_the_mean(mixture):
    _, y, _ = mixture.sample(1000, generator=torch.Generator().manual_seed(4))
    sol = fr.solve(fr.InDIFlow(mixture), fr.Euler(), y, steps=1)
    mmse = mixture.mmse(y)
    assert float((sol.x - mmse).abs().max()) <= 1e-15
    _, d = mixture.nearest_center(sol.x)
    assert float(d.median()) > 0.1  # a weighted average of centres, not a centre
    # the one-step output is the posterior-weighted average of the centres
    weights = mixture.posterior_weights(y, 1.0)
    assert float((sol.x - weights @ CENTRES).abs().max()) <= 1e-15
