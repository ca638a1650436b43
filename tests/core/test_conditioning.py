"""Per-sample conditioning follows the rows the loop steps (issue 18, item 3).

Under per-sample error control the loop steps only the unfinished samples; a flow's per-sample
fields (``cond=``, an observation) are selected with them by ``Flow.restrict``. Each test checks a
batch against its samples solved one by one (and against the closed form where there is one).
"""

from __future__ import annotations

import math

import pytest
import torch

import flowrestore as fr

from .helpers import gaussian_oracle, observations

F64 = torch.float64


def _decay_problem():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, generator=g, dtype=F64)
    k = torch.tensor([[0.1], [0.5], [1.0], [3.0], [8.0], [20.0]], dtype=F64)
    return x0, k


def test_issue_case_per_sample_rate_matches_each_sample_alone():
    """``dx/dt = −k x`` with ``k`` per sample: the issue's call, which failed mid-solve with
    "size 6 must match 5" when the fast samples finished first."""
    x0, k = _decay_problem()
    solver = fr.Dopri5(rtol=1e-6, atol=1e-6)
    flow = fr.ODEFlow(lambda t, x, k: -k * x, cond={"k": k})
    sol = fr.solve(flow, solver, x0, t_span=(0, 1))
    steps = sol.stats.steps
    assert int(steps.max()) > int(steps.min()) + 3, "samples must need different step counts"
    exact = x0 * torch.exp(-k)
    assert float(((sol.x - exact).abs() / (1e-6 + 1e-6 * exact.abs())).max()) < 5
    for i in range(x0.shape[0]):
        alone = fr.solve(
            fr.ODEFlow(lambda t, x, k: -k * x, cond={"k": k[i : i + 1]}),
            solver,
            x0[i : i + 1],
            t_span=(0, 1),
        )
        assert torch.equal(alone.x[0], sol.x[i]), i
        assert int(alone.stats.nfe[0]) == int(sol.stats.nfe[i])


def test_tensor_cond_is_passed_positionally():
    x0, k = _decay_problem()
    solver = fr.Bosh3(rtol=1e-6, atol=1e-8)
    by_kw = fr.solve(fr.ODEFlow(lambda t, x, k: -k * x, cond={"k": k}), solver, x0, t_span=(0, 1))
    by_pos = fr.solve(fr.ODEFlow(lambda t, x, c: -c * x, cond=k), solver, x0, t_span=(0, 1))
    assert torch.equal(by_kw.x, by_pos.x)


def test_conditioned_indi_predictor_under_per_sample_control():
    """A predictor conditioned on a per-sample prior mean: ``F(x, t, shift) = F₀(x − shift, t) +
    shift`` is the posterior mean of the shifted prior, whose flow map is known in closed form."""
    oracle = gaussian_oracle(seed=3, dim=10)
    y = observations(oracle, n=5, seed=4)
    shift = torch.linspace(-3, 3, 5, dtype=F64)[:, None] * torch.ones(1, 10, dtype=F64)
    y = y + shift
    y[2] = oracle.mean + shift[2] + 1e-3 * (y[2] - oracle.mean - shift[2])  # an easy sample

    def predictor(x, t, shift):
        return oracle(x - shift, t) + shift

    solver = fr.Dopri5(rtol=1e-7, atol=1e-9)
    sol = fr.solve(fr.InDIFlow(predictor, cond={"shift": shift}), solver, y)
    exact = oracle.ode_solution(y - shift, 0.0) + shift
    assert float((sol.x - exact).abs().max()) < 1e-5
    assert len(set(sol.stats.nfe.tolist())) > 1
    for i in range(5):
        alone = fr.solve(
            fr.InDIFlow(predictor, cond={"shift": shift[i : i + 1]}), solver, y[i : i + 1]
        )
        assert torch.equal(alone.x[0], sol.x[i]), i


