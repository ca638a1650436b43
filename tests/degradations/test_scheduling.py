"""Degradation scheduling (Dirac Algorithm 2) on toy families with a known dissimilarity."""

import math

import pytest
import torch

from flowrestore.degradations import (
    Diagonal,
    GaussianBlur,
    GaussianBlurFamily,
    schedule_degradation,
)
from flowrestore.errors import ConfigError
from flowrestore.schedules import PiecewiseLinear

D64 = torch.float64
X = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=D64) + 0.5


def scale(p):
    return Diagonal(p)  # A_p x = p x:  MSE ∝ (p_i - p_j)², so splits are midpoints


def test_linear_toy_family_gives_midpoints():
    sched, info = schedule_degradation(
        X, scale, params_range=(0.0, 1.0), budget=5, return_details=True
    )
    assert info["params"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0], abs=1e-12)
    assert isinstance(sched, PiecewiseLinear)
    torch.testing.assert_close(
        sched(torch.tensor([0.0, 0.5, 1.0], dtype=D64)), torch.tensor([0.0, 0.5, 1.0], dtype=D64)
    )


def test_greedy_splits_the_largest_interval_first():
    # A_p x = p² x: distance ∝ (p_i² - p_j²)², so chosen p² are the dyadic midpoints in p² space.
    cands = [math.sqrt(k / 16) for k in range(17)]
    _, info = schedule_degradation(
        X,
        lambda p: Diagonal(p * p),
        params_range=(0.0, 1.0),
        budget=4,
        candidates=cands,
        return_details=True,
    )
    # {0, 1} → split at p² = 1/2; then [0, 1/2] and [1/2, 1] tie → lower one first: p² = 1/4
    assert [p * p for p in info["params"]] == pytest.approx([0.0, 0.25, 0.5, 1.0], abs=1e-12)
    hist = info["max_dissimilarity"]
    assert all(
        b <= a + 1e-15 for a, b in zip(hist, hist[1:], strict=False)
    )  # non-increasing max distance


def test_uneven_dissimilarity_concentrates_severities():
    # distance depends only on |log p_i - log p_j| → chosen params are geometric, not linear.
    def logdist(a, b):
        return (torch.log(a) - torch.log(b)).abs().mean()

    cands = [2.0 ** (k / 8) for k in range(0, 33)]  # 1 … 16
    _, info = schedule_degradation(
        X,
        scale,
        params_range=(1.0, 16.0),
        budget=5,
        candidates=cands,
        dissimilarity=logdist,
        return_details=True,
    )
    assert info["params"] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0], rel=1e-12)


def test_a_budget_equal_to_the_candidates_takes_each_once():
    """With as many severities as candidates every candidate is chosen, once, in order — even when
    the dissimilarity is concentrated between two neighbours (an adjacent pair can not be split)."""
    cands = [0.0, 0.1, 0.2, 0.3, 2.0, 2.1]  # the 0.3 → 2.0 neighbours dominate every split
    _, info = schedule_degradation(
        X, scale, params_range=(0.0, 2.1), budget=6, candidates=cands, return_details=True
    )
    assert info["params"] == cands
    history = info["max_dissimilarity"]
    assert all(a >= b for a, b in zip(history, history[1:], strict=False))


def test_blur_schedule_is_monotone_hits_ends_and_feeds_a_family():
    x = torch.rand(3, 1, 24, 24, generator=torch.Generator().manual_seed(1), dtype=D64)
    for dissim in ("mse", "psnr", lambda a, b: (a - b).abs().flatten(1).mean(1)):
        sched = schedule_degradation(
            x,
            lambda w: GaussianBlur(w, kernel_size=15),
            params_range=(0.3, 3.0),
            budget=8,
            dissimilarity=dissim,
        )
        assert sched.is_monotone()
        assert float(sched(torch.tensor(0.0, dtype=D64))) == pytest.approx(0.3)
        assert float(sched(torch.tensor(1.0, dtype=D64))) == pytest.approx(3.0)
        assert len(sched.values) == 8
        # blur MSE saturates for wide kernels: more severities at small widths (paper fig. 7)
        assert float(sched(torch.tensor(0.5, dtype=D64))) < 1.65
    fam = GaussianBlurFamily(width=sched, kernel_size=15)
    assert fam(x, torch.tensor([0.0, 0.5, 1.0], dtype=D64)).shape == x.shape


