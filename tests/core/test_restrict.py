"""``Flow.restrict(rows)`` is the flow of those rows: for every flow family with per-sample data
(observations, conditioning, guidance's unconditional inputs, a guided method's measurement, the
flow a reverse SDE wraps), the restricted flow's drift, diffusion and clean estimate on
``x[rows]`` are the full flow's rows. The loop restricts a flow whenever it steps part of the
batch (per-sample error control, the landing of the samples that did not fail), so a field left
out pairs a sample with another sample's data — or fails on the row count."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64
B = 3
ROWS = torch.tensor([2, 0])


def _label_model(x, k, label=None):
    """A class-conditional stand-in: the output depends on the sample's own label."""
    shift = label.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return 0.3 * x + 0.1 * shift


def _cond():
    return {"label": torch.tensor([1.0, 2.0, 3.0], dtype=F64)}


def _diffusion(**kw):
    return fr.DiffusionFlow(
        _label_model, alphas_cumprod=linear_alphas_cumprod(), cond=_cond(), **kw
    )


def _guided_cfg():
    return _diffusion(uncond={"label": torch.zeros(B, dtype=F64)}, guidance_scale=3.0)


def _measured(cls):
    from flowrestore.degradations import Inpainting

    op = Inpainting(torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.3)
    y = op.A(torch.rand(B, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64))
    return cls(_guided_cfg(), op, y, noise_std=0.05)


FLOWS = {
    "InDI": lambda: fr.InDIFlow(
        lambda x, t, label=None: 0.5 * x + 0.1 * label.reshape(-1, 1, 1, 1),
        observation=torch.rand(B, 1, 4, 4, dtype=F64),
        cond=_cond(),
    ),
    "ODE": lambda: fr.ODEFlow(
        lambda t, x, label=None: -x * label.reshape(-1, 1, 1, 1), cond=_cond()
    ),
    "Diffusion-CFG": _guided_cfg,
    "FlowMatching": lambda: fr.FlowMatchingFlow(_label_model, cond=_cond()),
    "Denoiser": lambda: fr.DenoiserFlow(_label_model, sigma_max=80.0, cond=_cond()),
    "GuidedFlow": lambda: _measured(fr.GuidedFlow),
    "DiffPIRFlow": lambda: _measured(fr.DiffPIRFlow),
    "DiffusionSDE": lambda: _guided_cfg().reverse_sde(),
    "SDE": lambda: fr.SDEFlow(
        lambda t, x, label=None: -x * label.reshape(-1, 1, 1, 1),
        lambda t, x, label=None: 0.1 * label.reshape(-1, 1, 1, 1) * torch.ones_like(x),
        cond=_cond(),
    ),
}


@pytest.mark.parametrize("name", list(FLOWS))
def test_a_restricted_flow_is_the_flow_of_those_rows(name):
    flow = FLOWS[name]()
    x = torch.randn(B, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.tensor(0.4, dtype=F64)
    sub = flow.restrict(ROWS)
    if isinstance(flow, fr.GuidedFlow):  # stepped by its own solvers: estimate and measurement
        torch.testing.assert_close(sub.measurement_for(x[ROWS]), flow.measurement_for(x)[ROWS])
    if type(flow) is not fr.GuidedFlow:  # a GuidedFlow has no drift of its own
        torch.testing.assert_close(sub.drift(t, x[ROWS]), flow.drift(t, x)[ROWS])
    if isinstance(flow, fr.SDE):
        g_sub, g = sub.diffusion(t, x[ROWS]), flow.diffusion(t, x)  # may broadcast (additive)
        torch.testing.assert_close(g_sub.expand_as(x[ROWS]), g.expand_as(x)[ROWS])
    if flow.has_denoiser:
        torch.testing.assert_close(sub.denoise(t, x[ROWS]), flow.denoise(t, x)[ROWS])
    # the full flow is untouched
    torch.testing.assert_close(flow.denoise(t, x) if flow.has_denoiser else flow.drift(t, x),
                               FLOWS[name]().denoise(t, x) if flow.has_denoiser
                               else FLOWS[name]().drift(t, x))  # fmt: skip


def test_per_sample_error_control_on_a_guided_flow_solves_each_sample_as_if_alone():
    """DiffPIR under per-sample Dopri5 control, samples with their own labels and measurements
    (and so their own step counts): each row is the solve of that sample alone."""
    from flowrestore.degradations import Inpainting

    op = Inpainting(torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.3)
    y = op.A(torch.rand(B, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64))
    label = torch.tensor([1.0, 20.0, 300.0], dtype=F64)

    def flow_of(rows):
        model = fr.DiffusionFlow(
            _label_model, alphas_cumprod=linear_alphas_cumprod(), cond={"label": label[rows]}
        )
        return fr.DiffPIRFlow(model, op, y[rows], noise_std=0.05)

    x = torch.randn(B, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    solver = fr.Dopri5(rtol=1e-5, atol=1e-7)
    sol = fr.solve(flow_of(torch.arange(B)), solver, x)
    assert len(set(sol.stats.steps.tolist())) > 1  # the rows really stepped apart
    for i in range(B):
        alone = fr.solve(flow_of(torch.tensor([i])), solver, x[i : i + 1])
        torch.testing.assert_close(sol.x[i : i + 1], alone.x, rtol=1e-12, atol=1e-12)
        assert int(sol.stats.steps[i]) == int(alone.stats.steps[0])
