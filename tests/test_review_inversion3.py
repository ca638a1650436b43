"""BIRD (flowrestore.inversion) reviewed a third time: the simplex projection of a kernel with
infinite or large entries, the sphere projection of a latent with any memory layout, a named
blind noise level, ``BlindInversion.forward`` on values that were not projected, and a
``generator`` that a given ``latent`` would leave unused (review findings, third pass)."""

from __future__ import annotations

import math

import pytest
import torch
from test_review_inversion2 import counting_flow

import flowrestore as fr
from flowrestore.degradations import GaussianBlur
from flowrestore.errors import ConfigError
from flowrestore.inversion import (
    BlindInversion,
    BlindOperator,
    Param,
    project_simplex,
    project_sphere,
)
from flowrestore.oracles.diffusion import linear_alphas_cumprod

FLOW = fr.DiffusionFlow(
    lambda x, k: torch.tanh(x) * 0.3, alphas_cumprod=linear_alphas_cumprod(),
    prediction_type="epsilon",
)  # fmt: skip


def _blur():
    return BlindOperator(GaussianBlur, kernel_size=5, width=Param(1.0, bounds=(0.1, 3.0)))


def _inversion(iterations=2, **kwargs):
    kwargs.setdefault("degradation", _blur())
    return BlindInversion(FLOW, solver=fr.Heun(), steps=3, iterations=iterations, **kwargs)


