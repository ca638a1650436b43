"""DiffusionFlow and DiffusionSDE never make a step wait for the host (issue 17), compile whole,
and declare where error control should stop (``Flow.preferred_t_min``).

Each solver's ``step`` is called directly, as the loop calls it (0-d times of a fixed grid, and
per-sample ``[B]`` times for the ODE solvers, which run under per-sample error control): Euler and
Heun on the flow, Euler–Maruyama and SRA1 on its reverse SDE, for every prediction type and clean-
estimate clipping. The model is a plain callable, so every counted sync would be the flow's.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from syncs import SyncCounter

import flowrestore as fr
from flowrestore.noise import GeneratorNoise
from flowrestore.oracles.diffusion import linear_alphas_cumprod
from flowrestore.solvers import Context

from .helpers import F64, PREDICTION_TYPES, gaussian_problem

ABAR = linear_alphas_cumprod()
CLIPS = {"none": None, "clip": fr.ClipSample(1.0), "threshold": fr.DynamicThreshold(ratio=0.9)}


def _model(x, k):
    return torch.tanh(x) * (1 + k.reshape(-1, *([1] * (x.dim() - 1))) / 1000)


def _count(solver, flow, x, t, h):
    ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
    _, state = solver.init(flow, t, x, ctx)
    solver.step(flow, t, x, h, state, ctx)  # warm-up (per-dtype tables are cached here)
    with SyncCounter() as sc:
        out = solver.step(flow, t, x, h, state, ctx)
    assert torch.isfinite(out.x).all()
    return sc.count, dict(sc.ops)


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_no_host_sync_in_a_diffusion_step(ptype, clip):
    flow = fr.DiffusionFlow(_model, alphas_cumprod=ABAR, prediction_type=ptype, clip=CLIPS[clip])
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    shared = torch.tensor(0.6, dtype=F64), torch.tensor(-0.2, dtype=F64)
    per_sample = torch.tensor([0.9, 0.4, 0.05], dtype=F64), torch.tensor([-0.1, -0.2, -0.01])
    for solver in (fr.Euler(), fr.Heun()):
        for t, h in (shared, (per_sample[0], per_sample[1].to(F64))):
            count, ops = _count(solver, flow, x, t, h)
            assert count == 0, (type(solver).__name__, ptype, clip, t.dim(), ops)
    sde = flow.reverse_sde()
    for solver in (fr.EulerMaruyama(), fr.SRA1()):
        count, ops = _count(solver, sde, x, *shared)
        assert count == 0, (type(solver).__name__, ptype, clip, ops)


class _TinyModel(torch.nn.Module):
    """A convolution with a sinusoidal timestep embedding: a stand-in for a U-Net."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, timestep):
        emb = torch.sin(timestep / 100).reshape(-1, 1, 1, 1)
        return self.conv(x) * (1 + emb)


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_denoise_compiles_without_graph_breaks(ptype, clip):
    torch._dynamo.reset()
    torch.manual_seed(0)
    flow = fr.DiffusionFlow(
        _TinyModel(), alphas_cumprod=ABAR, prediction_type=ptype, clip=CLIPS[clip]
    )
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    compiled = torch.compile(flow.denoise, fullgraph=True, backend="eager")
    with torch.no_grad():
        for t in (torch.tensor(0.5), torch.tensor([0.7, 0.01])):
            torch.testing.assert_close(compiled(t, x), flow.denoise(t, x), rtol=1e-6, atol=1e-6)


def test_error_control_stops_where_the_flow_prefers():
    """A PIController without ``t_min`` stops the controlled part at the flow's declared
    ``preferred_t_min(rtol)`` (``σ = min(σ_0, √rtol/10)``, here below the controller's own default
    ``√rtol/10`` in ``t``), and an explicit ``t_min`` still wins."""
    oracle, flow = gaussian_problem("epsilon", dim=12)
    seen = []

    def model(x, k):
        seen.append(float(k.min()))
        return oracle(x, k)

    watched = fr.DiffusionFlow(model, alphas_cumprod=flow.alphas_cumprod)
    rtol = 1e-6
    expect = min(float(flow.sigmas[0]), math.sqrt(rtol) / 10) / flow.sigma_max
    assert watched.preferred_t_min(rtol) == pytest.approx(expect, rel=1e-12)
    assert fr.InDIFlow(lambda x, t: x).preferred_t_min(rtol) is None  # the base class: no view
    x_T = oracle.sample_latent(2, torch.Generator().manual_seed(3))
    for t_min, stop in ((None, expect), (1e-3, 1e-3)):
        seen.clear()
        ctrl = fr.PIController(rtol=rtol, atol=1e-6, t_min=t_min)
        fr.solve(watched, fr.Dopri5(), x_T, controller=ctrl)
        lowest = min(seen)  # the landing step evaluates at t_stop exactly
        assert watched.sigma_at(lowest) / watched.sigma_max == pytest.approx(stop, rel=1e-6)


