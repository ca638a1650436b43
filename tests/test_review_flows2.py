"""Review of the model flows (second pass): inputs a user passes that were mishandled.

References are diffusers' own schedulers (DDIM's loop), k-diffusion's Karras formula and the
documented refusals; every wrong input must be refused by name before any evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError, ConfigError, PredictorOutputError

diffusers = pytest.importorskip("diffusers")

F64 = torch.float64


def _ddim_loop(model, scheduler, x):
    """diffusers' deterministic DDIM sampler (eta = 0) run on ``model(x, timestep)``."""
    for k in scheduler.timesteps:
        out = model(x, k.reshape(1).expand(x.shape[0]).to(x.dtype))
        x = scheduler.step(out, k, x).prev_sample
    return x


class _NetXT(torch.nn.Module):
    """A network whose forward is ``forward(x, t)`` (no parameter called ``timestep``)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def forward(self, x, t):
        return torch.tanh(self.w * x + t.reshape(-1, *([1] * (x.dim() - 1))) / 1000)


def test_from_diffusers_takes_a_module_whose_forward_is_x_t():
    """``from_diffusers(model)`` wrapped every module whose second argument is not called
    ``timestep`` and called it ``forward(x, timestep=...)``: a ``forward(x, t)`` was refused
    ("needs ['t']: pass cond=...") although the docstring takes any model. It must load and
    reproduce diffusers' DDIM."""
    sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(6)
    net = _NetXT()
    flow = fr.DiffusionFlow.from_diffusers(net, sched)
    x = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        want = _ddim_loop(net, sched, x)
        got = fr.solve(flow, fr.Euler(), x, grid=flow.grid_from_scheduler(sched)).x
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5
    fm = fr.FlowMatchingFlow.from_diffusers(net, diffusers.FlowMatchEulerDiscreteScheduler())
    with torch.no_grad():
        v = fm.velocity(torch.tensor(0.5, dtype=F64), x)
    assert torch.allclose(v, net(x, torch.full((2,), 500.0, dtype=F64)))


def test_grid_from_timesteps_refuses_timesteps_that_do_not_decrease():
    """PNDM's timesteps repeat (PLMS warm-up) and a reversed list increases: the grid came back
    non-monotone and ``solve`` refused it later as "grid must be strictly monotone", never naming
    the timesteps. A final level above the last timestep's was appended the same way."""
    pndm = diffusers.PNDMScheduler()
    pndm.set_timesteps(10)
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=pndm.alphas_cumprod)
    repeated = r"timesteps must decrease strictly.*index \d+ \((\d+)\) and \d+ \(\1\)"
    with pytest.raises(ConfigError, match=repeated):
        flow.grid_from_scheduler(pndm)
    with pytest.raises(ConfigError, match="timesteps must decrease strictly"):
        flow.grid_from_timesteps([0, 500, 999])
    with pytest.raises(ConfigError, match="final_alpha_cumprod=1e-05"):
        flow.grid_from_timesteps([999, 500], final_alpha_cumprod=1e-5)
    with pytest.raises(ConfigError, match="real numbers"):
        flow.grid_from_timesteps(torch.tensor([999 + 1j, 500]))


def test_ddim_without_alpha_to_one_on_a_float64_table_reproduces_diffusers():
    """``set_alpha_to_one=False``: DDIM ends at its float32 ``ᾱ_0``, a hair above the float64
    table's ``σ_0`` of a flow built from the same betas: that end is the last timestep itself
    (the grid came back increasing at its end and ``solve`` refused it)."""
    sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    sched.set_timesteps(10)
    abar = torch.cumprod(1 - sched.betas.double(), 0)
    net = _NetXT()
    flow = fr.DiffusionFlow(net, alphas_cumprod=abar)
    grid = flow.grid_from_scheduler(sched)
    assert grid.numel() == 10 and bool((grid.diff() < 0).all())
    x = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        want = _ddim_loop(net, sched, x)
        got = fr.solve(flow, fr.Euler(), x, grid=grid).x
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5


@pytest.mark.parametrize("name", ["DDIMSchedular", "UNet2DModel"])
def test_a_config_naming_no_diffusers_scheduler_is_refused(name):
    """A config dict whose ``_class_name`` is a typo or no scheduler was silently read as a
    ``DDPMScheduler``, whose default ``clip_sample=True`` then clipped the clean estimate."""
    config = {"_class_name": name, "beta_schedule": "scaled_linear", "clip_sample": False}
    with pytest.raises(ConfigError, match=f"_class_name '{name}'"):
        fr.DiffusionFlow.from_diffusers(lambda x, k: x, config)


