"""fr.UniPC on flow matching: UniPC in the log odds ``log(t/(1 − t))`` (flow matching's log
noise-to-signal ratio), with the limits at the start ``σ = ∞``.

Ground truth: diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True)`` run step by step on
the same grid (it starts at ``σ = 1 − 10⁻⁶``), the weights' closed forms at ``σ = ∞``, the limit
of solves starting at ``1 − δ`` as ``δ → 0``, and the exact Gaussian flow map for the order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.flows.base import TimeVariable
from flowrestore.oracles import GaussianFlowMatchingOracle
from flowrestore.solvers.semilinear import odds_weights, semilinear_weights

from .helpers import syncs_per_step, unipc_on_grid

F64 = torch.float64


def _problem(shift=3.0, dim=24, seed=5, batch=6):
    g = torch.Generator().manual_seed(seed)
    c = 0.5 * torch.randn(dim, generator=g, dtype=F64)
    sc = 0.05 + 0.95 * torch.rand(dim, generator=g, dtype=F64)
    oracle = GaussianFlowMatchingOracle(mean=c, std=sc)
    x1 = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    return oracle, fr.FlowMatchingFlow(oracle, shift=shift), x1


def _diffusers(oracle, x1, grid, order, lower_order_final=True):
    """diffusers' flow-matching UniPC on ``grid`` (float64 σ's), fed the oracle's velocity."""
    sched = unipc_on_grid(
        grid,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        solver_order=order,
        lower_order_final=lower_order_final,
    )
    z = x1.clone()
    for i, label in enumerate(sched.timesteps):
        z = sched.step(oracle(z, grid[i] * 1000), label, z).prev_sample
    return z


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [4, 7])
def test_unipc_is_diffusers_flow_matching_unipc_step_for_step(shift, steps):
    """On the flow's declared grid started where diffusers starts (``σ = 1 − 10⁻⁶``), ``UniPC()``
    is diffusers' flow-matching UniPC-2 (bh2, ``lower_order_final``, final σ = 0) to round-off."""
    oracle, flow, x1 = _problem(shift)
    grid = flow.default_spacing()(steps, 1.0, 0.0).to(F64)
    grid[0] = 1 - 1e-6
    sol = fr.solve(flow, fr.UniPC(), x1, grid=grid)
    assert int(sol.stats.nfe.max()) == steps
    assert _rel(sol.x, _diffusers(oracle, x1, grid, 2)) < 1e-12


@pytest.mark.parametrize("lof", [True, False])
def test_unipc3_short_of_zero_is_diffusers_with_and_without_lower_order_final(lof):
    oracle, flow, x1 = _problem(2.0, seed=7)
    grid = flow.default_spacing()(7, 1.0, 0.0).to(F64)[:-1]
    grid[0] = 1 - 1e-6
    x = fr.solve(flow, fr.UniPC(nodes=3, lower_order_final=lof), x1, grid=grid).x
    assert _rel(x, _diffusers(oracle, x1, grid, 3, lower_order_final=lof)) < 1e-12


def test_unipc3_onto_zero_is_diffusers_unipc3():
    oracle, flow, x1 = _problem(3.0, seed=8)
    grid = flow.default_spacing()(6, 1.0, 0.0).to(F64)
    grid[0] = 1 - 1e-6
    x = fr.solve(flow, fr.UniPC(nodes=3), x1, grid=grid).x
    assert _rel(x, _diffusers(oracle, x1, grid, 3)) < 1e-12


