"""Random mutations of the numerical modules: find rules that no test checks yet.

``python tools/random_mutate.py COUNT SEED [--out FILE] [--only PATH ...]`` picks ``COUNT``
random mutations (seeded) of the modules in :data:`MODULES` (``--only``: those under the paths
given) — a numeric constant scaled by 1.001, negated or moved by ±1, or
an arithmetic operator swapped (``+``↔``-``, ``*``↔``/``, ``**``→``*``), never inside a docstring
or an error message — applies each in a scratch copy of the working tree, runs the test folders
that own the module with ``-x`` and prints one JSON line per mutation (``rc`` 0: no test failed).
A survivor is either an equivalent mutation (read it) or a rule without a test: write the test,
then add the mutation by name to ``tools/mutate.py`` so it stays caught. Slow: up to a few
minutes per surviving mutation on two cores.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutate import ROOT, run_mutated  # noqa: E402  (one scratch-copy runner for both tools)

CORE, FEW = "tests/core", "tests/fewnfe"
#: module -> the test folders or files that own it
MODULES = {
    "flowrestore/integrate/choose_solver.py": ["tests/fewnfe/test_choose_solver.py"],
    "flowrestore/integrate/fit_table.py": [FEW],
    "flowrestore/solvers/runge_kutta.py": [CORE, FEW],
    "flowrestore/integrate/loop.py": [CORE],
    "flowrestore/integrate/solve.py": [CORE],
    "flowrestore/solvers/semilinear.py": [FEW, CORE, "tests/test_semilinear.py", "tests/diffusion"],
    "flowrestore/solvers/adams.py": [FEW, CORE, "tests/diffusion"],
    "flowrestore/solvers/reciprocal.py": [FEW, CORE, "tests/diffusion"],
    "flowrestore/solvers/indi.py": [CORE],
    "flowrestore/solvers/sde.py": [CORE, "tests/dirac", "tests/diffusion"],
    "flowrestore/solvers/dirac.py": ["tests/dirac", CORE],
    "flowrestore/solvers/guided.py": ["tests/guided"],
    "flowrestore/solvers/fitted.py": [FEW],
    "flowrestore/solvers/tableau.py": [CORE],
    "flowrestore/flows/diffusion.py": ["tests/diffusion", FEW, "tests/models"],
    "flowrestore/flows/flow_matching.py": ["tests/models", FEW, "tests/diffusion"],
    "flowrestore/flows/denoiser.py": ["tests/models", FEW],
    "flowrestore/flows/dirac.py": ["tests/dirac"],
    "flowrestore/flows/guided.py": ["tests/guided"],
    "flowrestore/flows/spectral.py": ["tests/guided", "tests/degradations"],
    "flowrestore/flows/estimates.py": ["tests/diffusion", CORE],
    "flowrestore/flows/indi.py": [CORE],
    "flowrestore/degradations/blur.py": ["tests/degradations", "tests/dirac"],
    "flowrestore/integrate/gits.py": [FEW],
    "flowrestore/integrate/weight_fitting.py": [FEW],
    "flowrestore/integrate/start.py": ["tests/fewnfe/test_analytic_start.py"],
    "flowrestore/integrate/refine.py": [FEW],
    "flowrestore/integrate/finish.py": [CORE, "tests/test_review_loop4.py"],
    "flowrestore/integrate/stepping.py": [CORE],
    "flowrestore/integrate/endpoint.py": [CORE, FEW],
    "flowrestore/grids.py": [FEW, CORE, "tests/diffusion"],
    "flowrestore/oracles/gaussian.py": ["tests/oracles", CORE],
    "flowrestore/oracles/mixture.py": ["tests/oracles", CORE, "tests/dirac"],
    "flowrestore/oracles/diffusion.py": ["tests/oracles", "tests/diffusion", "tests/models"],
    "flowrestore/oracles/flow_matching.py": ["tests/oracles", "tests/models", "tests/guided"],
    "flowrestore/oracles/posterior.py": ["tests/oracles", "tests/guided"],
    "flowrestore/schedules/library.py": [
        CORE,
        "tests/dirac",
        "tests/degradations/test_schedules.py",
    ],
    "flowrestore/controllers/pi.py": [CORE],
    "flowrestore/controllers/pid.py": [CORE],
    "flowrestore/controllers/error.py": [CORE],
    "flowrestore/controllers/fixed.py": [CORE, FEW],
    "flowrestore/inversion/blind.py": ["tests/inversion"],
    "flowrestore/inversion/latent.py": ["tests/inversion"],
    "flowrestore/inversion/objective.py": ["tests/inversion"],
    "flowrestore/training/losses.py": ["tests/training"],
    "flowrestore/training/tdist.py": ["tests/training"],
    "flowrestore/training/ema.py": ["tests/training"],
    "flowrestore/noise.py": [CORE, "tests/dirac"],
    "flowrestore/metrics.py": ["tests/test_metrics.py"],
    "flowrestore/degradations/_conv.py": ["tests/degradations", "tests/dirac", "tests/guided"],
    "flowrestore/degradations/motion.py": ["tests/degradations", "tests/diffusion/test_motion.py"],
    "flowrestore/degradations/inpainting.py": ["tests/degradations", "tests/guided"],
    "flowrestore/degradations/jpeg.py": ["tests/degradations"],
    "flowrestore/degradations/resample.py": ["tests/degradations", "tests/guided"],
    "flowrestore/degradations/noise.py": ["tests/degradations"],
    "flowrestore/degradations/scheduling.py": ["tests/degradations", "tests/dirac"],
    "flowrestore/degradations/families.py": ["tests/degradations", "tests/dirac"],
    "flowrestore/degradations/blind.py": ["tests/degradations", "tests/inversion"],
    "flowrestore/oracles/gaussian_mixture.py": ["tests/oracles", FEW],
    "flowrestore/oracles/generative.py": ["tests/oracles", "tests/inversion", "tests/guided"],
    "flowrestore/controllers/error_run.py": [CORE],
    "flowrestore/integrate/fitting.py": [FEW],
    "flowrestore/integrate/choose.py": [FEW],
    "flowrestore/flows/_model.py": ["tests/models", "tests/diffusion"],
    "flowrestore/flows/diffusers_io.py": ["tests/diffusion", "tests/models"],
    "flowrestore/tiling/plan.py": ["tests/test_tiling.py", "tests/test_restore.py"],
    "flowrestore/tiling/probe.py": ["tests/test_tiling.py", "tests/test_restore.py"],
    "flowrestore/restore/estimates.py": ["tests/test_restore.py", "tests/test_cli.py"],
    "flowrestore/imageio.py": ["tests/test_imageio.py", "tests/test_cli.py"],
    "flowrestore/schedules/base.py": [CORE, "tests/dirac", "tests/degradations/test_schedules.py"],
    "flowrestore/solvers/adapters.py": [CORE],
    "flowrestore/training/data.py": ["tests/training"],
    "flowrestore/methods/dirac.py": ["tests/dirac", CORE],
    "flowrestore/methods/indi.py": [FEW, "tests/test_pretrained.py"],
    "flowrestore/controllers/base.py": [CORE],
    "flowrestore/flows/base.py": [CORE, FEW],
    "flowrestore/oracles/_common.py": ["tests/oracles", CORE],
    "flowrestore/solvers/base.py": [CORE],
    "flowrestore/degradations/base.py": [
        "tests/degradations",
        "tests/dirac",
        "tests/core/test_device_resident.py",
    ],
    "flowrestore/tasks/__init__.py": [
        "tests/training",
        "tests/test_restore.py",
        "tests/test_cli.py",
    ],
    "flowrestore/tasks/blend.py": ["tests/training", "tests/test_restore.py", "tests/dirac"],
    "flowrestore/tiling/__init__.py": ["tests/test_tiling.py", "tests/test_restore.py"],
    "flowrestore/restore/planning.py": ["tests/test_restore.py", "tests/test_cli.py"],
    "flowrestore/pretrained/scores.py": ["tests/test_pretrained.py", "tests/test_demo.py"],
    "flowrestore/diagnostics.py": ["tests/test_diagnostics.py"],
    "flowrestore/restore/run.py": ["tests/test_restore.py", "tests/test_cli.py"],
    "flowrestore/training/trainer.py": ["tests/training"],
    "flowrestore/training/unet.py": ["tests/training", "tests/test_pretrained.py"],
    "flowrestore/methods/flows.py": ["tests/core/test_value_range.py", "tests/test_pretrained.py"],
    "flowrestore/flows/value_range.py": [
        "tests/core/test_value_range.py",
        "tests/test_pretrained.py",
    ],
    "flowrestore/solvers/torchsde_adapter.py": [
        "tests/dirac/test_torchsde_adapter.py",
        "tests/diffusion/test_sde.py",
    ],
    "flowrestore/tensors.py": ["tests/test_tensors.py", CORE],
    "flowrestore/restore/naming.py": ["tests/test_restore.py", "tests/test_cli.py"],
    "flowrestore/demo/toy.py": ["tests/test_demo.py"],
    "flowrestore/demo/photos.py": ["tests/test_demo.py"],
    "flowrestore/pretrained/__init__.py": ["tests/test_pretrained.py"],
    "flowrestore/cli.py": ["tests/test_cli.py"],
    "flowrestore/runtime.py": ["tests/test_cli.py", "tests/test_restore.py"],
    "flowrestore/errors.py": ["tests/core/test_errors.py", CORE],
    "flowrestore/training/cli.py": ["tests/training"],  # test_cli_options.py among them
    "flowrestore/integrate/compiled.py": [
        "tests/core/test_compile.py",
        "tests/test_compile_families.py",
    ],
    "flowrestore/methods/base.py": [CORE, "tests/test_pretrained.py"],
}
ERRORS = {"ConfigError", "ValueError", "ArgumentTypeError", "ShapeError", "GridError"}
SWAP = {"+": "-", "-": "+", "*": "/", "/": "*", "**": "*"}


def _parents(tree) -> dict[int, ast.AST]:
    return {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}


def _skipped(node, parents, docstrings) -> bool:
    """Inside a docstring, an f-string, a ``raise`` or an error's constructor call."""
    if id(node) in docstrings:
        return True
    p = parents.get(id(node))
    while p is not None:
        if isinstance(p, (ast.JoinedStr, ast.Raise)):
            return True
        if isinstance(p, ast.Call) and getattr(p.func, "id", getattr(p.func, "attr", "")) in ERRORS:
            return True
        p = parents.get(id(p))
    return False


