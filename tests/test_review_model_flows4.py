"""Model flows review (fourth pass): classifier-free guidance's rescale per sample, a continuous-
timestep scheduler refused, spacings keyed by solver classes only."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr

F64 = torch.float64


def _shift_model(x, timestep, y):
    """A conditional velocity ``x + y`` (one value per sample, whatever the state's shape)."""
    return x + y.reshape((-1,) + (1,) * (x.dim() - 1))


@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 2, 3)])
def test_guidance_rescale_of_a_sample_does_not_depend_on_the_others(shape):
    """Lin et al.'s rescale ``φ g σ(c)/σ(g) + (1 − φ) g`` takes each sample's own standard
    deviations. On a ``[B]`` state ``std(dim=[])`` reduced over the whole batch, so each row
    was rescaled by the batch's spread: solved alone it gave another value. Per sample, a
    single value has no spread and stays the guided output."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=F64)
    y = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)

    def flow(rows):
        return fr.FlowMatchingFlow(
            _shift_model,
            cond={"y": y[rows]},
            uncond={"y": torch.zeros_like(y[rows])},
            guidance_scale=4.0,
            guidance_rescale=0.7,
        )

    t = torch.full((4,), 0.5, dtype=F64)
    batch = flow(slice(None)).predict(t, x)
    for i in range(4):
        alone = flow(slice(i, i + 1)).predict(t[i : i + 1], x[i : i + 1])
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-12, atol=1e-12)
    # the closed form per sample: c = x + y, g = x + 4y
    c = x + y.reshape((-1,) + (1,) * (x.dim() - 1))
    guided = x + 4 * y.reshape((-1,) + (1,) * (x.dim() - 1))
    if x[0].numel() == 1:
        torch.testing.assert_close(batch, guided)
    else:
        sc = c.reshape(4, -1).std(dim=1).reshape((-1,) + (1,) * (x.dim() - 1))
        sg = guided.reshape(4, -1).std(dim=1).reshape((-1,) + (1,) * (x.dim() - 1))
        torch.testing.assert_close(batch, 0.7 * guided * sc / sg + 0.3 * guided)


def test_a_scheduler_with_continuous_timesteps_is_refused():
    """diffusers' ``EulerDiscreteScheduler(timestep_type="continuous",
    prediction_type="v_prediction")`` calls its model with ``timestep = ¼ log σ``; the flow
    queried it at trained timesteps in ``[0, T − 1]`` (noise levels up to ``e^{4000}`` for that
    network) and returned wrong estimates without an error. Refused by name when the flow is
    built and when a grid is read from it; the discrete one still loads."""
    diffusers = pytest.importorskip("diffusers")
    seen = []

    def net(x, timestep):
        seen.append(timestep)
        return x * 0

    cont = diffusers.EulerDiscreteScheduler(
        timestep_type="continuous", prediction_type="v_prediction"
    )
    with pytest.raises(fr.ConfigError, match="timestep_type='continuous'"):
        fr.DiffusionFlow.from_diffusers(net, cont)
    with pytest.raises(fr.ConfigError, match="timestep_type='continuous'"):
        fr.DiffusionFlow.from_diffusers(net, dict(cont.config))
    flow = fr.DiffusionFlow.from_diffusers(
        net, diffusers.EulerDiscreteScheduler(prediction_type="v_prediction")
    )
    cont.set_timesteps(10)
    with pytest.raises(fr.ConfigError, match="timestep_type='continuous'"):
        flow.grid_from_scheduler(cont)
    assert seen == []


def test_spacings_keyed_by_a_class_that_is_no_solver_are_refused():
    """``spacings={fr.Karras: ...}`` (a spacing or flow class where a solver class belongs) was
    kept and never matched any solver, so the declared spacing was silently unused."""
    model = lambda x, timestep: x * 0  # noqa: E731
    with pytest.raises(fr.ArgumentTypeError, match="solver classes.*Karras"):
        fr.FlowMatchingFlow(model, spacings={fr.Karras: fr.Karras()})
    flow = fr.FlowMatchingFlow(model, spacings={fr.Euler: fr.Karras()})
    assert flow.declared_spacing(fr.Euler()) == fr.Karras()


def test_a_float16_reverse_sde_whose_drift_overflows_is_refused_before_any_evaluation():
    """The reverse SDE's drift ``2 (x̄ − D)/t = 2 σ_max ε̂`` scales with ``σ_max`` whatever the
    start: on a zero-terminal-SNR linear schedule (``σ_max ≈ 2.2·10⁴``) a float16 state from
    ``σ = 200`` (below :func:`check_half_state`'s 256) overflowed at the first step (a
    ``NonFiniteError`` after an evaluation). Refused before the model is called; bfloat16 and
    float32 run, and float16 on DDPM's schedule (``σ_max = 157``) too."""
    from flowrestore.oracles.diffusion import (
        GaussianDiffusionOracle,
        linear_alphas_cumprod,
        zero_terminal_snr,
    )

    calls = []

    def flow_on(abar):
        oracle = GaussianDiffusionOracle(
            mean=torch.zeros(16, dtype=F64),
            std=torch.full((16,), 0.5, dtype=F64),
            alphas_cumprod=abar,
            prediction_type="v_prediction",
        )

        def net(x, timestep):
            calls.append(x.dtype)
            return oracle(x.double(), timestep.double()).to(x.dtype)

        return fr.DiffusionFlow(net, alphas_cumprod=abar, prediction_type="v_prediction")

    flow = flow_on(zero_terminal_snr(linear_alphas_cumprod()))
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    span = (200.0 / flow.sigma_max, 0.0)
    with pytest.raises(fr.ConfigError, match=r"float16 and the reverse SDE's drift"):
        fr.solve(flow.reverse_sde(), fr.EulerMaruyama(), z.half(), steps=4, t_span=span)
    assert calls == []
    for dtype in (torch.bfloat16, torch.float32):
        sol = fr.solve(flow.reverse_sde(), fr.EulerMaruyama(), z.to(dtype), steps=4, t_span=span)
        assert bool(torch.isfinite(sol.x).all())
    ddpm = flow_on(linear_alphas_cumprod())
    sol = fr.solve(ddpm.reverse_sde(), fr.EulerMaruyama(), z.half(), steps=30, seeds=[0, 1])
    assert sol.x.dtype == torch.float16 and bool(torch.isfinite(sol.x).all())