def test_the_weights_at_sigma_infinity_are_their_limits():
    """From ``t = 1`` (``σ_s/σ_t = 0``): one node weighs ``1 − s``; the two-node corrector
    ``(1 − s)[½, ½]`` with bh2, ``(1 − s)[1, 0]`` integrating exactly. A node at ``t = 1`` behind
    a later step drops out: the other nodes' exact weights. Each is the limit of the weights from
    ``1 − δ``, approached as ``1/|log δ|`` (a node at log-ratio ``|log δ|``) or faster."""
    one, s, t, u = (torch.tensor(v, dtype=F64) for v in (1.0, 0.6, 0.8, 0.9))
    assert torch.allclose(odds_weights(one, s, [one]), torch.tensor([0.4], dtype=F64))
    for bh, want in (("bh2", [0.2, 0.2]), (None, [0.4, 0.0])):
        assert torch.allclose(odds_weights(one, s, [s, one], bh), torch.tensor(want, dtype=F64))
    drop = odds_weights(t, s, [t, u])
    for bh in (None, "bh2"):
        got = odds_weights(t, s, [t, u, one], bh)
        assert torch.allclose(got, torch.cat([drop, torch.zeros(1, dtype=F64)]))
    got = odds_weights(t, s, [t, one], "bh2")
    assert torch.allclose(got, torch.tensor([0.4 * (1 - (0.6 / 0.4) / 4), 0.0], dtype=F64))

    def gap(delta, bh, nodes_of):
        near = torch.tensor(1 - delta, dtype=F64)
        limit = odds_weights(*nodes_of(one), bh)
        return float((odds_weights(*nodes_of(near), bh) - limit).abs().max())

    cases = {
        "corrector from the start": lambda a: (a, s, [s, a]),
        "oldest node at the start": lambda a: (t, s, [t, u, a]),
        "two-node step, oldest at the start": lambda a: (t, s, [t, a]),
    }
    for name, nodes_of in cases.items():
        for bh in (None, "bh2"):
            gaps = [gap(d, bh, nodes_of) for d in (1e-6, 1e-12)]
            assert gaps[1] <= 0.55 * gaps[0] + 1e-12, (name, bh, gaps)


def test_the_odds_weights_of_a_batch_are_each_samples_own():
    """Per-sample times (a batch whose rows stand at ``t = 1`` and below it, as many rows as
    nodes): each row's weights are those of that row alone, the limits at ``σ = ∞`` included."""
    t = torch.tensor([1.0, 0.7], dtype=F64)
    s = torch.tensor([0.6, 0.4], dtype=F64)
    for nodes in ([t, torch.tensor([0.9, 1.0], dtype=F64)], [s + 0.1, t]):
        for bh in (None, "bh2"):
            got = odds_weights(t, s, nodes, bh)
            for b in range(2):
                alone = odds_weights(t[b], s[b], [n[b] for n in nodes], bh)
                assert torch.allclose(got[b], alone, atol=1e-15), (b, bh)


def test_a_solve_from_t_1_is_the_limit_of_solves_from_1_minus_delta():
    """The solve from ``σ = ∞`` is the limit of diffusers-style starts ``1 − δ``: the gap shrinks
    as ``1/|log δ|`` (the far node's weight), halving from ``δ = 10⁻⁶`` to ``10⁻¹²``."""
    oracle, flow, x1 = _problem(3.0)
    grid = flow.default_spacing()(5, 1.0, 0.0).to(F64)
    at_one = fr.solve(flow, fr.UniPC(), x1, grid=grid).x
    gaps = []
    for delta in (1e-6, 1e-12):
        near = grid.clone()
        near[0] = 1 - delta
        gaps.append(_rel(fr.solve(flow, fr.UniPC(), x1, grid=near).x, at_one))
    assert 0.4 < gaps[1] / gaps[0] < 0.6, gaps
    assert torch.isfinite(at_one).all()


def test_the_odds_weights_integrate_in_sigma():
    """``odds_weights`` is ``(1 − s)`` times the log-variable weights of the σ's
    (``s ∫ P/τ² dτ = (s/σ_s) σ_s ∫ P/σ² dσ``), for finite σ."""
    t, s, u, v = (torch.tensor(x, dtype=F64) for x in (0.7, 0.3, 0.85, 0.95))
    odds = [x / (1 - x) for x in (t, s, t, u, v)]
    for bh in (None, "bh2"):
        want = (1 - s) * semilinear_weights(odds[0], odds[1], odds[2:], 0, bh)
        assert torch.allclose(odds_weights(t, s, [t, u, v], bh), want, atol=1e-15)


