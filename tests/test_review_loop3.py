"""Review of the loop's bookkeeping and of inputs it took silently (third pass). Each test failed
before its fix."""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError, ConfigError, GridError


def _decay() -> fr.ODEFlow:
    return fr.ODEFlow(lambda t, x: -0.7 * x)


def test_the_progress_bar_is_closed_when_a_callback_raises(monkeypatch):
    """A callback (or a step) that raised left the tqdm bar open: a dangling bar line in the
    user's notebook and a leaked display handle per failed solve."""
    import tqdm.auto

    bars = []

    class Bar:
        def __init__(self, **kw):
            self.closed = False
            bars.append(self)

        def update(self, n):
            pass

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)

    def stop(k, t, x):
        if k == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fr.solve(
            _decay(),
            fr.Euler(),
            torch.ones(2, 3),
            t_span=(0.0, 1.0),
            steps=4,
            progress=True,
            callback=stop,
        )
    assert len(bars) == 1 and bars[0].closed


def test_no_landing_step_is_reported_when_every_sample_failed():
    """With every sample non-finite there is no landing step, but the callback was still called
    for one (at the unchanged time, with the failed state) as if the solve had reached t = 0."""
    calls = []

    def nan_predictor(x, t):
        return x * math.nan

    sol = fr.solve(
        fr.InDIFlow(nan_predictor),
        fr.Euler(),
        torch.ones(2, 3),
        steps=3,
        callback=lambda k, t, x: calls.append(k),
        on_failure="return",
    )
    assert (sol.stats.status == 3).all()
    assert calls == [1, 2]  # the two steps; no third call for a landing that was not taken


def test_a_sample_that_failed_on_a_fixed_grid_counts_its_steps_up_to_its_last_finite_state():
    """``stats.steps`` counted every grid step for a sample found non-finite at step 2 of 4,
    while its ``t_final`` (the start of its first bad step) said it took 2."""
    bad_row = torch.tensor([True, False]).reshape(2, 1)

    def drift(t, x):
        bad = bad_row & (t.reshape(-1, 1) >= 0.5)
        return torch.where(bad, torch.full_like(x, math.nan), -x)

    sol = fr.solve(
        fr.ODEFlow(drift),
        fr.Euler(),
        torch.ones(2, 3),
        t_span=(0.0, 1.0),
        steps=4,
        on_failure="return",
    )
    assert sol.stats.status.tolist() == [3, 0]
    assert sol.t_final.tolist() == [0.5, 1.0]
    assert sol.stats.steps.tolist() == [2, 4]


def test_a_grid_that_requires_grad_is_refused():
    """It was detached silently: the caller's backward pass then found no gradient on it."""
    grid = torch.linspace(0.0, 1.0, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GridError, match="grid requires grad"):
        fr.solve(_decay(), fr.Euler(), torch.ones(1, 2), grid=grid)
    fr.solve(_decay(), fr.Euler(), torch.ones(1, 2), grid=grid.detach())


def test_a_span_or_end_that_requires_grad_is_refused():
    t1 = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ConfigError, match="t_span requires grad"):
        fr.solve(_decay(), fr.Euler(), torch.ones(1, 2), t_span=(torch.tensor(0.0), t1), steps=2)
    with pytest.raises(ConfigError, match="t_end requires grad"):
        fr.solve(
            fr.InDIFlow(lambda x, t: 0.5 * x),
            fr.Euler(),
            torch.ones(1, 2),
            t_end=torch.tensor(0.5, requires_grad=True),
            steps=2,
        )


def test_an_observation_of_another_dtype_is_refused():
    """A float64 ``y`` beside a float32 start promoted the naive sampler's state to float64."""
    flow = fr.InDIFlow(lambda x, t: 0.5 * x, observation=torch.ones(1, 3, dtype=torch.float64))
    with pytest.raises(ArgumentTypeError, match="observation has dtype torch.float64"):
        fr.solve(flow, fr.Euler(), torch.ones(1, 3), steps=2)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: fr.degradations.Blur(torch.tensor([[0.0, math.nan, 0.0]] * 3)),
            "kernel must be finite",
        ),
        (
            lambda: fr.degradations.Inpainting(torch.tensor([[1.0, math.inf]])),
            "mask must be finite",
        ),
        (lambda: fr.degradations.Diagonal(math.nan), "scale must be finite"),
    ],
)
def test_a_non_finite_operator_is_refused_at_construction(make, match):
    """A NaN kernel or mask made every restoration NaN, found (if at all) deep in the solve."""
    with pytest.raises(ConfigError, match=match):
        make()


def test_a_refused_start_attaches_a_copy_of_the_start_state():
    """The error's partial solution held the caller's own ``x_start``: zeroing its NaN rows in
    ``err.solution.x`` (the documented way to inspect them) rewrote the user's input."""
    x = torch.ones(2, 3)
    x[0, 0] = math.nan
    with pytest.raises(fr.errors.NonFiniteError) as info:
        fr.solve(_decay(), fr.Euler(), x, t_span=(0.0, 1.0), steps=2)
    sol = info.value.solution
    assert sol.x.data_ptr() != x.data_ptr()
    sol.x.zero_()
    assert math.isnan(float(x[0, 0])) and float(x[1, 0]) == 1.0