class _GuidedModel(torch.nn.Module):
    """A class-conditional stand-in that also predicts its variance (twice the channels)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.embed = torch.nn.Embedding(3, 1)

    def forward(self, x, timestep, class_labels):
        emb = (
            torch.sin(timestep / 100).reshape(-1, 1, 1, 1)
            + self.embed(class_labels)[..., None, None]
        )
        return self.conv(x) * (1 + emb)


def test_guided_zero_snr_flow_with_learned_variance_never_syncs_and_compiles_whole():
    """Classifier-free guidance (doubled batch, rescale), the variance split and a zero-terminal-
    SNR schedule add no host read to a step, and the guided clean estimate traces whole."""
    from flowrestore.oracles.diffusion import zero_terminal_snr

    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 0])
    flow = fr.DiffusionFlow(
        _GuidedModel().double(),
        alphas_cumprod=zero_terminal_snr(ABAR),
        prediction_type="v_prediction",
        learned_variance=True,
        cond={"class_labels": labels},
        uncond={"class_labels": torch.full_like(labels, 2)},
        guidance_scale=4.0,
        guidance_rescale=0.7,
    )
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        for solver in (fr.Euler(), fr.Heun(), fr.IPNDM()):
            for t, h in (
                (torch.tensor(0.6, dtype=F64), torch.tensor(-0.2, dtype=F64)),
                (torch.tensor([0.9, 0.4, 0.05], dtype=F64), torch.tensor([-0.1, -0.2, -0.01])),
            ):
                count, ops = _count(solver, flow, x, t, h.to(F64))
                assert count == 0, (type(solver).__name__, t.dim(), ops)
        torch._dynamo.reset()
        compiled = torch.compile(flow.denoise, fullgraph=True, backend="eager")
        for t in (torch.tensor(0.5, dtype=F64), torch.tensor([0.7, 0.01, 1.0], dtype=F64)):
            torch.testing.assert_close(compiled(t, x), flow.denoise(t, x), rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 4),
    cols=st.integers(1, 40),
    q=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_row_quantile_is_torch_quantile(rows, cols, q, seed):
    """Dynamic thresholding's quantile (one sort, ``q`` on the host) equals ``torch.quantile``'s
    linear interpolation, whose own ``q`` check reads the device before torch 2.13."""
    from flowrestore.flows.estimates import row_quantile

    v = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=F64).abs()
    want = torch.quantile(v, q, dim=1)
    torch.testing.assert_close(row_quantile(v, q), want, rtol=1e-13, atol=1e-15)


def test_guarded_landing_never_syncs():
    """``IPNDM()``'s guarded landing on a diffusion model (flowrestore/solvers/adams.py, "The
    guarded landing") decides per sample on the device: with a full history, neither an interior
    step nor the step onto ``t = 0`` reads the device, with shared and per-sample times."""
    flow = fr.DiffusionFlow(_model, alphas_cumprod=ABAR, prediction_type="epsilon")
    x0 = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=F64)
    grid = torch.tensor([1.0, 0.3, 0.1, 0.02, 0.0], dtype=F64)
    for solver in (fr.IPNDM(), fr.IPNDM(landing_order=4), fr.DataIPNDM(landing_guard=True)):
        assert solver.guards_landing(flow)
        for per_sample in (False, True):
            ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
            x, state = solver.init(flow, grid[0], x0, ctx)
            for t, s in zip(grid[:-1], grid[1:], strict=True):
                t, h = (t.expand(3), (s - t).expand(3)) if per_sample else (t, s - t)
                with SyncCounter() as sc:
                    out = solver.step(flow, t, x, h, state, ctx)
                assert sc.count == 0, (repr(solver), float(s), dict(sc.ops))
                x, state = out.x, out.state
            assert torch.isfinite(x).all()


def test_analytic_first_step_never_syncs():
    """``start_estimate`` (flowrestore/solvers/adams.py, "The analytic first step"; IPNDM, its
    data form, UniPC and SemiLinearMultistep): the first step builds its value from the estimate
    on the device, a number or a tensor, with shared and per-sample times; no step reads the
    device."""
    flow = fr.DiffusionFlow(_model, alphas_cumprod=ABAR, prediction_type="epsilon")
    x0 = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=F64)
    grid = torch.tensor([1.0, 0.3, 0.1, 0.02, 0.0], dtype=F64)
    mean = torch.full((1, 2, 8, 8), 0.1, dtype=F64)
    for solver in (
        fr.IPNDM(start_estimate=mean),
        fr.DataIPNDM(start_estimate=0.1),
        fr.UniPC(start_estimate=mean),
        fr.SemiLinearMultistep(start_estimate=0.1),
    ):
        for per_sample in (False, True):
            ctx = Context(noise=GeneratorNoise(torch.Generator().manual_seed(0)))
            x, state = solver.init(flow, grid[0], x0, ctx)
            nfe = 0
            for t, s in zip(grid[:-1], grid[1:], strict=True):
                t, h = (t.expand(3), (s - t).expand(3)) if per_sample else (t, s - t)
                with SyncCounter() as sc:
                    out = solver.step(flow, t, x, h, state, ctx)
                assert sc.count == 0, (repr(solver), float(s), dict(sc.ops))
                x, state, nfe = out.x, out.state, nfe + out.nfe
            assert nfe == 3 and torch.isfinite(x).all()
