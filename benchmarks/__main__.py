"""``python -m benchmarks [all|accuracy|fewnfe|overhead|gpu|dirac|fit] [--out DIR] [--quick]``.

Writes ``DIR/results.md`` (markdown tables, the machine, the time of the run) and plots; ``fit``
only prints its table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import subprocess
import sys
from pathlib import Path

from .common import machine


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "accuracy", "overhead", "gpu", "dirac", "fit", "fewnfe"],
    )
    p.add_argument("--out", default="benchmarks/out", help="output folder (default benchmarks/out)")
    p.add_argument("--quick", action="store_true", help="fewer repeats / samples (smoke run)")
    p.add_argument("--steps", type=int, default=50, help="steps of the overhead benchmark")
    p.add_argument("--repeats", type=int, default=7, help="timing repeats (min is reported)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        f"# flowrestore benchmarks ({a.what})",
        "",
        f"Machine: {machine()}",
        "",
        f"Run: {now}, `python -m benchmarks {' '.join(argv or sys.argv[1:])}`",
        "",
    ]
    if a.what == "fit":
        from . import accuracy

        print(accuracy.fit(quick=a.quick))
        return 0
    if a.what in ("all", "accuracy"):
        from . import accuracy

        gauss = accuracy.run_gaussian()
        mix = accuracy.run_mixture(n=1000 if a.quick else 4000)
        parts += ["## Accuracy per NFE", "", accuracy.report(gauss, mix, out), ""]
        print("accuracy done", flush=True)
    if a.what in ("all", "fewnfe"):
        from . import fewnfe

        results, problems = fewnfe.main(split="test", quick=a.quick)
        parts += [
            "## Few-NFE accuracy vs diffusers, iPNDM and k-diffusion (test split)",
            "",
            fewnfe.report(results, problems, "test", out),
            "",
        ]
        print("fewnfe done", flush=True)
    if a.what in ("all", "overhead"):
        from . import overhead

        rows = overhead.run(
            steps=10 if a.quick else a.steps, repeats=2 if a.quick else a.repeats, quick=a.quick
        )
        parts += [
            "## Loop overhead (CPU, near-free predictor)",
            "",
            f"Timed at {datetime.datetime.now().strftime('%H:%M')}; min over interleaved repeats.",
            "",
            overhead.report(rows),
            "",
        ]
        print("overhead done", flush=True)
    if a.what in ("all", "gpu"):
        from . import gpu

        parts += [
            "## GPU readiness (compiled and graph-replayed solves)",
            "",
            gpu.report(cpu=True, quick=a.quick),
            "",
        ]
    if a.what in ("all", "dirac"):
        parts += ["## Dirac batching", "", _dirac(out, a.quick), ""]
    text = "\n".join(parts)
    path = out / "results.md"
    path.write_text(text)
    print(text)
    print(f"\nwrote {path}")
    return 0


def _dirac(out: Path, quick: bool) -> str:
    here = Path(__file__).with_name("dirac_batching.py")
    if not here.exists() or importlib.util.find_spec("benchmarks.dirac_batching") is None:
        return "benchmarks/dirac_batching.py is not present: skipped."
    cmd = [sys.executable, "-m", "benchmarks.dirac_batching"]
    res = subprocess.run(
        cmd + (["--steps", "5", "--repeats", "1"] if quick else []), capture_output=True, text=True
    )
    body = res.stdout.strip() or res.stderr.strip()
    return body if res.returncode == 0 else f"dirac_batching failed:\n```\n{body[-2000:]}\n```"


if __name__ == "__main__":
    raise SystemExit(main())
