"""Whole-solve capture and the compiled solve (issue 17, items 3–4).

* ``torch.compile(lambda y: fr.solve(...).x, fullgraph=True)`` traces a whole fixed-grid solve —
  planning, steps, landing, solution — with no graph break, and matches eager;
* ``fr.solve(..., compile=...)`` runs the loop's own step function compiled, equal to the eager
  solve (stochastic solvers through their pre-drawn noise tape), cached per input shape, with no
  host read per step; what it cannot capture is refused before any work.

The fast tests compile with the ``aot_eager``/``eager`` backends (the tracing is what is tested);
the inductor ones are marked ``slow`` (a cold CPU compile takes about a minute on 2 cores).
"""

from __future__ import annotations

import re

import pytest
import torch
from versions import needs_torch_2_13

import flowrestore as fr
from flowrestore.integrate import compiled as compiled_module

F64 = torch.float64
EAGER = {"backend": "eager"}


def _predictor(x, t):
    return 0.6 * x + 0.2 * torch.tanh(x) * t.reshape(-1, *([1] * (x.dim() - 1)))


def _y(dtype=torch.float32):
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _issue_solve(y):
    return fr.solve(
        fr.InDIFlow(_predictor),
        fr.Euler(),
        y,
        steps=8,
        check_finite=False,
        seeds=list(range(len(y))),
    ).x


@needs_torch_2_13
def test_the_issue_solve_has_no_graph_break():
    """The call of issue 17 (13 graph breaks before): one graph, no break."""
    explanation = torch._dynamo.explain(_issue_solve)(_y())
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
    assert explanation.graph_count == 1


@pytest.mark.parametrize(
    "solver",
    [fr.Heun(), fr.SemiLinearMultistep(), fr.NaiveSampler()],
    ids=lambda s: type(s).__name__,
)
@needs_torch_2_13
def test_whole_solve_fullgraph_matches_eager(solver):
    def run(y):
        return fr.solve(fr.InDIFlow(_predictor), solver, y, steps=4, check_finite=False).x

    y = _y()
    torch._dynamo.reset()
    out = torch.compile(run, fullgraph=True, backend="aot_eager")(y)
    torch.testing.assert_close(out, run(y), rtol=1e-5, atol=1e-5)


