"""BIRD plans its solve once per run and reads the device once per iteration (issue 17, item 1).

``BlindInversion.run`` checks and plans ``Ψ``'s solve once (``fr.integrate.prepare``), then each
iteration — the solve, the objective, the gradients, the fused Adam step, the projections — reads
one device value (finite objective? and the mean loss for the progress bar). Counted on the CPU
with the ``TorchDispatchMode`` of tests/syncs.py: the same ops synchronise on CUDA.
"""

from __future__ import annotations

import pytest
import torch
from syncs import SyncCounter

import flowrestore as fr
from flowrestore.degradations import GaussianBlur
from flowrestore.inversion import BlindInversion, Param
from flowrestore.inversion import blind as blind_module
from flowrestore.oracles.diffusion import linear_alphas_cumprod

FLOW = fr.DiffusionFlow(
    lambda x, k: torch.tanh(x) * 0.3, alphas_cumprod=linear_alphas_cumprod(),
    prediction_type="epsilon",
)  # fmt: skip


def _inversion(iterations, gradient):
    return BlindInversion(
        FLOW, solver=fr.Heun(), steps=3, iterations=iterations, gradient=gradient,
        degradation=fr.BlindOperator(
            GaussianBlur, kernel_size=5, width=Param(init=1.0, bounds=(0.1, 5.0))
        ),
    )  # fmt: skip


def _syncs(iterations, gradient):
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    inv = _inversion(iterations, gradient)
    inv.run(y, generator=torch.Generator().manual_seed(1))  # warm-up (cached tables)
    with SyncCounter() as sc:
        inv.run(y, generator=torch.Generator().manual_seed(1))
    return sc.count


@pytest.mark.parametrize("gradient", ["exact", "detached"])
def test_one_host_read_per_iteration(gradient):
    assert _syncs(6, gradient) - _syncs(3, gradient) == 3


def test_the_solve_is_planned_once_per_run(monkeypatch):
    calls = []
    real = blind_module.prepare

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(blind_module, "prepare", counting)
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = _inversion(7, "exact").run(y, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 1
    one = fr.solve(FLOW, fr.Heun(), torch.randn(2, 1, 8, 8), steps=3).stats.nfe
    assert result.nfe == 8 * int(one.max())  # 7 iterations and the final solve, each counted


def test_a_non_finite_objective_stops_the_run_at_its_iteration():
    flow = fr.DiffusionFlow(
        lambda x, k: torch.where(k.reshape(-1, 1, 1, 1) < 0, x, x * torch.nan),
        alphas_cumprod=linear_alphas_cumprod(), prediction_type="epsilon",
    )  # fmt: skip
    inv = BlindInversion(flow, solver=fr.Euler(), steps=3, iterations=5, degradation=lambda v: v)
    with pytest.raises(fr.NonFiniteError, match="non-finite.*iteration 1 of 5"):
        inv.run(torch.rand(2, 1, 8, 8), generator=torch.Generator().manual_seed(1))