def test_unipc_has_order_three_on_flow_matching_short_of_zero():
    """Order 3 (UniP-2 + UniC) against the exact flow map from ``t = 0.8`` to ``0.3`` (without
    ``lower_order_final``, whose uncorrected first-order last step caps it at 2)."""
    oracle, flow, x1 = _problem(1.0, dim=16, batch=4)
    t0, t1 = 0.8, 0.3
    x0 = oracle.exact_map(x1, 1.0, t0)
    ref = oracle.exact_map(x1, 1.0, t1)
    levels, errs = [16, 32, 64, 128], []
    for n in levels:
        lsig = torch.linspace(math.log(t0 / (1 - t0)), math.log(t1 / (1 - t1)), n + 1, dtype=F64)
        grid = torch.sigmoid(lsig)  # uniform in the log odds
        solver = fr.UniPC(lower_order_final=False)
        errs.append(_rel(fr.solve(flow, solver, x0, grid=grid).x, ref))
    slope = -np.polyfit(np.log(levels), np.log(errs), 1)[0]
    assert abs(slope - 3) <= 0.3, (slope, errs)


def test_the_same_step_in_the_odds_and_the_refusals():
    """``SemiLinearMultistep(power=0, bh="bh2")`` on flow matching is ``UniPC()``; ``bh1``'s
    corrector weight is infinite from ``σ = ∞`` and refused; ``odds`` needs ``log_snr``."""
    oracle, flow, x1 = _problem(2.0)
    a = fr.solve(flow, fr.UniPC(), x1, steps=6).x
    b = fr.solve(flow, fr.SemiLinearMultistep(power=0, bh="bh2"), x1, steps=6).x
    assert torch.equal(a, b)
    with pytest.raises(fr.IncompatibleSolverError, match="bh='bh1' on FlowMatchingFlow"):
        fr.solve(flow, fr.UniPC(bh="bh1"), x1, steps=6)
    with pytest.raises(ConfigError, match="odds must be a bool, and True only with log_snr"):
        TimeVariable(odds=True)
    assert flow.time_variable() == TimeVariable(log_snr=True, odds=True)


def test_unipc_on_flow_matching_reads_nothing_on_the_host():
    """Every step from ``t = 1`` on (the limits are chosen on the device) takes no host sync."""
    oracle, flow, x = _problem(3.0, dim=8, batch=3)
    grid = flow.default_spacing()(5, 1.0, 0.0).to(F64)
    counts, x = syncs_per_step(flow, fr.UniPC(), grid, x)
    assert counts == [0] * len(counts), counts
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("nodes", [2, 3])
def test_unipc_on_flow_matching_compiles_whole(nodes):
    """The whole solve from ``t = 1`` (the limits chosen with ``torch.where``, the lower final
    orders from the steps left, a host int) traces as one graph and matches eager."""
    oracle, flow, x1 = _problem(3.0, dim=8, batch=3)

    def run(x):
        return fr.solve(flow, fr.UniPC(nodes=nodes), x, steps=5, check_finite=False).x

    torch._dynamo.reset()
    out = torch.compile(run, fullgraph=True, backend="aot_eager")(x1)
    torch.testing.assert_close(out, run(x1), rtol=1e-10, atol=1e-10)


def test_a_differentiable_solve_from_t_1_has_the_finite_difference_gradient():
    """The stand-ins for ``σ = ∞`` keep inf and NaN out of the backward pass too (BIRD
    differentiates through solves)."""
    oracle, flow, x1 = _problem(3.0, dim=8, batch=3)
    grid = flow.default_spacing()(5, 1.0, 0.0).to(F64)
    x = x1.clone().requires_grad_(True)
    fr.solve(flow, fr.UniPC(), x, grid=grid, differentiable=True).x.sum().backward()
    assert torch.isfinite(x.grad).all()
    e = torch.zeros_like(x1)
    e[1, 2] = 1e-6

    def f(z):
        return float(fr.solve(flow, fr.UniPC(), z, grid=grid).x.sum())

    fd = (f(x1 + e) - f(x1 - e)) / 2e-6
    assert abs(float(x.grad[1, 2]) - fd) < 1e-6 * max(1.0, abs(fd))