def test_odeflow_solve_fullgraph_matches_eager():
    def run(x0):
        flow = fr.ODEFlow(lambda t, x: -x * torch.cos(t)[:, None])
        return fr.solve(flow, fr.RK4(), x0, t_span=(0.0, 1.0), steps=5, check_finite=False).x

    x0 = torch.ones(2, 3)
    torch._dynamo.reset()
    out = torch.compile(run, fullgraph=True, backend="aot_eager")(x0)
    torch.testing.assert_close(out, run(x0), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_whole_solve_compiles_with_inductor_and_matches_eager():
    y = _y()
    torch._dynamo.reset()
    out = torch.compile(_issue_solve, fullgraph=True)(y)
    torch.testing.assert_close(out, _issue_solve(y), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ fr.solve(..., compile=...)
class _DeclaredEM(fr.EulerMaruyama):
    """Euler–Maruyama declaring its one Brownian increment per step."""

    def noise_draws(self):
        return ("increment",)


def _cases():
    sde = fr.SDEFlow(lambda t, x: -x, lambda t, x: 0.3 * torch.ones_like(x))
    flow = fr.InDIFlow(_predictor)
    return {
        "Euler": (flow, fr.Euler(), {}),
        "Heun-save": (flow, fr.Heun(), {"save_at": "steps"}),
        "Multistep-landing": (flow, fr.SemiLinearMultistep(), {}),
        "Heun-posterior-mean": (flow, fr.Heun(), {"output": "posterior_mean", "t_end": 0.3}),
        "InDI-brownian-seeds": (flow, fr.InDISampler(eps=0.2, brownian=True), {"seeds": [4, 5, 6]}),
        "InDI-brownian-generator": (flow, fr.InDISampler(eps=0.2, brownian=True), {"gen": 3}),
        "EM-declared": (sde, _DeclaredEM(), {"t_span": (0.0, 1.0), "gen": 7}),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_compiled_solve_equals_eager(name):
    flow, solver, kw = _cases()[name]
    y = _y(F64)

    def solve(**extra):
        args = dict(kw)
        if "gen" in args:
            args["generator"] = torch.Generator().manual_seed(args.pop("gen"))
        return fr.solve(flow, solver, y, steps=6, **args, **extra)

    eager = solve()
    for _ in range(2):  # compiled, then replayed from the cache
        comp = solve(compile=EAGER)
        assert torch.equal(comp.x, eager.x)
        assert torch.equal(comp.stats.nfe, eager.stats.nfe)
        assert torch.equal(comp.t_final, eager.t_final)
        if eager.trajectory is not None:
            assert torch.equal(comp.trajectory, eager.trajectory)


def test_compiled_solve_is_cached_per_shape():
    flow = fr.InDIFlow(_predictor)
    compiled_module._CACHE.clear()
    fr.solve(flow, fr.Euler(), _y(), steps=4, compile=EAGER)
    fr.solve(flow, fr.Euler(), _y() + 1, steps=4, compile=EAGER)
    assert len(compiled_module._CACHE) == 1
    fr.solve(flow, fr.Euler(), _y()[:2], steps=4, compile=EAGER)
    fr.solve(flow, fr.Euler(), _y(), steps=5, compile=EAGER)
    assert len(compiled_module._CACHE) == 3
    # another drift is another entry (and another answer)
    x0 = torch.ones(2, 3)
    decay, growth = fr.ODEFlow(lambda t, x: -x), fr.ODEFlow(lambda t, x: x)
    a = fr.solve(decay, fr.Euler(), x0, t_span=(0, 1), steps=4, compile=EAGER)
    b = fr.solve(growth, fr.Euler(), x0, t_span=(0, 1), steps=4, compile=EAGER)
    assert len(compiled_module._CACHE) == 5
    assert torch.allclose(a.x, x0 * 0.75**4) and torch.allclose(b.x, x0 * 1.25**4)


def test_compiled_solve_reports_non_finite_states_like_eager():
    def nan_late(x, t):
        return _predictor(x, t) * torch.where(t < 0.6, torch.nan, 1.0).reshape(-1, 1, 1, 1)

    for compile in (False, EAGER):
        with pytest.raises(fr.NonFiniteError, match=r"step 3 of 4 \(t=0.5 -> 0.25\)") as e:
            fr.solve(fr.InDIFlow(nan_late), fr.Euler(), _y(), steps=4, compile=compile)
        assert e.value.solution.stats.status.tolist() == [3, 3, 3]


class _UndeclaredEM(fr.EulerMaruyama):
    """A stochastic solver that does not say what it draws (the library's own declare theirs)."""

    def noise_draws(self):
        return None


@pytest.mark.parametrize(
    "solver, kw, match",
    [
        (fr.Dopri5(), {}, "PIController decides on the host after every step"),
        (fr.Euler(), {"steps": 4, "progress": True}, "progress bar"),
        (fr.Euler(), {"steps": 4, "callback": lambda *a: None}, "callback"),
        (fr.Euler(), {"steps": 4, "differentiable": True}, "differentiable"),
        (fr.Torchdiffeq("rk4"), {"steps": 4}, "Torchdiffeq keeps Python state"),
        (_UndeclaredEM(), {"steps": 4}, "does not declare its noise draws"),
    ],
)
def test_what_cannot_be_captured_is_refused_before_any_work(solver, kw, match):
    calls = []

    def pred(x, t):
        calls.append(t)
        return _predictor(x, t)

    flow = (
        fr.SDEFlow(lambda t, x: pred(x, t), lambda t, x: 0.1 * x)
        if isinstance(solver, fr.EulerMaruyama)
        else fr.InDIFlow(pred)
    )
    extra = {"t_span": (1.0, 0.0)} if isinstance(solver, fr.EulerMaruyama) else {}
    with pytest.raises(fr.ConfigError, match=match):
        fr.solve(flow, solver, _y(), compile=True, **kw, **extra)
    assert calls == []


def test_a_compile_value_torch_cannot_take_is_refused_before_any_work():
    """``compile=`` is a bool, one of ``torch.compile``'s modes or a dict of its arguments: an
    unknown mode string used to fail inside torch after planning; refused with a
    ``ConfigError`` naming ``compile`` and the value, by ``solve`` and ``prepare``."""
    calls = []

    def pred(x, t):
        calls.append(t)
        return _predictor(x, t)

    for compile in ("nonsense", "", "Default", 1, ["default"]):
        for plan in (fr.solve, fr.integrate.prepare):
            match = f"compile must be.*got {re.escape(repr(compile))}"
            with pytest.raises(fr.ConfigError, match=match):
                plan(fr.InDIFlow(pred), fr.Euler(), _y(), steps=4, compile=compile)
    assert calls == []
    from flowrestore.integrate.compiled import COMPILE_MODES, compile_options

    for mode in COMPILE_MODES:
        assert compile_options(mode, torch.device("cpu")) == {"mode": mode}


def test_a_wrong_noise_declaration_is_refused():
    class Undercounted(fr.InDISampler):
        def noise_draws(self):
            return ()

    class Overcounted(fr.InDISampler):
        def noise_draws(self):
            return ("normal", "normal")

    flow = fr.InDIFlow(_predictor)
    with pytest.raises(fr.ConfigError, match="does not match what its step draws"):
        fr.solve(flow, Undercounted(eps=0.1, brownian=True), _y(), steps=3, compile=EAGER)
    with pytest.raises(fr.ConfigError, match="declared 6 draws, its steps took 3"):
        fr.solve(flow, Overcounted(eps=0.1, brownian=True), _y(), steps=3, compile=EAGER)


@pytest.mark.slow
def test_compiled_solve_with_inductor_equals_eager():
    flow = fr.InDIFlow(_predictor)
    y = _y()
    eager = fr.solve(flow, fr.Heun(), y, steps=6)
    comp = fr.solve(flow, fr.Heun(), y, steps=6, compile=True)
    torch.testing.assert_close(comp.x, eager.x, rtol=1e-5, atol=1e-5)


def test_a_solve_the_tracer_cannot_capture_is_a_config_error():
    """A graph break inside the compiled steps (here the predictor's; before torch 2.13 also
    DPS's and Dirac guidance's ``requires_grad_``) is reported as one ``ConfigError`` naming the
    reason, and the failed compile is not cached."""

    def breaking(x, t):
        torch._dynamo.graph_break()
        return _predictor(x, t)

    before = len(compiled_module._CACHE)
    with pytest.raises(fr.ConfigError, match=r"compile=True could not capture.*compile=False") as e:
        fr.solve(fr.InDIFlow(breaking), fr.Euler(), _y(), steps=3, compile=EAGER)
    assert len(compiled_module._CACHE) == before
    message = str(e.value)
    # one line, naming the reason: the first line of the tracer's own message
    assert "\n" not in message and "graph_break" in message.lower(), message
    first = str(e.value.__cause__).strip().splitlines()[0]
    assert first in message
