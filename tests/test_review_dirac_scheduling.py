"""Review: degradation scheduling (Dirac's Algorithm 2) takes its arguments as the rest of the
library does: numpy integers, candidates as a float32 tensor, and refuses a non-finite range of
the data before degrading anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.degradations import schedule_degradation
from flowrestore.errors import ConfigError, ShapeError


def _setup():
    imgs = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    calls = {"n": 0}

    def family_of_param(p):
        fam = fr.degradations.GaussianBlurFamily(width=float(p), kernel_size=7)

        def op(x):
            calls["n"] += 1
            return fam(x, 1.0)

        return op

    return imgs, family_of_param, calls


def test_numpy_integer_budget_and_candidates_are_ints():
    imgs, fam, _ = _setup()
    ref = schedule_degradation(imgs, fam, params_range=(0.3, 3.0), budget=4, candidates=13)
    got = schedule_degradation(
        imgs, fam, params_range=(0.3, 3.0), budget=np.int64(4), candidates=np.int64(13)
    )
    assert torch.equal(got.values, ref.values)


def test_a_float32_tensor_of_candidates_from_p_min_to_p_max_is_accepted():
    """``torch.linspace(0.3, 3.0, 5)`` (float32) starts at 0.30000001, not at 0.3: the ends are
    the range's within the tensor's precision."""
    imgs, fam, _ = _setup()
    ref = schedule_degradation(
        imgs, fam, params_range=(0.3, 3.0), budget=3, candidates=[0.3, 0.975, 1.65, 2.325, 3.0]
    )
    got = schedule_degradation(
        imgs, fam, params_range=(0.3, 3.0), budget=3, candidates=torch.linspace(0.3, 3.0, 5)
    )
    assert got.values[0] == 0.3 and got.values[-1] == 3.0
    torch.testing.assert_close(got.values, ref.values, rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="candidates"):  # a real mismatch is still refused
        schedule_degradation(
            imgs, fam, params_range=(0.3, 3.0), budget=3, candidates=[0.31, 1.0, 2.0, 3.0]
        )


@pytest.mark.parametrize("bad", [True, float("inf"), float("nan"), 0.0, -1.0])
def test_a_bad_data_range_is_refused_before_any_degradation(bad):
    imgs, fam, calls = _setup()
    with pytest.raises(ConfigError, match="data_range"):
        schedule_degradation(
            imgs, fam, params_range=(0.3, 3.0), budget=3, dissimilarity="psnr", data_range=bad
        )
    assert calls["n"] == 0


def test_an_operator_that_is_not_one_or_changes_the_image_shape_is_a_typed_error_naming_p():
    imgs, _, _ = _setup()

    def pool(p):  # a resampling family: the degraded images' shape depends on p
        return lambda x: torch.nn.functional.avg_pool2d(x, max(1, round(p)))

    with pytest.raises(ShapeError, match=r"p=1\.0.*\(3, 1, 12, 12\).*p=4\.0.*\(3, 1, 3, 3\)"):
        schedule_degradation(imgs, pool, params_range=(1.0, 4.0), budget=3)
    with pytest.raises(ConfigError, match=r"family_of_param\(1\.0\) must return an operator"):
        schedule_degradation(imgs, lambda p: 3, params_range=(1.0, 4.0), budget=3)
    with pytest.raises(ShapeError, match=r"family_of_param\(1\.0\)\(images\) must return"):
        schedule_degradation(imgs, lambda p: lambda x: float(p), params_range=(1.0, 4.0), budget=3)
