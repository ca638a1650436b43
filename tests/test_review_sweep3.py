"""Checks that a random-mutation sweep (``tools/random_mutate.py 16 7071``) found no test for:
each fails if the refusal it names is loosened."""

from __future__ import annotations

import pytest
import torch

from flowrestore.degradations import GaussianBlur
from flowrestore.degradations.scheduling import schedule_degradation
from flowrestore.errors import ConfigError
from flowrestore.oracles import GaussianFlowMatchingOracle

F64 = torch.float64


@pytest.mark.parametrize("t_from, t_to", [(1.5, 0.0), (1.0, -0.25), (1.0, 1.2)])
def test_the_flow_matching_oracles_exact_map_refuses_times_outside_0_1(t_from, t_to):
    """Past t = 1 the interpolant's variance formula still returns numbers (a map no flow-matching
    model defines), so a closed form used as a test's truth would silently be wrong."""
    oracle = GaussianFlowMatchingOracle(
        mean=torch.zeros(3, dtype=F64), std=torch.ones(3, dtype=F64)
    )
    with pytest.raises(ConfigError, match="times must lie in"):
        oracle.exact_map(torch.zeros(2, 3, dtype=F64), t_from, t_to)


def test_schedule_degradation_takes_a_single_image():
    """One photo is a batch (a user scheduling the degradation for the image at hand); the sweep
    refused it (``shape[0] < 2``) and no test noticed. Its schedule spans the range, increasing."""
    img = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    sched = schedule_degradation(img, lambda p: GaussianBlur(p), params_range=(0.3, 3.0), budget=4)
    p = sched(torch.linspace(0, 1, 4, dtype=F64))
    assert abs(float(p[0]) - 0.3) < 1e-9 and abs(float(p[-1]) - 3.0) < 1e-9
    assert bool((p.diff() > 0).all())


def test_schedule_degradation_refuses_an_empty_batch():
    """An empty batch gave NaN dissimilarities (the mean of nothing), reported as if the user's
    dissimilarity function had returned them."""
    with pytest.raises(ConfigError, match="images must be a non-empty batch"):
        schedule_degradation(
            torch.zeros(0, 1, 8, 8), lambda p: GaussianBlur(p), params_range=(0.3, 3.0), budget=3
        )


def _showcase(**kw):
    from flowrestore.methods.base import Showcase

    base = dict(
        runs=(("euler", 2, "last"),),
        quick_runs=(("euler", 1, "last"),),
        steps=(1, 2),
        quick_steps=(1,),
        heldout=(("euler", 2, "last"),),
    )
    return Showcase(**{**base, **kw})


@pytest.mark.parametrize(
    "kw",
    [
        {"runs": (("euler", 0, "last"),)},  # the sweep's survivor: a demo row of 0 steps
        {"heldout": (("euler", True, "last"),)},
        {"quick_runs": (("euler", 2),)},
        {"steps": (1, 0)},
        {"quick_steps": ()},
    ],
)
def test_a_showcase_with_a_run_that_cannot_run_is_refused(kw):
    """A demo row of 0 steps was shipped unnoticed: only the full demo (not run by the default
    suite) would have failed, mid-table."""
    with pytest.raises(ConfigError, match="Showcase"):
        _showcase(**kw)


def test_a_method_whose_showcase_names_a_solver_it_lacks_is_refused():
    import dataclasses

    from flowrestore.methods.registry import get_method

    indi = get_method("indi")
    with pytest.raises(ConfigError, match=r"showcase runs name solvers \['heun2'\]"):
        dataclasses.replace(indi, showcase=_showcase(runs=(("heun2", 3, "last"),)))
