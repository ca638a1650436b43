"""Every ```python block of README.md runs exactly as printed, and its CI blocks are what .ci/run
executes.

The runner is generic: each ```python block, in order, runs in a fresh namespace inside an empty
scratch folder (it may write files there), with no preamble. A block preceded by the marker line
``<!-- readme:slow -->`` (directly above its fence, other markers may sit between) is marked
``slow`` and runs only with ``-m slow``.
"""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SLOW_MARKER = "<!-- readme:slow -->"


def python_blocks(readme: pathlib.Path = ROOT / "README.md") -> list[tuple[int, str, bool]]:
    """``(line, code, slow)`` of every ```python block of ``readme``, in order."""
    lines = readme.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            j = start
            while lines[j].strip() != "```":
                j += 1
            k, markers = i - 1, []
            while k >= 0 and lines[k].strip().startswith("<!--"):
                markers.append(lines[k].strip())
                k -= 1
            blocks.append((start + 1, "\n".join(lines[start:j]) + "\n", SLOW_MARKER in markers))
            i = j
        i += 1
    return blocks


BLOCKS = python_blocks()


@pytest.mark.parametrize(
    "line,code",
    [
        pytest.param(line, code, marks=[pytest.mark.slow] if slow else [], id=f"line{line}")
        for line, code, slow in BLOCKS
    ],
)
def test_readme_block_runs_as_printed(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102


def test_the_runner_finds_every_block_and_the_slow_marker(tmp_path):
    text = (ROOT / "README.md").read_text()
    assert len(BLOCKS) == text.count("```python") >= 8
    readme = tmp_path / "README.md"
    readme.write_text(
        "x\n<!-- readme:slow -->\n<!-- example:a -->\n```python\nA = 1\n```\n"
        "```python\nB = 2\n```\n"
    )
    assert python_blocks(readme) == [(5, "A = 1\n", True), (8, "B = 2\n", False)]


def test_readme_usage_example_runs():
    namespace: dict = {}
    exec(compile(BLOCKS[0][1], "README.md", "exec"), namespace)  # noqa: S102
    sol = namespace["sol"]
    assert sol.x.shape == namespace["x"].shape


def test_ci_reads_both_readme_commands():
    script = ROOT / ".ci" / "run"
    out = subprocess.run(
        [
            "bash",
            "-c",
            "source <(sed -n '/^readme_block()/,/^}/p' .ci/run); "
            "readme_block ci:tests; readme_block ci:main-job",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "python -m pytest" in out and "flowrestore demo" in out
    assert script.exists()


def _block_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    i = text.index(f"<!-- {marker} -->")
    return re.search(r"```python\n(.*?)```", text[i:], flags=re.S).group(1)


def test_write_your_own_solver_examples_run_and_have_their_orders():
    import ast

    import numpy as np
    import torch

    import flowrestore as fr

    block = _block_after("example:own-solver")
    for node in ast.parse(block).body:  # each new solver is written in under 20 lines
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 < 20, node.name
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)  # noqa: S102
    kutta3, exp_mid = ns["Kutta3"], ns["ExpMidpoint"]
    # Kutta3 on dx/dt = -x: order 3
    x0 = torch.ones(2, 1, dtype=torch.float64)
    levels = [8, 16, 32, 64, 128]
    errs = [
        float(
            (
                fr.solve(fr.ODEFlow(lambda t, x: -x), kutta3(), x0, t_span=(0.0, 1.0), steps=n).x
                - np.exp(-1.0)
            )
            .abs()
            .max()
        )
        for n in levels
    ]
    slope = -np.polyfit(np.log(levels), np.log(errs), 1)[0]
    assert abs(slope - 3) < 0.2, (slope, errs)
    # ExpMidpoint on the InDI Gaussian oracle at t = 0: order 2, 2 NFE per step, no t = 0.
    # (Its midpoint is not the centroid of the weight s/τ², an O(h³/t) local error: on a uniform
    # grid that sums to h² log N near t = 0, so the grid is refined there.)
    oracle = fr.oracles.GaussianOracle(
        mean=torch.linspace(-1, 1, 16, dtype=torch.float64),
        std=torch.linspace(0.4, 1.2, 16, dtype=torch.float64),
        noise_std=0.8,
    )
    _, y = oracle.sample(4, generator=torch.Generator().manual_seed(1))
    exact = oracle.ode_solution(y, 0.0)
    seen = []

    def spy(x, t):
        seen.append(float(t.min()))
        return oracle.posterior_mean(x, t)

    errs = []
    for n in levels:
        sol = fr.solve(fr.InDIFlow(spy), exp_mid(), y, steps=n, spacing=fr.Power(2.0))
        assert sol.stats.nfe.tolist() == [2 * n] * 4
        errs.append(float((sol.x - exact).abs().max()))
    assert min(seen) > 0
    slope = -np.polyfit(np.log(levels), np.log(errs), 1)[0]
    assert abs(slope - 2) < 0.2, (slope, errs)