def candidates(path: str) -> list[tuple[int, int, int, str]]:
    """Every ``(line, start column, end column, replacement)`` of the module at ``path``."""
    src = (ROOT / path).read_text()
    tree = ast.parse(src)
    lines = src.splitlines()
    parents = _parents(tree)
    docstrings = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    out = []
    for n in ast.walk(tree):
        if _skipped(n, parents, docstrings):
            continue
        if isinstance(n, ast.Constant) and type(n.value) in (int, float):
            if n.lineno != n.end_lineno:
                continue
            v = n.value
            if isinstance(v, int):
                new = [str(v + 1)] + ([str(v - 1)] if v > 0 else [])
            else:
                new = [repr(v * 1.001), repr(-v)] if v != 0 else ["1e-3"]
            out += [(n.lineno, n.col_offset, n.end_col_offset, s) for s in new]
        elif isinstance(n, ast.BinOp) and n.left.end_lineno == n.right.lineno:
            gap = lines[n.left.end_lineno - 1][n.left.end_col_offset : n.right.col_offset]
            op = gap.strip()
            if op in SWAP:
                at = n.left.end_col_offset + gap.index(op)
                out.append((n.left.end_lineno, at, at + len(op), SWAP[op]))
    return out


def run_one(path: str, line: int, c0: int, c1: int, new: str) -> dict:
    """Apply one mutation in a scratch copy (``tools/mutate.py``'s), run the module's tests."""
    lines = (ROOT / path).read_text().splitlines(keepends=True)
    old = lines[line - 1]
    lines[line - 1] = old[:c0] + new + old[c1:]
    t0 = time.time()
    proc = run_mutated(path, "".join(lines), MODULES[path], timeout=1500)
    # a hang is a failure, not a survivor
    rc, out = (-9, ["timed out"]) if proc is None else (proc.returncode, proc.stdout.splitlines())
    return {
        "file": path,
        "line": line,
        "old": old.strip(),
        "new": lines[line - 1].strip(),
        "rc": rc,
        "seconds": round(time.time() - t0),
        "caught_by": [s for s in out if s.startswith("FAILED")][:1] or out[-1:],
    }


def main(argv=None) -> int:
    """Command line (module docstring); exit 1 if any mutation survived."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument(
        "--only", action="append", default=None, help="mutate only modules under this path"
    )
    a = ap.parse_args(argv)
    mods = [p for p in MODULES if a.only is None or any(p.startswith(o) for o in a.only)]
    pool = [(p, *c) for p in mods if (ROOT / p).exists() for c in candidates(p)]
    survived = 0
    for pick in random.Random(a.seed).sample(pool, min(a.count, len(pool))):
        rec = run_one(*pick)
        survived += rec["rc"] == 0
        text = json.dumps(rec, ensure_ascii=False)
        print(text, flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(text + "\n")
    print(f"{survived} of {min(a.count, len(pool))} survived", file=sys.stderr)
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
