"""fr.UniPC: UniPC (Zhao et al. 2023) as SemiLinearMultistep's log-variable step with B(h).

Ground truth: diffusers' ``UniPCMultistepScheduler`` run step by step on the same grid (when
diffusers is installed), DPM-Solver++(2M)'s closed-form update (Lu et al. 2022, Algorithm 2) for
the two-node predictor, and the Gaussian diffusion oracle's exact flow map for the order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.solvers.semilinear import semilinear_weights

from .helpers import F64, gaussian_problem, syncs_per_step, unipc_on_grid


def _diffusers_unipc(flow, x_T, grid_t, order, solver_type, lower_order_final=True):
    """diffusers' scheduler on ``grid_t`` (flow time ``σ/σ_max``), fed the flow's clean estimate."""
    sig = [float(t) * flow.sigma_max for t in grid_t]
    sched = unipc_on_grid(
        torch.tensor(sig, dtype=F64),
        prediction_type="sample",
        solver_order=order,
        solver_type=solver_type,
        predict_x0=True,
        lower_order_final=lower_order_final,
    )
    alpha = [1 / math.sqrt(1 + s * s) for s in sig]
    z = flow.to_state(x_T, 1.0) * alpha[0]  # diffusers' state x = α (x̄), x̄ = x/α
    for i, label in enumerate(sched.timesteps):
        t = torch.tensor(grid_t[i], dtype=F64)
        d = flow.denoise(t, z / alpha[i])
        z = sched.step(d, label, z).prev_sample
    return flow.from_state(z / alpha[-1], float(grid_t[-1]))


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [4, 7])
def test_unipc_is_diffusers_unipc_step_for_step(ptype, steps):
    """``UniPC()`` with ``steps=N`` equals diffusers' UniPC-2 (bh2, data prediction,
    ``lower_order_final``, final σ = 0) run on the σ's of the flow's declared grid, to round-off."""
    oracle, flow = gaussian_problem(ptype, dim=24, seed=3)
    x_T = torch.randn(6, 24, generator=torch.Generator().manual_seed(1), dtype=F64)
    sol = fr.solve(flow, fr.UniPC(), x_T, steps=steps, save_at="steps")
    ref = _diffusers_unipc(flow, x_T, sol.ts.tolist(), 2, "bh2")
    assert int(sol.stats.nfe.max()) == steps
    assert float((sol.x - ref).norm() / ref.norm()) < 1e-10


@pytest.mark.parametrize("lof", [True, False])
@pytest.mark.parametrize("nodes", [2, 3])
@pytest.mark.parametrize("bh", ["bh1", "bh2"])
def test_unipc_short_of_zero_is_diffusers_with_and_without_lower_order_final(bh, nodes, lof):
    """On a grid ending at σ > 0 (diffusers' bh1 is NaN onto σ = 0: ``B(h) = h`` is infinite
    there), both B(h) equal diffusers' UniPC-2 and UniPC-3, with ``lower_order_final`` (the last
    ``nodes − 1`` steps of lower order; the loop tells the solver how many steps are left) and
    without."""
    oracle, flow = gaussian_problem("epsilon", dim=24, seed=4)
    x_T = torch.randn(6, 24, generator=torch.Generator().manual_seed(2), dtype=F64)
    grid = fr.Karras(rho=7.0)(6, 1.0, 0.05 / flow.sigma_max)
    solver = fr.UniPC(bh=bh, nodes=nodes, lower_order_final=lof)
    x = fr.solve(flow, solver, x_T, grid=grid).x
    ref = _diffusers_unipc(flow, x_T, grid.tolist(), nodes, bh, lower_order_final=lof)
    assert float((x - ref).norm() / ref.norm()) < 1e-10


@pytest.mark.parametrize("steps", [4, 5, 7])
def test_unipc3_is_diffusers_unipc3_onto_zero(steps):
    """``UniPC(nodes=3)`` with ``steps=N`` is diffusers' ``solver_order=3`` (its second-to-last
    step second order, its last first order) on the σ's of the flow's declared grid."""
    oracle, flow = gaussian_problem("v_prediction", dim=24, seed=6)
    x_T = torch.randn(6, 24, generator=torch.Generator().manual_seed(4), dtype=F64)
    sol = fr.solve(flow, fr.UniPC(nodes=3), x_T, steps=steps, save_at="steps")
    ref = _diffusers_unipc(flow, x_T, sol.ts.tolist(), 3, "bh2")
    assert float((sol.x - ref).norm() / ref.norm()) < 1e-10


def test_the_two_node_predictor_is_dpm_solver_pp_2m():
    """bh2's two-node step is DPM-Solver++(2M): ``x_s = (σ_s/σ_t) x + (1 − e^{−h})[(1 + 1/(2ρ))
    D_t − D_u/(2ρ)]`` with ``h = λ_s − λ_t``, ``ρ = (λ_t − λ_u)/h`` (in ``x̄``, ``α = 1``); bh1 uses
    ``h/2`` for ``(1 − e^{−h})/2``; without ``bh`` the linear interpolant is integrated exactly."""
    u, t, s = (torch.tensor(v, dtype=F64) for v in (0.9, 0.4, 0.15))
    h, rho = math.log(0.4 / 0.15), math.log(0.9 / 0.4) / math.log(0.4 / 0.15)
    e = 1 - math.exp(-h)
    want = {
        "bh2": [e * (1 + 1 / (2 * rho)), -e / (2 * rho)],
        "bh1": [e + h / (2 * rho), -h / (2 * rho)],
        None: [e + (h - e) / (h * rho), -(h - e) / (h * rho)],  # ∫ e^{−(h−v)} v dv / h = (h − e)/h
    }
    for bh, w in want.items():
        got = semilinear_weights(t, s, [t, u], 0, bh)
        assert torch.allclose(got, torch.tensor(w, dtype=F64), atol=1e-14), (bh, got, w)
    # three nodes are integrated exactly whatever B(h) (UniPC solves its order conditions)
    three = [t, u, torch.tensor(1.0, dtype=F64)]
    for bh in ("bh1", "bh2"):
        assert torch.equal(
            semilinear_weights(t, s, three, 0, bh), semilinear_weights(t, s, three, 0)
        )


@pytest.mark.parametrize(
    ("bh", "lof", "order"), [("bh1", False, 3), ("bh2", False, 3), ("bh2", True, 2)]
)
def test_unipc_has_order_three_short_of_zero(bh, lof, order):
    """Order 3 (UniP-2 + UniC) against the exact flow map, on grids ending at σ = 0.5; 2 with
    ``lower_order_final`` (the last step first order and not corrected, as in diffusers)."""
    oracle, flow = gaussian_problem("epsilon", dim=16, seed=5)
    x_T = torch.randn(4, 16, generator=torch.Generator().manual_seed(2), dtype=F64)
    t_end = 0.5 / flow.sigma_max
    # the closed form: x̄(σ) = c + √(σ_c² + σ²) z, z fixed by x̄(σ_max) (helpers' docstring)
    c, var = oracle.mean, oracle.std**2
    xbar = flow.to_state(x_T, 1.0)
    z = (xbar - c) / torch.sqrt(var + flow.sigma_max**2)
    ref = flow.from_state(c + torch.sqrt(var + 0.25) * z, t_end)
    levels = [32, 64, 128, 256]
    errs = []
    for n in levels:
        grid = torch.exp(torch.linspace(0.0, math.log(t_end), n + 1, dtype=F64))
        x = fr.solve(flow, fr.UniPC(bh=bh, lower_order_final=lof), x_T, grid=grid).x
        errs.append(float((x - ref).norm() / ref.norm()))
    slope = -np.polyfit(np.log(levels), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.3, (slope, errs)


def test_bh_is_refused_without_the_log_variable():
    with pytest.raises(ConfigError, match="bh must be None, 'bh1' or 'bh2'"):
        fr.SemiLinearMultistep(bh="bh2")
    with pytest.raises(ConfigError, match="bh="):
        fr.UniPC(bh="bh3")
    with pytest.raises(ConfigError, match="power=1"):
        fr.UniPC(power=1)
    assert repr(fr.UniPC()).startswith("UniPC(order=3, nodes=2, power=0")
    assert repr(fr.UniPC()).endswith("lower_order_final=True)")
    with pytest.raises(ConfigError, match="lower_order_final must be a bool, got"):
        fr.UniPC(lower_order_final=1)


def test_unipc_steps_only_flows_that_declare_their_log_snr():
    """Diffusion and EDM flows declare ``log_snr`` (``t = σ/σ_max``), flow matching its odds
    (``σ = t/(1 − t)``, tests/diffusion/test_unipc_flow_matching.py); InDI and plain ODEs do not,
    and are refused before any evaluation."""
    calls = []

    def counted(x, t):
        calls.append(1)
        return torch.zeros_like(x)

    _, flow = gaussian_problem("epsilon", dim=4, seed=1)
    fr.UniPC().check_flow(flow)
    fr.UniPC().check_flow(fr.DenoiserFlow(lambda x, s: torch.zeros_like(x), sigma_max=80.0))
    fr.UniPC().check_flow(fr.FlowMatchingFlow(lambda x, t: torch.zeros_like(x)))
    indi = fr.InDIFlow(counted)
    with pytest.raises(fr.IncompatibleSolverError, match="log_snr=False"):
        fr.solve(indi, fr.UniPC(), torch.zeros(2, 4), steps=4)
    # the same step in log t stays available on any residual flow
    fr.solve(indi, fr.SemiLinearMultistep(power=0, bh="bh2"), torch.zeros(2, 4), steps=4)
    assert len(calls) == 4  # the refused solve evaluated nothing
    with pytest.raises(ConfigError, match="log_snr must be a bool"):
        fr.flows.base.TimeVariable(log_snr=1)


def test_unipc_steps_read_nothing_on_the_host():
    """Warm steps with a history (two- and three-node weights, the step onto 0) take no host sync
    (counted on CPU with a TorchDispatchMode: the same ops sync on CUDA)."""
    _, flow = gaussian_problem("epsilon", dim=8, seed=2)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    grid = flow.default_spacing()(5, 1.0, 0.0)
    counts, x = syncs_per_step(flow, fr.UniPC(), grid, flow.to_state(x, 1.0))
    assert counts[1:] == [0] * (len(counts) - 1), counts
    assert torch.isfinite(x).all()