@pytest.mark.parametrize(
    ("config", "options", "match"),
    [
        ({"shift": None}, {}, "shift must be a finite number, got None"),
        ({"shift": "3"}, {}, "shift must be a finite number, got '3'"),
        ({"num_train_timesteps": 1000.7}, {}, "num_train_timesteps.*1000.7"),
        ({"num_train_timesteps": "1000"}, {}, "num_train_timesteps.*'1000'"),
        ({"use_dynamic_shifting": True}, {"mu": 1000.0}, r"mu must lie in \(-700, 700\)"),
        ({"use_dynamic_shifting": True}, {"image_seq_len": 0}, "image_seq_len must be a positive"),
        (
            {"use_dynamic_shifting": True, "base_image_seq_len": 256, "max_image_seq_len": 256},
            {"image_seq_len": 300},
            "base_image_seq_len = max_image_seq_len",
        ),
    ],
)
def test_flow_matching_config_values_are_refused_by_name(config, options, match):
    """A hand-written scheduler config raised a bare TypeError/ValueError/OverflowError/
    ZeroDivisionError, or truncated ``num_train_timesteps=1000.7`` to 1000 silently."""
    with pytest.raises(ConfigError, match=match):
        fr.FlowMatchingFlow.from_diffusers(lambda x, k: x, config, **options)


def test_flow_matching_config_takes_an_integral_float():
    flow = fr.FlowMatchingFlow.from_diffusers(lambda x, k: x, {"num_train_timesteps": 1000.0})
    assert flow.num_train_timesteps == 1000


def test_a_transformer_that_takes_sigma_as_timestep_is_refused():
    """Flux (and Chroma, Qwen-Image, ...) take ``timestep = σ`` and multiply it by 1000 (their
    pipelines pass ``timestep / 1000``); FlowMatchingFlow passes ``σ·T``: the network saw noise
    levels 1000 times too large and the flow returned a wrong velocity without an error."""
    net = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
        axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ConfigError, match="FluxTransformer2DModel takes timestep = sigma"):
        fr.FlowMatchingFlow.from_diffusers(net, sched, mu=1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=[0.9, 0.1], check_outputs=c),
        lambda c: fr.FlowMatchingFlow(lambda x, k: x, check_outputs=c),
        lambda c: fr.DenoiserFlow(lambda x, s: x, sigma_max=80.0, check_outputs=c),
        lambda c: fr.ODEFlow(lambda t, x: -x, check_outputs=c),
        lambda c: fr.SDEFlow(lambda t, x: -x, lambda t, x: x, check_outputs=c),
    ],
)
def test_check_outputs_must_be_a_bool(make):
    """``check_outputs="no"`` was read as True (``bool("no")``), the checks left on."""
    with pytest.raises(ArgumentTypeError, match="check_outputs must be a bool, got 'no'"):
        make("no")
    make(False)


def test_sde_diffusion_of_a_wrong_shape_is_refused_by_name():
    """``g`` returning a shape that does not broadcast to the state failed inside the solver's
    ``g·dW`` as a bare RuntimeError."""
    flow = fr.SDEFlow(lambda t, x: -x, lambda t, x: torch.ones(5, dtype=x.dtype))
    x = torch.ones(3, 2, dtype=F64)
    with pytest.raises(PredictorOutputError, match=r"g returned shape \(5,\).*\(3, 2\)"):
        fr.solve(flow, fr.EulerMaruyama(), x, grid=torch.linspace(0, 1, 3))
    ok = fr.SDEFlow(lambda t, x: -x, lambda t, x: torch.ones(3, 1, dtype=x.dtype))
    fr.solve(ok, fr.EulerMaruyama(), x, grid=torch.linspace(0, 1, 3))  # [B, 1] broadcasts


def test_edm_grid_takes_a_numpy_int_and_is_karras():
    """``edm_grid(np.int64(5))`` (a step count from numpy) was refused as "not a positive int";
    the grid is k-diffusion's ``get_sigmas_karras`` plus the final 0, in flow time."""
    flow = fr.DenoiserFlow(lambda x, s: x, sigma_max=80.0, sigma_min=0.002)
    grid = flow.edm_grid(np.int64(5)) * 80.0
    ramp = torch.linspace(0, 1, 5, dtype=F64)
    rho = 7.0
    want = (80.0 ** (1 / rho) + ramp * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
    assert torch.allclose(grid[:-1], want, rtol=1e-12) and float(grid[-1]) == 0.0


def test_grid_from_scheduler_names_a_scheduler_of_the_other_family():
    """A flow-matching scheduler handed to ``DiffusionFlow.grid_from_scheduler`` was refused for
    its timesteps ("must lie in [0, 999], got 1000.0"); a DDIM one handed to
    ``FlowMatchingFlow.grid_from_scheduler`` asked to "call set_timesteps first" (it had)."""
    fm_sched = diffusers.FlowMatchEulerDiscreteScheduler()
    fm_sched.set_timesteps(5)
    ddim = diffusers.DDIMScheduler()
    ddim.set_timesteps(5)
    diffusion = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=ddim.alphas_cumprod)
    with pytest.raises(ConfigError, match="got a FlowMatchEulerDiscreteScheduler.*FlowMatching"):
        diffusion.grid_from_scheduler(fm_sched)
    with pytest.raises(ConfigError, match="got a DDIMScheduler.*DiffusionFlow"):
        fr.FlowMatchingFlow(lambda x, k: x).grid_from_scheduler(ddim)


