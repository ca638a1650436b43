"""benchmarks/landing_guard.py: a small run scores ``IPNDM()`` with and without its guarded
landing, and Euler, on a stiff Gaussian-mixture EDM model that neither split uses (median
sample, as the benchmark scores mixtures); the report's last row is the published error over the
guarded one (flowrestore/solvers/adams.py, "The guarded landing")."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import landing_guard  # noqa: E402
from benchmarks import multimodal as M  # noqa: E402
from benchmarks.start_corrector import NFES, report, run_problem  # noqa: E402


def test_a_small_run_reports_the_guard_ahead_on_a_stiff_mixture():
    problem = M.make_problem("edm-80", 1.0, 0.02, 0.2, (41,), batch=32)
    res = run_problem(problem, landing_guard.ROWS, lambda _p, inst, x: M.scores(inst, x)[0])
    on, off = res["IPNDM() (guarded landing)"], res["IPNDM(landing_guard=False)"]
    assert list(on) == list(NFES) and set(res) == set(landing_guard.ROWS)
    for n in (4, 5):  # 2.0–2.3× on the splits' stiff mixtures: at least 1.5× on this one
        assert on[n] * 1.5 < off[n], (n, on[n], off[n])
    assert all(on[n] <= off[n] * 1.03 for n in NFES)
    gain = report(problem, res, "published / guarded").splitlines()[-1]
    assert gain.startswith("| published / guarded |")
    assert f"{off[4] / on[4]:.2f}×" in gain


def test_the_splits_hold_the_guarded_families_only():
    """Flow matching and InDI are not rows: the default does not guard there."""
    assert set(landing_guard.MIXTURE_FAMILIES) == {"edm-80", "linear/eps", "cosine/v"}
    assert all(f in M.FAMILIES for f in landing_guard.MIXTURE_FAMILIES)
