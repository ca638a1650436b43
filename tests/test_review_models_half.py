"""A diffusion model in float16 on a schedule whose largest noise level is above 256 (cosine,
zero terminal SNR: σ_max ≈ 2·10⁴), where σ² overflows float16 (review finding)."""

import pytest
import torch

import flowrestore as fr
from flowrestore.oracles.diffusion import (
    GaussianDiffusionOracle,
    linear_alphas_cumprod,
    zero_terminal_snr,
)


def _cosine_alphas_cumprod(T=1000, s=0.008):
    # Nichol & Dhariwal's cosine schedule with β capped at 0.999 (diffusers' squaredcos_cap_v2)
    f = lambda u: torch.cos((u / T + s) / (1 + s) * torch.pi / 2) ** 2  # noqa: E731
    k = torch.arange(T, dtype=torch.float64)
    betas = (1 - f(k + 1) / f(k)).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


SCHEDULES = {
    "zero_snr": (zero_terminal_snr(linear_alphas_cumprod()), ("v_prediction", "sample")),
    "cosine": (_cosine_alphas_cumprod(), ("v_prediction", "sample", "epsilon")),
}
CASES = [(name, pt) for name, (_, pts) in SCHEDULES.items() for pt in pts]


@pytest.mark.parametrize(("schedule", "prediction_type"), CASES)
@pytest.mark.parametrize("t", [1.0, 0.05])
def test_float16_model_flow_at_large_sigma_matches_float64(schedule, prediction_type, t):
    # before: (1 + σ²)^{-1/2} was computed in float16, σ² = inf above σ = 256, so the network saw
    # a zero input and a v-model's drift was exactly 0 (the solve did not move; an ε-model's clean
    # estimate was off by 5·10⁴)
    abar = SCHEDULES[schedule][0]
    std = torch.linspace(0.1, 1.0, 16, dtype=torch.float64)
    model = GaussianDiffusionOracle(
        mean=torch.zeros(16, dtype=torch.float64),
        std=std,
        alphas_cumprod=abar,
        prediction_type=prediction_type,
    )
    calls = []

    def half(x, timestep):
        calls.append(x.dtype)
        return model(x.double(), timestep.double()).to(x.dtype)

    exact = fr.DiffusionFlow(model, alphas_cumprod=abar, prediction_type=prediction_type)
    flow16 = fr.DiffusionFlow(half, alphas_cumprod=abar, prediction_type=prediction_type)
    assert exact.sigma_max > 256
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(4, 16, generator=g, dtype=torch.float64).clamp(-2.5, 2.5)
    tt = torch.full((4,), t, dtype=torch.float64)
    x = tt[:, None] * exact.sigma_max * eps + 0.3  # a state float16 holds
    v, v16 = exact.velocity(tt, x), flow16.velocity(tt.half(), x.half())
    assert v16.dtype == torch.float16 and calls == [torch.float16]
    assert float((v16.double() - v).abs().max() / v.abs().max()) < 2e-3
    if t < 1.0:  # D = x̄ − σ ε̂ at σ_max is ill-conditioned for an ε-model in any precision
        d, d16 = exact.denoise(tt, x), flow16.denoise(tt.half(), x.half())
        assert float((d16.double() - d).abs().max()) < 1e-2


class _HalfNet(torch.nn.Module):
    """A half-precision checkpoint of the exact v-model of a Gaussian prior: a float16 parameter
    (a gain of 1), refuses any input but float16, as a float16 diffusers UNet fails on float32,
    and returns float16."""

    def __init__(self, oracle, dtype=torch.float16):
        super().__init__()
        self.oracle = oracle
        self.gain = torch.nn.Parameter(torch.ones((), dtype=dtype))
        self.seen = []

    def forward(self, x, timestep):
        self.seen.append((x.dtype, timestep.dtype))
        if x.dtype != self.gain.dtype:
            raise RuntimeError(f"expected {self.gain.dtype} input, got {x.dtype}")
        out = self.oracle(x.double(), timestep.double())
        return (out * self.gain.double()).to(self.gain.dtype)


def test_a_half_precision_network_is_stepped_in_the_states_dtype():
    """A float16 network on a float32 state: its inputs are cast to float16 and its output back
    (it failed inside the network), so a zero-terminal-SNR schedule (σ_max ≈ 2.2·10⁴, where a
    float16 state overflows) is solved in float32 to float16's resolution of the network."""
    abar = zero_terminal_snr(linear_alphas_cumprod())
    std = torch.linspace(0.1, 1.0, 16, dtype=torch.float64)
    oracle = GaussianDiffusionOracle(
        mean=torch.zeros(16, dtype=torch.float64) + 0.2,
        std=std,
        alphas_cumprod=abar,
        prediction_type="v_prediction",
    )
    half = _HalfNet(oracle)
    flow = fr.DiffusionFlow(half, alphas_cumprod=abar, prediction_type="v_prediction")
    exact = fr.DiffusionFlow(oracle, alphas_cumprod=abar, prediction_type="v_prediction")
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(4, 16, generator=g)  # the model's units: the flow integrates x̄ = σ_max z
    assert float(flow.to_state(x_T, 1.0).abs().max()) > 65504  # inf as a float16 state
    sol = fr.solve(flow, fr.UniPC(), x_T, steps=8)
    ref = fr.solve(exact, fr.UniPC(), x_T.double(), steps=8)
    assert sol.x.dtype == torch.float32 and half.seen[0] == (torch.float16, torch.float16)
    err = (sol.x.double() - ref.x).norm(dim=1) / ref.x.norm(dim=1)
    assert float(err.max()) < 5e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_state_from_a_huge_noise_level_is_refused_before_any_evaluation(dtype):
    """x̄ ≈ σ_max z at σ_max ≈ 2.2·10⁴ overflows float16 and keeps 3 digits in bfloat16 (Euler
    was 100 % off without an error): refused, naming x_start and sigma; a part-way solve from
    below σ = 256, and the same start in float32, run."""
    abar = zero_terminal_snr(linear_alphas_cumprod())
    oracle = GaussianDiffusionOracle(
        mean=torch.zeros(16, dtype=torch.float64),
        std=torch.linspace(0.1, 1.0, 16, dtype=torch.float64),
        alphas_cumprod=abar,
        prediction_type="v_prediction",
    )
    net = _HalfNet(oracle, dtype)
    flow = fr.DiffusionFlow(net, alphas_cumprod=abar, prediction_type="v_prediction")
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(3))
    for f, solver in ((flow, fr.Euler()), (flow.reverse_sde(), fr.EulerMaruyama())):
        with pytest.raises(fr.ConfigError, match=r"x_start is torch\.(b?float16).*sigma = 2\.1"):
            fr.solve(f, solver, z.to(dtype), steps=4, seeds=[0, 1])
    assert net.seen == []
    t_low = 200.0 / flow.sigma_max  # sigma = 200
    part = fr.solve(flow, fr.Euler(), z.to(dtype), steps=4, t_span=(t_low, 0.0))
    assert part.x.dtype == dtype and bool(torch.isfinite(part.x).all())
    assert fr.solve(flow, fr.Euler(), z, steps=4).x.dtype == torch.float32