def _reference_simplex(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of the rows of a finite ``v`` onto the simplex, by bisection on
    ``θ`` in ``Σ_j max(v_j − θ, 0) = 1`` (float64; independent of the sort-based algorithm)."""
    v = v.double()
    lo, hi = v.amin(dim=1, keepdim=True) - 1, v.amax(dim=1, keepdim=True)
    for _ in range(200):
        mid = (lo + hi) / 2
        over = (v - mid).clamp_min(0).sum(dim=1, keepdim=True) > 1
        lo, hi = torch.where(over, mid, lo), torch.where(over, hi, mid)
    return (v - (lo + hi) / 2).clamp_min(0)


# ------------------------------------------------------------------ the simplex projection
@pytest.mark.parametrize(
    ("v", "want"),
    [
        # the projection of v + c·e_j tends to e_j as c → ∞ (it was NaN)
        ([1.0, math.inf, 0.0], [0.0, 1.0, 0.0]),
        # ties at +inf share the mass equally (the limit of equal large entries)
        ([math.inf, 2.0, math.inf, 0.0], [0.5, 0.0, 0.5, 0.0]),
        # -inf entries get nothing; a block of -inf only is the limit of equal entries (was NaN)
        ([-math.inf, 0.2, 0.0], [0.0, 0.6, 0.4]),
        ([-math.inf, -math.inf, -math.inf, -math.inf], [0.25, 0.25, 0.25, 0.25]),
    ],
)
def test_project_simplex_maps_infinite_entries_to_the_limit_of_the_projection(v, want):
    for dtype in (torch.float32, torch.float64):
        got = project_simplex(torch.tensor([v], dtype=dtype), 1)
        torch.testing.assert_close(got, torch.tensor([want], dtype=dtype))


def test_a_param_kernel_with_an_infinite_entry_projects_onto_the_simplex():
    p = Param(torch.ones(2, 2), constraint="simplex")
    value = torch.tensor([[[0.1, 0.2], [math.inf, 0.3]], [[0.4, 0.1], [0.2, 0.3]]])
    p.project(value)
    assert bool(torch.isfinite(value).all()), value
    torch.testing.assert_close(value.sum(dim=(1, 2)), torch.ones(2))
    torch.testing.assert_close(value[0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))


@pytest.mark.parametrize("offset", [1e4, 1e8])
def test_project_simplex_of_large_entries_is_the_projection(offset):
    # the projection ignores a constant added to a block; the running sums of large entries
    # swamped the "- 1": [1e8, 1e8, 0] gave all zeros (off the simplex), entries near 1e4 were
    # ~1e-3 off
    g = torch.Generator().manual_seed(0)
    v = (offset + torch.randn(6, 9, generator=g, dtype=torch.float64) * offset * 1e-5).float()
    v[:, -1] = 0.0
    got = project_simplex(v, 1)
    torch.testing.assert_close(got.double(), _reference_simplex(v), atol=2e-6, rtol=0)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(6), atol=1e-5, rtol=0)


@pytest.mark.parametrize("event_dims", [0, 3, 1.0, True])
def test_project_simplex_refuses_event_dims_that_do_not_name_trailing_dimensions(event_dims):
    # event_dims=3 for a [3, 3] tensor projected its rows (v.shape[-1:]); 0 projected each entry
    with pytest.raises(ConfigError, match=rf"event_dims.*{event_dims}.*\(3, 3\)"):
        project_simplex(torch.ones(3, 3), event_dims)


# ------------------------------------------------------------------ the sphere
def test_project_sphere_projects_a_latent_of_any_memory_layout():
    # a non-contiguous z was reshaped into a copy and the copy scaled: z stayed where it was
    g = torch.Generator().manual_seed(0)
    base = 5 * torch.randn(2, 8, 8, 3, generator=g)
    z = base.permute(0, 3, 1, 2)  # [2, 3, 8, 8], channels last
    before = z.clone()
    assert project_sphere(z) is z
    norms = torch.linalg.vector_norm(z.reshape(2, -1), dim=1)
    torch.testing.assert_close(norms, torch.full((2,), math.sqrt(3 * 8 * 8)))
    unit = before / torch.linalg.vector_norm(before.reshape(2, -1), dim=1).reshape(2, 1, 1, 1)
    torch.testing.assert_close(z, math.sqrt(192) * unit)


@pytest.mark.parametrize("iterations", [0, 2])
def test_a_channels_last_latent_is_kept_on_the_sphere(iterations):
    # the run's latent was never projected: its norm stayed 5x the radius sqrt(d)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 8, 8, generator=g)
    latent = (5 * torch.randn(2, 3, 8, 8, generator=g)).to(memory_format=torch.channels_last)
    res = _inversion(iterations).run(y, latent=latent)
    norms = torch.linalg.vector_norm(res.latent.reshape(2, -1), dim=1)
    torch.testing.assert_close(norms, torch.full((2,), math.sqrt(3 * 8 * 8)))


# ------------------------------------------------------------------ a named noise level
def test_a_named_blind_noise_level_is_the_gaussian_likelihoods_sigma():
    # a noise_std Param with a name was keyed by its name among the unknowns but read as
    # values["noise_std"] by the objective: a KeyError after the first solve
    sigma = Param(0.2, constraint="positive", name="sigma")
    inv = _inversion(degradation=lambda v: v, noise_std=sigma)
    assert list(inv.unknowns) == ["sigma"]
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 8, 8, generator=g)
    z = project_sphere(torch.randn(2, 1, 8, 8, generator=g))
    s = torch.tensor([0.2, 0.5])
    _, grads = inv.gradients(y, z, {"sigma": s})
    # d/dσ (mse / (2σ²) + log σ) = −mse/σ³ + 1/σ, with mse the mean squared residual of Ψ(z)
    mse = (y - inv.generate(z)).reshape(2, -1).square().mean(dim=1)
    torch.testing.assert_close(grads["sigma"], -mse / s**3 + 1 / s)
    res = inv.run(y, generator=torch.Generator().manual_seed(1))
    assert res.history["sigma"].shape == (3, 2)


# ------------------------------------------------------------------ forward() on given values
def test_forward_checks_the_values_it_is_given():
    # the run's evaluations skip the operators' value checks (their values are projected);
    # forward() skipped them too, so a negative width was blurred with instead of refused
    inv = _inversion()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"width.*-1\.0"):
        inv.forward(x, {"width": torch.tensor([-1.0, 1.0])})
    with pytest.raises(ConfigError, match=r"values.*missing \['width'\]"):
        inv.forward(x, {})  # was a bare KeyError
    with pytest.raises(ConfigError, match=r"values has keys \['widht'\]"):
        inv.forward(x, {"width": torch.ones(2), "widht": torch.ones(2)})
    widths = torch.tensor([0.7, 1.6])
    torch.testing.assert_close(
        inv.forward(x, {"width": widths}), GaussianBlur(widths, kernel_size=5)(x)
    )


# ------------------------------------------------------------------ run()'s arguments
def test_a_generator_with_a_latent_is_refused_before_any_evaluation():
    # the generator was silently unused: the run started from the latent
    calls, flow = counting_flow()
    inv = BlindInversion(flow, solver=fr.Heun(), steps=3, iterations=2, degradation=_blur())
    y = torch.rand(2, 1, 8, 8)
    with pytest.raises(ConfigError, match=r"generator=.*latent=.*pass one"):
        inv.run(y, generator=torch.Generator().manual_seed(0), latent=torch.randn(2, 1, 8, 8))
    assert calls == []


def test_a_run_restarts_from_a_state_its_callback_kept():
    # what run()'s docstring promises a run that stopped early: the kept states are valid
    # starting values, and the restarted run's first objective is the one recorded for them
    inv = _inversion(3)
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    kept = {}
    first = inv.run(
        y, generator=torch.Generator().manual_seed(1), callback=lambda k, s: kept.setdefault(k, s)
    )
    again = inv.run(y, latent=kept[2].latent, params=kept[2].params)
    torch.testing.assert_close(again.history.loss[0], first.history.loss[2])
    torch.testing.assert_close(again.history["width"][0], first.history["width"][2])


def test_forward_needs_no_blind_noise_level():
    # H_φ does not involve σ: forward() takes the degradation's unknowns, with or without it
    inv = _inversion(noise_std=Param(0.1, constraint="positive"))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    widths = torch.tensor([0.7, 1.6])
    want = GaussianBlur(widths, kernel_size=5)(x)
    torch.testing.assert_close(inv.forward(x, {"width": widths}), want)
    both = {"width": widths, "noise_std": torch.full((2,), 0.1)}
    torch.testing.assert_close(inv.forward(x, both), want)
