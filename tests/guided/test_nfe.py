"""Each guided step reports the model evaluations it really made: ``sol.stats.nfe`` equals the
number of calls of the model (DPS, DDRM and DiffPIR evaluate it once per step)."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr

from .helpers import F64, SHAPE, model_flows, operators, prior, start


class Counted:
    """The model, counting the batch rows it is called on."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def __call__(self, x, t, *args, **kwargs):
        self.rows += x.shape[0]
        return self.model(x, t, *args, **kwargs)


def _flows(mean, std):
    counted = {}

    def count(name, model):
        counted[name] = Counted(model)
        return counted[name]

    return model_flows(mean, std, wrap=count), counted


STEPS = {
    "dps": lambda: fr.DPSStep(zeta=0.3),
    "ddrm": lambda: fr.DDRMStep(eta=0.85),
    "diffpir": lambda: fr.DiffPIRStep(zeta=0.3),
}


@pytest.mark.parametrize("model_name", ["diffusion", "flow_matching", "denoiser"])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_reported_evaluations_are_the_models_calls(step, model_name):
    op = operators()["inpainting"]
    mean, std = prior("inpainting")
    flows, counted = _flows(mean, std)
    x_T = start(model_name, 3, 4)
    y = op(torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(5), dtype=F64))
    kind = fr.DiffPIRFlow if step == "diffpir" else fr.GuidedFlow
    flow = kind(flows[model_name], op, y, noise_std=0.1)
    sol = fr.solve(flow, STEPS[step](), x_T, steps=5, generator=torch.Generator().manual_seed(6))
    nfe = sol.stats.nfe
    assert torch.equal(nfe, torch.full_like(nfe, int(nfe[0])))  # the same for every sample
    assert int(nfe.sum()) == counted[model_name].rows > 0
