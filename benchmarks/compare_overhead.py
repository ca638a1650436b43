"""Loop overhead before and after a change, side by side in one run.

``python benchmarks/compare_overhead.py --base REV [--rounds 5] [--steps 100] [--repeats 5]``
checks ``REV`` out into a temporary git worktree and runs ``benchmarks/overhead.py``'s cases from
that tree and from this one alternately, ``rounds`` times each, in fresh processes (one thread),
keeping the minimum per case: machine load affects both the same way. Prints a markdown table of
flowrestore's µs/step before and after, the hand-written loop's µs/step in each process (a noise
reference: it is the same code in both), and the ratio after/before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tree!r})
from benchmarks import overhead
rows = overhead.run(steps={steps}, repeats={repeats})
print(json.dumps([{{k: r[k] for k in ("case", "method", "fr_us", "nocheck_us", "plain_us")}}
                  for r in rows]))
"""


def _measure(tree: Path, steps: int, repeats: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    code = CHILD.format(tree=str(tree), steps=steps, repeats=repeats)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision to compare against")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fr-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), a.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            best: dict[tuple, dict] = {}
            for _ in range(a.rounds):
                for label, tree in (("before", base), ("after", ROOT)):
                    for r in _measure(tree, a.steps, a.repeats):
                        key = (r["case"], r["method"], label)
                        old = best.get(key)
                        best[key] = (
                            r
                            if old is None
                            else {
                                k: min(old[k], r[k]) if isinstance(r[k], float) else r[k] for k in r
                            }
                        )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)],
                cwd=ROOT,
                check=False,
                capture_output=True,
            )
    print(
        f"Loop overhead, {a.base} (before) vs working tree (after): min over {a.rounds} "
        f"alternating rounds × {a.repeats} repeats, {a.steps} steps (fewer at batch 64), "
        "1 thread\n"
    )
    print(
        "| case | method | before µs/step | after µs/step | after/before | "
        "plain loop µs/step (before, after) | no-check before | no-check after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (case, method, label), r in best.items():
        if label != "before":
            continue
        b, n = r, best[(case, method, "after")]
        print(
            f"| {case} | {method} | {b['fr_us']:.1f} | {n['fr_us']:.1f} | "
            f"{n['fr_us'] / b['fr_us']:.2f} | {b['plain_us']:.1f}, {n['plain_us']:.1f} | "
            f"{b['nocheck_us']:.1f} | {n['nocheck_us']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