def test_scheduling_typed_errors():
    for images in (X[:0], X[0, 0, 0], [X]):  # an empty batch, a vector, not a tensor
        with pytest.raises(ConfigError, match="non-empty batch tensor"):
            schedule_degradation(images, scale, params_range=(0, 1), budget=3)
    with pytest.raises(ConfigError, match="budget"):
        schedule_degradation(X, scale, params_range=(0, 1), budget=1)
    with pytest.raises(ConfigError, match="params_range"):
        schedule_degradation(X, scale, params_range=(1.0, 1.0), budget=3)
    with pytest.raises(ConfigError, match="dissimilarity"):
        schedule_degradation(X, scale, params_range=(0, 1), budget=3, dissimilarity="lpips")
    with pytest.raises(ConfigError, match="candidates"):
        schedule_degradation(X, scale, params_range=(0, 1), budget=5, candidates=3)
    with pytest.raises(ConfigError, match="candidates"):
        schedule_degradation(
            X, scale, params_range=(0, 1), budget=3, candidates=[0.0, 0.7, 0.5, 1.0]
        )


def test_split_follows_the_dissimilarity_not_the_candidate_index():
    """Uniform candidates, a log-distance: the min-max split of [1, 16] is the geometric mean 4
    (index midpoint: 8.5), and the next split goes to the interval with the largest distance
    ([4, 16] after [1, 2] and [2, 4]), not to the middle interval of the list."""

    def logdist(a, b):
        return (torch.log(a) - torch.log(b)).abs().mean()

    cands = [1.0 + 0.25 * k for k in range(61)]  # 1, 1.25, …, 16: uniform in p
    _, info = schedule_degradation(
        X,
        scale,
        params_range=(1.0, 16.0),
        budget=5,
        candidates=cands,
        dissimilarity=logdist,
        return_details=True,
    )
    assert info["params"] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0], rel=1e-12)
    # the recorded largest distance after each split: log 16, log 4 (twice), then log 2
    assert info["max_dissimilarity"] == pytest.approx(
        [math.log(16), math.log(4), math.log(4), math.log(2)], rel=1e-9
    )


def test_a_batch_of_vectors_is_a_batch_of_images():
    """``images`` is any non-empty batch ``[B, ...]``: a batch of vectors ``[B, D]`` schedules as
    its images ``[B, 1, 1, D]`` do (the distances are per-sample means)."""
    flat = X.reshape(4, -1)
    _, a = schedule_degradation(flat, scale, params_range=(0.0, 1.0), budget=4, return_details=True)
    _, b = schedule_degradation(X, scale, params_range=(0.0, 1.0), budget=4, return_details=True)
    assert a["params"] == pytest.approx(b["params"], abs=1e-12)


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_psnr_dissimilarity_is_minus_the_psnr_in_decibels(data_range):
    """``dissimilarity="psnr"``: the distance between the ends is ``-PSNR = 10·log10(MSE/R²)``
    of the two degraded batches (per image, averaged); for ``A_p x = p x`` the MSE between
    ``p = 0`` and ``p = 1`` is the mean of ``x²``."""
    _, info = schedule_degradation(
        X,
        scale,
        params_range=(0.0, 1.0),
        budget=3,
        dissimilarity="psnr",
        data_range=data_range,
        return_details=True,
    )
    mse = (X**2).flatten(1).mean(1)
    expected = (10 * torch.log10(mse / data_range**2)).mean()
    assert info["max_dissimilarity"][0] == pytest.approx(float(expected), rel=1e-12)
