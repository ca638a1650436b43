"""Cross-checks of the multistep solvers' per-sample steps (review of the solvers' numerics).

A step may be given ``[B]`` times (``Solver.per_sample_steps``; the grid fitter's cost model
steps many teacher points at once): each row must then be stepped exactly as that sample alone,
including a batch in which some samples step onto ``t = 0`` (the landing: an extrapolation or the
last clean estimate) while the others take an ordinary step at the same call.
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.noise import GeneratorNoise
from flowrestore.oracles import GaussianFlowMatchingOracle
from flowrestore.oracles.diffusion import GaussianDiffusionOracle, linear_alphas_cumprod
from flowrestore.solvers import Context

F64 = torch.float64

#: one grid per sample, the same number of steps: sample 1 ends at 0.02 while samples 0 and 2
#: land on 0 at the same call, and every sample starts at its own time
GRIDS = torch.tensor(
    [[1.0, 0.6, 0.3, 0.15, 0.0], [0.9, 0.5, 0.35, 0.1, 0.02], [0.7, 0.4, 0.2, 0.12, 0.0]],
    dtype=F64,
)


def _flows():
    g = torch.Generator().manual_seed(0)
    c = 0.5 * torch.randn(8, generator=g, dtype=F64)
    sc = 0.3 + 0.7 * torch.rand(8, generator=g, dtype=F64)
    abar = linear_alphas_cumprod()
    diff = GaussianDiffusionOracle(mean=c, std=sc, alphas_cumprod=abar, prediction_type="epsilon")
    indi = fr.oracles.GaussianOracle(mean=c, std=sc, noise_std=0.8)
    x = torch.randn(3, 8, generator=g, dtype=F64)
    return {
        "diffusion": (fr.DiffusionFlow(diff, alphas_cumprod=abar, prediction_type="epsilon"), x),
        "flow-matching": (fr.FlowMatchingFlow(GaussianFlowMatchingOracle(mean=c, std=sc)), x),
        "indi": (fr.InDIFlow(indi.posterior_mean), x),
    }


def _run(flow, solver, x, grids):
    """Step ``solver`` by hand over per-sample ``grids`` (``[B, N + 1]``; one row: 0-d times)."""
    ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
    rows = grids if grids.shape[0] > 1 else grids[0]
    x, state = solver.init(flow, rows[..., 0], x, ctx)
    n = grids.shape[1] - 1
    for k in range(n):
        ctx.step_index, ctx.steps_left = k, n - 1 - k
        t, s = rows[..., k], rows[..., k + 1]
        out = solver.step(flow, t, x, s - t, state, ctx)
        x, state = out.x, out.state
    return x


SOLVERS = {
    "UniPC": lambda: fr.UniPC(),
    "UniPC-3": lambda: fr.UniPC(nodes=3),
    "SemiLinearMultistep": lambda: fr.SemiLinearMultistep(),
    "SemiLinearMultistep-log": lambda: fr.SemiLinearMultistep(power=0, nodes=3),
    "IPNDM": lambda: fr.IPNDM(),
    "IPNDM-guarded": lambda: fr.IPNDM(ab_order=4, landing_guard=True),
    "IPNDM-landing-4": lambda: fr.IPNDM(landing_order=4),
    "DataIPNDM": lambda: fr.DataIPNDM(landing_order=3),
}


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_per_sample_steps_with_a_mixed_landing_are_each_samples_own(name, dtype):
    """Rows stepped together with ``[B]`` times, some landing on 0 while another does not,
    equal each sample stepped alone on its own grid (0-d times)."""
    tol = 1e-13 if dtype == F64 else 1e-5
    checked = 0
    for flow, x in _flows().values():
        try:
            SOLVERS[name]().check_flow(flow)
        except fr.IncompatibleSolverError:
            continue
        x = x.to(dtype)
        grids = GRIDS.to(dtype)
        together = _run(flow, SOLVERS[name](), x, grids)
        alone = torch.cat(
            [_run(flow, SOLVERS[name](), x[i : i + 1], grids[i : i + 1]) for i in range(3)]
        )
        assert torch.isfinite(together).all()
        err = float((together - alone).abs().max() / alone.abs().max())
        assert err < tol, (name, type(flow).__name__, err)
        checked += 1
    assert checked >= 2