@pytest.mark.parametrize("kind", ["denoiser", "flow_matching"])
def test_a_model_that_modifies_its_input_in_place_is_refused(kind):
    """Flow matching and EDM hand the solver's state itself to the model: one that changed it in
    place (``x.add_(...)``, an in-place normalisation) moved the state and the solve came out
    several percent off without an error (InDIFlow and ODEFlow refused it already)."""
    from flowrestore.oracles.flow_matching import (
        GaussianDenoiserOracle,
        GaussianFlowMatchingOracle,
    )

    oracle = (GaussianDenoiserOracle if kind == "denoiser" else GaussianFlowMatchingOracle)(
        mean=0.3, std=0.5, event_shape=(4,)
    )

    def in_place(x, time):
        out = oracle(x, time)
        x.add_(0.01)
        return out

    if kind == "denoiser":
        flow = fr.DenoiserFlow(in_place, sigma_max=80.0)
    else:
        flow = fr.FlowMatchingFlow(in_place)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    with pytest.raises(PredictorOutputError, match="modified its input x in place"):
        fr.solve(flow, fr.Heun(), x, steps=4)
    unchecked = type(flow)(
        in_place, check_outputs=False, **({"sigma_max": 80.0} if kind == "denoiser" else {})
    )
    fr.solve(unchecked, fr.Heun(), x.clone(), steps=4)  # check_outputs=False: not watched


@pytest.mark.parametrize(
    ("flow", "scheduler"),
    [
        (fr.FlowMatchingFlow, "FlowMatchEulerDiscreteScheduler"),
        (fr.DiffusionFlow, "DDIMScheduler"),
    ],
)
def test_a_scheduler_class_instead_of_an_instance_is_refused_by_name(flow, scheduler):
    """``scheduler=diffusers.FlowMatchEulerDiscreteScheduler`` (the class, parentheses
    forgotten) raised a bare "TypeError: 'property' object is not iterable"."""
    with pytest.raises(ConfigError, match=f"got the class {scheduler}: pass {scheduler}"):
        flow.from_diffusers(lambda x, k: x, getattr(diffusers, scheduler))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_grid_from_scheduler_takes_timesteps_on_the_gpu():
    """Pipelines call ``set_timesteps(N, device="cuda")`` (and ``add_noise`` moves
    ``alphas_cumprod`` there): the grid mixed CUDA timesteps with the CPU table ("Expected all
    tensors to be on the same device"). The grid is the CPU one of the same scheduler."""
    cpu = diffusers.DDIMScheduler(clip_sample=False)
    cpu.set_timesteps(10)
    gpu = diffusers.DDIMScheduler(clip_sample=False)
    gpu.set_timesteps(10, device="cuda")
    gpu.alphas_cumprod = gpu.alphas_cumprod.to("cuda")
    flow = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=cpu.alphas_cumprod)
    assert torch.equal(flow.grid_from_scheduler(gpu), flow.grid_from_scheduler(cpu))


class _GuidedDiffusionStyle(torch.nn.Module):
    """OpenAI guided-diffusion's signature: ``forward(x, timesteps, y=None)``."""

    def forward(self, x, timesteps, y=None):
        return x * 0 + timesteps.reshape(-1, 1) / 1000


class _KeywordOnlyTimestep(torch.nn.Module):
    """A transformer whose timestep is keyword-only: ``forward(hidden_states, *, timestep)``."""

    def forward(self, hidden_states, *, timestep):
        return hidden_states * 0 + timestep.reshape(-1, 1) / 1000


@pytest.mark.parametrize("net", [_GuidedDiffusionStyle, _KeywordOnlyTimestep])
def test_from_diffusers_reaches_the_timestep_of_other_signatures(net):
    """``forward(x, timesteps, ...)`` was called with ``timestep=`` and refused ("needs
    ['timesteps']"); a keyword-only ``timestep`` second was called positionally (TypeError).
    Both receive the top timestep ``T − 1`` at ``t = 1``."""
    flow = fr.DiffusionFlow.from_diffusers(net(), diffusers.DDIMScheduler(clip_sample=False))
    out = flow.predict(torch.tensor(1.0), torch.ones(2, 3))
    torch.testing.assert_close(out, torch.full((2, 3), 0.999))
