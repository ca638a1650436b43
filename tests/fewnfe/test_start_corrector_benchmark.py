"""benchmarks/start_corrector.py: a small run scores ``IPNDM()`` with and without its corrected
start on an InDI Gaussian oracle that neither split uses, and the report's gain row is the ratio
of the two rows (flowrestore/solvers/adams.py, "The corrected start")."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import fewnfe_problems as P  # noqa: E402
from benchmarks import start_corrector  # noqa: E402


def test_a_small_run_reports_the_corrected_start_ahead_on_a_gaussian_oracle():
    problem = P.gaussian_indi("val", dim=32, batch=8, seeds=(71,))
    res = start_corrector.run_problem(problem)
    on, off = res["IPNDM() (corrected start)"], res["IPNDM(start_corrector=False)"]
    assert list(on) == list(start_corrector.NFES)
    for n in (4, 6, 8):  # 6–19× on the splits' instances: at least 3× on this one
        assert on[n] * 3 < off[n], (n, on[n], off[n])
    table = start_corrector.report(problem, res)
    gain = table.splitlines()[-1]
    assert gain.startswith("| corrected vs not |")
    assert f"{off[6] / on[6]:.2f}×" in gain


def test_random_oracles_count_cells_and_euler():
    """``--random``: one row per oracle of 8 step counts; on these three (seed 5) the corrected
    start is never behind Euler and never worse than the published update by more than 5 %."""
    lines = []
    out = start_corrector.random_main(3, 5, log=lines.append)
    assert out["cells"] == 24 and len(lines) == 2 + 3 + 1
    assert out["behind Euler"]["corrected"] == 0
    assert out["worst"] > 0.95 and out["geometric mean"] > 1.0