def test_landing_of_the_surviving_samples_sees_their_own_cond():
    """When a sample fails, the landing step onto t = 0 runs on the others only: their rows of
    ``cond`` (and of the observation) must follow."""
    oracle = gaussian_oracle(seed=3, dim=10)
    y = observations(oracle, n=3, seed=8)
    shift = torch.tensor([[0.0], [2.0], [-1.0]], dtype=F64) * torch.ones(1, 10, dtype=F64)
    y = y + shift
    y[1] = oracle.mean + shift[1] + 1e-4 * (y[1] - oracle.mean - shift[1])  # finishes early

    def predictor(x, t, shift):
        return oracle(x - shift, t) + shift

    solver = fr.Dopri5(rtol=1e-9, atol=1e-11, max_steps=12)
    sol = fr.solve(fr.InDIFlow(predictor, cond={"shift": shift}), solver, y, on_failure="return")
    assert sol.stats.status.tolist() == [1, 0, 1]
    alone = fr.solve(fr.InDIFlow(predictor, cond={"shift": shift[1:2]}), solver, y[1:2])
    assert torch.equal(sol.x[1], alone.x[0])
    assert float(sol.t_final[1]) == 0.0


def test_sde_cond_reaches_drift_and_diffusion():
    x0 = torch.ones(4, 2, dtype=F64)
    a = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=F64)[:, None]
    flow = fr.SDEFlow(
        lambda t, x, a: -a * x, lambda t, x, a: 0.1 * a * torch.ones_like(x), cond={"a": a}
    )
    sol = fr.solve(flow, fr.EulerMaruyama(), x0, t_span=(0.0, 1.0), steps=50, seeds=[1, 2, 3, 4])
    for i in range(4):
        alone = fr.SDEFlow(
            lambda t, x, a: -a * x,
            lambda t, x, a: 0.1 * a * torch.ones_like(x),
            cond={"a": a[i : i + 1]},
        )
        one = fr.solve(
            alone, fr.EulerMaruyama(), x0[i : i + 1], t_span=(0.0, 1.0), steps=50, seeds=[i + 1]
        )
        assert torch.equal(one.x[0], sol.x[i])
    assert float(sol.x[0].mean()) > math.exp(-0.5) - 0.3 > float(sol.x[3].mean())


@pytest.mark.parametrize(
    "cond, error, match",
    [
        ({"k": torch.ones(4, 1)}, fr.ShapeError, r"cond\['k'\] is per-sample .* batch size 6"),
        (torch.ones(2, 1), fr.ShapeError, "cond is per-sample"),
        ({"k": 3.0}, TypeError, r"cond\['k'\] must be a tensor"),
    ],
)
def test_cond_with_the_wrong_batch_is_refused_before_any_evaluation(cond, error, match):
    calls = []
    x0, _ = _decay_problem()
    with pytest.raises(error, match=match):
        flow = fr.ODEFlow(lambda t, x, k: calls.append(t) or -x, cond=cond)
        fr.solve(flow, fr.Dopri5(), x0, t_span=(0, 1))
    assert calls == []


def test_restrict_selects_every_per_sample_field():
    """A flow of one's own declares its per-sample fields; restrict selects them (dicts, tensors)
    and leaves shared (0-d) values and the original flow alone."""

    class Scaled(fr.ODE):
        per_sample_fields = ("gain", "extra")

        def __init__(self, gain, extra):
            self.gain, self.extra = gain, extra

        def drift(self, t, x):
            return -self.gain * x

    flow = Scaled(torch.arange(4.0)[:, None], {"w": torch.arange(4.0), "shared": torch.tensor(2.0)})
    sub = flow.restrict(torch.tensor([3, 1]))
    assert sub.gain.flatten().tolist() == [3.0, 1.0]
    assert sub.extra["w"].tolist() == [3.0, 1.0] and float(sub.extra["shared"]) == 2.0
    assert flow.gain.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert fr.ODEFlow(lambda t, x: -x).restrict(torch.tensor([0])) is not None


def test_dict_cond_is_passed_by_keyword():
    """``cond={"b": b, "a": a}`` reaches ``f(t, x, a, b)`` by name, whatever the dict's order:
    ``dx/dt = −a x + b`` has ``x(1) = b/a + (x0 − b/a) e^(−a)``."""
    a = torch.tensor([[0.5], [2.0]], dtype=F64)
    b = torch.tensor([[1.0], [-3.0]], dtype=F64)
    x0 = torch.ones(2, 2, dtype=F64)
    flow = fr.ODEFlow(lambda t, x, a, b: -a * x + b, cond={"b": b, "a": a})
    sol = fr.solve(flow, fr.RK4(), x0, t_span=(0.0, 1.0), steps=64)
    exact = b / a + (x0 - b / a) * torch.exp(-a)
    assert float((sol.x - exact).abs().max()) < 1e-8
