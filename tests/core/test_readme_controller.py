"""README "Write your own controller": the block runs exactly as printed, and the controller it
defines meets its tolerance and resizes every accepted step by the rule it states."""

from __future__ import annotations

import ast
import contextlib
import io
import pathlib
import re

import pytest
import torch

import flowrestore as fr

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    i = text.index(f"<!-- {marker} -->")
    return re.search(r"```python\n(.*?)```", text[i:], flags=re.S).group(1)


@pytest.fixture(scope="module")
def namespace():
    block = _block("example:own-controller")
    for node in ast.parse(block).body:  # the controller is a few lines
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 < 12, node.name
    ns: dict = {"__name__": "readme_controller"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), ns)  # noqa: S102
    ns["printed"] = out.getvalue()
    return ns


def test_the_block_runs_and_meets_its_tolerance(namespace):
    sol, oracle, y = namespace["sol"], namespace["oracle"], namespace["y"]
    exact = oracle.ode_solution(y, 0.0)
    assert sol.status == "success"
    assert float(((sol.x - exact).abs() / (1e-8 + 1e-6 * exact.abs())).max()) < 5
    assert str(sol.stats.nfe.tolist()) in namespace["printed"]


class _Recorder(fr.Dopri5):
    def __init__(self):
        super().__init__()
        self.attempts = []

    def step(self, flow, t, x, h, state, ctx):
        res = super().step(flow, t, x, h, state, ctx)
        self.attempts.append((float(t), float(h), x.clone(), res.x.clone(), res.error.clone()))
        return res


def test_every_accepted_step_follows_the_stated_rule(namespace):
    ctrl = namespace["IController"](rtol=1e-10, atol=1e-12)
    solver = _Recorder()
    flow, y = namespace["flow"], namespace["y"][:1]
    fr.solve(flow, solver, y, controller=ctrl, t_end=0.05)
    k, checked = 5.0, 0  # Dopri5: k = min(5, 4) + 1
    steps = solver.attempts
    for (t, h, x, xn, err), (t_next, h_next, *_) in zip(steps, steps[1:], strict=False):
        scale = 1e-12 + 1e-10 * torch.maximum(x.abs(), xn.abs())
        e = float((err / scale).pow(2).mean().sqrt())
        if e > 1 or abs(t + h + h_next - 0.05) < 1e-12:
            continue
        assert t_next == pytest.approx(t + h, abs=1e-15)
        fac = min(max(0.9 * e ** (-1 / k), 0.2), 10.0)
        assert h_next == pytest.approx(h * fac, rel=1e-10)
        checked += 1
    assert checked >= 5
