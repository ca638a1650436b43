"""BlindInversion.run: named records and an exact evaluation count.

``nfe`` must count every predictor evaluation of the run — one solve ``Ψ(z)`` per iteration and
the final solve at the last latent — which a predictor that counts its own calls measures directly.
The history and the callback's state are named records (``History``, ``IterationState``), still
readable by name.
"""

from __future__ import annotations

import pytest
import torch
from _inversion_common import camera_oracle

import flowrestore as fr
from flowrestore.inversion import BlindInversion, History, IterationState, Param


@pytest.mark.parametrize("gradient", ["exact", "detached"])
@pytest.mark.parametrize("iterations", [0, 3])
def test_nfe_counts_every_evaluation_of_the_run(gradient, iterations):
    oracle, _ = camera_oracle(size=16)
    calls = []

    def predictor(x, t):
        calls.append(x.shape[0])
        return oracle.posterior_mean(x, t)

    inv = BlindInversion(
        fr.InDIFlow(predictor),
        solver=fr.Heun(),
        steps=3,
        degradation=fr.BlindOperator(
            fr.degradations.GaussianBlur, width=Param(1.0, bounds=(0.3, 3.0))
        ),
        iterations=iterations,
        gradient=gradient,
    )
    y = oracle.sample(2, generator=torch.Generator().manual_seed(0))
    res = inv.run(y, generator=torch.Generator().manual_seed(1))
    per_solve = int(
        fr.solve(fr.InDIFlow(oracle.posterior_mean), fr.Heun(), y, steps=3).stats.nfe[0]
    )
    assert res.nfe == len(calls) == (iterations + 1) * per_solve


def test_history_and_callback_state_are_named_records():
    oracle, flow = camera_oracle(size=16)
    seen = []
    inv = BlindInversion(
        flow,
        solver=fr.Euler(),
        steps=2,
        degradation=fr.BlindOperator(
            fr.degradations.GaussianBlur, width=Param(1.0, bounds=(0.3, 3.0))
        ),
        iterations=2,
    )
    y = oracle.sample(2, generator=torch.Generator().manual_seed(0))
    res = inv.run(
        y, generator=torch.Generator().manual_seed(1), callback=lambda k, s: seen.append((k, s))
    )
    assert isinstance(res.history, History)
    assert res.history.loss.shape == res.history.mse.shape == (3, 2)
    assert res.history["loss"] is res.history.loss and res.history["width"].shape == (3, 2)
    torch.testing.assert_close(res.history.params["width"][-1], res.params["width"])
    torch.testing.assert_close(res.history.loss[-1], res.loss)
    with pytest.raises(KeyError, match="'loss', 'mse' and \\['width'\\]"):
        res.history["kernel"]
    assert [k for k, _ in seen] == [1, 2]
    state = seen[-1][1]
    assert isinstance(state, IterationState) and state["params"] is state.params
    torch.testing.assert_close(state.params["width"], res.params["width"])
    torch.testing.assert_close(state.loss, res.history.loss[1])
    assert not hasattr(res, "extra")
