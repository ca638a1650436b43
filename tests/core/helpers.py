"""Shared problems, spies and fitting helpers for the core solver tests (issue 2).

Ground truth is closed form only: :class:`flowrestore.oracles.GaussianOracle` (InDI ODE path at any
t, the discrete sampler's product formula) and :class:`flowrestore.oracles.DiracMixture`
(posterior weights), plus linear ODEs solved by ``matrix_exp``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import flowrestore as fr

F64 = torch.float64
EPS64 = torch.finfo(F64).eps


def grid_only(solver):
    """``solver`` without its default controller: ``solve`` then steps it on
    ``steps=``/``grid=``."""
    solver.controller = None
    return solver


#: every fixed-step RK solver of the package, with its declared order
RK_FIXED = {
    "Euler": (fr.Euler, 1),
    "Midpoint": (fr.Midpoint, 2),
    "Heun": (fr.Heun, 2),
    "RK4": (fr.RK4, 4),
    "Bosh3": (lambda: grid_only(fr.Bosh3()), 3),
    "Dopri5": (lambda: grid_only(fr.Dopri5()), 5),
}


def gaussian_oracle(
    seed: int = 0, dim: int = 100, std=(0.5, 1.5), noise_std: float = 0.8, h=None
) -> fr.oracles.GaussianOracle:
    """A GaussianOracle with random per-coordinate mean ~ N(0, 1) and σ_c ~ U(std)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(dim, generator=g, dtype=F64)
    sc = std[0] + (std[1] - std[0]) * torch.rand(dim, generator=g, dtype=F64)
    kw = {}
    if h is not None:
        kw["h"] = h[0] + (h[1] - h[0]) * torch.rand(dim, generator=g, dtype=F64)
    return fr.oracles.GaussianOracle(mean=c, std=sc, noise_std=noise_std, **kw)


def observations(oracle, n: int = 4, seed: int = 1) -> torch.Tensor:
    """``n`` observations ``y ~ p(y)`` in float64."""
    return oracle.sample(n, generator=torch.Generator().manual_seed(seed))[1]


def fit_order(hs, errs, floor: float) -> tuple[float, int]:
    """Least-squares slope of log(err) vs log(h) over the points above the round-off ``floor``."""
    h = np.asarray(hs, dtype=float)
    e = np.asarray(errs, dtype=float)
    keep = e > floor
    if keep.sum() < 5:
        raise AssertionError(f"fewer than 5 levels above round-off {floor:.2e}: errors {e}")
    slope = np.polyfit(np.log(h[keep]), np.log(e[keep]), 1)[0]
    return float(slope), int(keep.sum())


def roundoff_floor(exact: torch.Tensor) -> float:
    """Errors below this are round-off for states of ``exact``'s magnitude (float64)."""
    return 1e3 * EPS64 * float(exact.abs().max())


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


class Spy:
    """A predictor wrapper that records every time it is called with and forbids t == 0."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.times: list[torch.Tensor] = []
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x, t):
        self.times.append(t.detach().clone())
        if bool((t == 0).any()):
            raise AssertionError(f"predictor called at t == 0 (t={t.tolist()})")
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.predictor(x, t)

    def all_times(self) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in self.times])


def linear_system(dtype=F64):
    """``dx/dt = x Aᵀ`` (damped rotation) with its exact flow ``x0 expm(A T)ᵀ``."""
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=dtype)
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=dtype)

    def exact(T: float) -> torch.Tensor:
        return x0 @ torch.linalg.matrix_exp(A * T).T

    return fr.ODEFlow(lambda t, x: x @ A.T), x0, exact


def cos_decay(dtype=F64):
    """``dx/dt = −x cos t`` with ``x(T) = x0 exp(−sin T)`` (non-autonomous, from t = 0)."""
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=dtype)
    flow = fr.ODEFlow(lambda t, x: -x * torch.cos(t), time_shape="broadcast")
    return flow, x0, lambda T: x0 * math.exp(-math.sin(T))


FEW_STEP = {
    "Euler": fr.Euler,
    "Heun": fr.Heun,
    "Multistep-3": lambda: fr.SemiLinearMultistep(order=3),
    "IPNDM": fr.IPNDM,
    "DataIPNDM": fr.DataIPNDM,
}


def model_flows(device) -> dict:
    """Diffusion ε / v, flow-matching and EDM-denoiser flows over one smooth stand-in model whose
    constants live on ``device`` (the CUDA and meta-device tests)."""
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    w = torch.linspace(0.5, 1.5, 16, dtype=F64, device=device)

    def model(x, k):
        return torch.tanh(w * x) * (1 + k.reshape(-1, 1) / 2000)

    return {
        "diffusion-eps": fr.DiffusionFlow(model, alphas_cumprod=linear_alphas_cumprod()),
        "diffusion-v": fr.DiffusionFlow(
            model, alphas_cumprod=linear_alphas_cumprod(), prediction_type="v_prediction"
        ),
        "flow-matching": fr.FlowMatchingFlow(lambda x, t: model(x, 1000 * t)),
        "denoiser": fr.DenoiserFlow(lambda x, s: 0.3 * model(x, s), sigma_max=80.0),
    }
