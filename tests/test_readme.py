"""The README's usage example runs as written, and its CI blocks are what .ci/run executes."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_usage_example_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python usage block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
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
