"""GPU-ready: a step of every guided method, and of the model flows, reads no device value on the
host (``tests/syncs.py``'s counter; a plain linear network stands in for the model, the oracles
validate their inputs on the host and are not part of a deployed solve)."""

from __future__ import annotations

import pytest
import torch
from syncs import SyncCounter
from versions import COMPILE_TRACES_ALL

import flowrestore as fr
from flowrestore.noise import GeneratorNoise
from flowrestore.oracles.diffusion import linear_alphas_cumprod
from flowrestore.solvers import Context

from .helpers import F64, SHAPE, operators


def _models():
    net = lambda x, t: 0.3 * x  # noqa: E731
    return {
        "diffusion": fr.DiffusionFlow(net, alphas_cumprod=linear_alphas_cumprod()),
        "flow_matching": fr.FlowMatchingFlow(net),
        "denoiser": fr.DenoiserFlow(net, sigma_max=80.0),
    }


@pytest.mark.parametrize("op_name", ["inpainting", "downsample", "blur"])
def test_guided_steps_do_not_synchronise(op_name):
    op = operators()[op_name]
    y = op.A(torch.randn(2, *SHAPE, dtype=F64))
    for model in _models().values():
        cases = [
            (fr.GuidedFlow(model, op, y, noise_std=0.1), fr.DDRMStep()),
            (fr.GuidedFlow(model, op, y, noise_std=0.1), fr.DPSStep()),
            (fr.DiffPIRFlow(model, op, y, noise_std=0.1), fr.DiffPIRStep()),
            (fr.DiffPIRFlow(model, op, y, noise_std=0.1), fr.Heun()),
            (model, fr.Heun()),
        ]
        for flow, solver in cases:
            ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
            ctx.index, ctx.step_index = None, 0
            x, state = solver.init(
                flow, torch.tensor(1.0, dtype=F64), torch.ones(2, *SHAPE, dtype=F64), ctx
            )
            t, h = torch.tensor(0.7, dtype=F64), torch.tensor(-0.2, dtype=F64)
            solver.step(flow, t, x, h, state, ctx)  # first step fills the operator's caches
            with SyncCounter() as sc:
                solver.step(flow, t, x, h, state, ctx)
            assert sc.count == 0, (type(flow).__name__, solver, sc.ops)


@pytest.mark.parametrize("make", [fr.DPSStep, fr.DDRMStep, fr.DiffPIRStep])
@pytest.mark.parametrize("noise", ["seeds", "generator"])
def test_compiled_guided_solves_equal_eager(make, noise):
    """The guided steps declare their draws (one normal per step), so ``compile=`` runs them
    from pre-drawn noise, equal to the eager solve (DDRM's start draws eagerly in ``init``)."""
    op = operators()["inpainting"]
    y = op.A(torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=F64))
    model = _models()["diffusion"]
    cls = fr.DiffPIRFlow if make is fr.DiffPIRStep else fr.GuidedFlow
    flow = cls(model, op, y, noise_std=0.05)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=F64)

    def solve(**kw):
        draws = (
            {"seeds": [4, 5, 6]}
            if noise == "seeds"
            else {"generator": torch.Generator().manual_seed(9)}
        )
        return fr.solve(flow, make(), x, steps=4, **draws, **kw).x

    if make is fr.DPSStep and not COMPILE_TRACES_ALL:  # requires_grad_ untraced before 2.13
        with pytest.raises(fr.ConfigError, match="could not capture this solve"):
            solve(compile={"backend": "eager"})
        return
    assert torch.equal(solve(compile={"backend": "eager"}), solve())
