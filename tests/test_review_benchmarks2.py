"""Review of the benchmark scripts whose numbers RESULTS.md publishes: a worst case over seeds or
instances keeps a diverged (NaN) instance instead of dropping it, a method that failed on one
instance is not scored on the others alone, and a NaN row is never a table's "best"."""

from __future__ import annotations

import math
import pathlib
import sys
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("diffusers")  # the peers; before the benchmark modules are imported

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import flowrestore as fr  # noqa: E402
from benchmarks import analytic_start, choose_solver, fewnfe, multimodal  # noqa: E402
from benchmarks import fewnfe_problems as P  # noqa: E402


@pytest.fixture(autouse=True)
def _grad_mode_and_threads_restored():
    """The benchmarks' ``main`` functions switch autograd off for the process (a script's
    choice); a test that calls them must not leave it off for the tests after it."""
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    yield
    torch.set_grad_enabled(grad)
    torch.set_num_threads(threads)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2


def _problem(kind: str = "rel", n: int = 2) -> P.Problem:
    flow = fr.InDIFlow(lambda x, t: x)
    insts = [P.Instance(flow, torch.ones(2, 3), torch.ones(2, 3), None, {"i": i}) for i in range(n)]
    return P.Problem("toy", kind, False, insts)


def test_multimodal_worst_over_seeds_keeps_a_diverged_seed(monkeypatch):
    # seed 0 diverges (NaN), seed 1 is accurate: the worst over the seeds is NaN, not seed 1's
    problem = _problem()
    per_seed = {0: (math.nan, math.nan, 1.0), 1: (0.1, 0.2, 0.0)}
    monkeypatch.setattr(multimodal.U, "answers", lambda p, inst, *a: {"Euler()": inst.x})
    monkeypatch.setattr(multimodal, "scores", lambda inst, x: per_seed[inst.extra["i"]])
    errors: list = []
    (cell,) = multimodal.run_problem(problem, (4,), errors, log=lambda s: None)
    assert math.isnan(cell["median"]["Euler()"]) and math.isnan(cell["worst"]["Euler()"])
    assert cell["wrong"]["Euler()"] == 1.0
    assert [e["method"] for e in errors] == ["Euler()"]  # and the report's header lists it
    # the same with the accurate seed first
    per_seed[0], per_seed[1] = per_seed[1], per_seed[0]
    (cell,) = multimodal.run_problem(problem, (4,), [], log=lambda s: None)
    assert math.isnan(cell["median"]["Euler()"])


def test_multimodal_drops_a_method_that_failed_on_one_seed(monkeypatch):
    # a wrong evaluation count (or an exception) on seed 0: scoring seed 1 alone would understate
    # the method's worst case, so it leaves the cell (as in benchmarks.unseen)
    problem = _problem()

    def answers(p, inst, n, fail, steps_of, ours):
        if inst.extra["i"] == 0:
            fail("IPNDM()", "wrong NFE: 4 steps cost 5, not 4")
            return {"Euler()": inst.x}
        return {"Euler()": inst.x, "IPNDM()": inst.x}

    monkeypatch.setattr(multimodal.U, "answers", answers)
    monkeypatch.setattr(multimodal, "scores", lambda inst, x: (0.1, 0.2, 0.0))
    errors: list = []
    (cell,) = multimodal.run_problem(problem, (4,), errors, log=lambda s: None)
    for key in ("median", "worst", "wrong"):
        assert set(cell[key]) == {"Euler()"}, key
    assert len(errors) == 1


def test_fewnfe_verdict_ignores_a_diverged_peer():
    # the best peer at 4 NFE is iPNDM's 0.2; k-diffusion Euler diverged (NaN). The default's 0.1
    # is ahead whatever the rows' order.
    problem = _problem()
    res = {
        "k-diffusion Euler, Karras": {4: math.nan},
        "iPNDM, Karras": {4: 0.2},
        "Euler()": {4: 0.1},
        "RK4()": {4: math.nan},
    }
    row = fewnfe.summary(problem, res)[4]
    assert (row["ours_name"], row["ours"]) == ("Euler()", 0.1)
    assert (row["peer_name"], row["peer"]) == ("iPNDM, Karras", 0.2)
    assert fewnfe.verdict(row) == "yes"
    # PSNR: higher is better, a NaN crop never wins either
    res_psnr = {"UniPC-2, uniform σ": {4: math.nan}, "UniPC-3, uniform σ": {4: 40.0}}
    res_psnr["Euler()"] = {4: 38.0}
    row = fewnfe.summary(_problem("psnr"), res_psnr)[4]
    assert row["peer_name"] == "UniPC-3, uniform σ" and fewnfe.verdict(row) == "**no**"


def test_analytic_start_worst_over_instances_keeps_a_diverged_instance(monkeypatch):
    problem = _problem()
    monkeypatch.setattr(analytic_start, "NFES", (3,))
    monkeypatch.setattr(analytic_start, "ROWS", {"Euler()": (lambda m: fr.Euler(), 0)})
    monkeypatch.setattr(analytic_start, "estimate_start", lambda flow, noise: None)
    order = [0.1, math.nan]
    score = lambda p, inst, x: order[inst.extra["i"]]  # noqa: E731
    warm = lambda inst, g: torch.zeros(1, 3)  # noqa: E731
    res = analytic_start.run_problem(problem, warm, None, score)
    assert math.isnan(res["Euler()"][3])


def test_choose_solver_worst_keeps_a_diverged_instance_and_skips_nan_rows(monkeypatch):
    problem = _problem()
    res = {"iPNDM, Karras": {n: math.nan for n in (3,)}, "UniPC-2, uniform σ": {3: 0.3}}
    res["Euler()"] = {3: 0.2}
    monkeypatch.setattr(choose_solver, "NFES", (3,))
    monkeypatch.setattr(choose_solver.B, "warmups", lambda p, split: [None] * 2)
    monkeypatch.setattr(choose_solver.B, "run_problem", lambda p, nfes, log: res)
    chosen = SimpleNamespace(solver=fr.Euler(), steps=3, nfe=3)
    monkeypatch.setattr(choose_solver, "choose_solver", lambda *a, **k: chosen)
    scores = iter([0.1, math.nan])
    monkeypatch.setattr(choose_solver.P, "score", lambda p, inst, x: next(scores))
    (row,) = choose_solver.run(problem, "val", log=lambda *a: None)
    assert math.isnan(row["score"])
    assert row["default"] == ("Euler()", 0.2) and row["peer"] == ("UniPC-2, uniform σ", 0.3)


def test_split_landing_worst_vs_euler_reports_a_diverged_cell():
    from benchmarks import split_landing

    # κ = 0.3 diverges at 5 steps (after a finite cell): its worst ratio to Euler is infinite
    cells_none = [(3, 0.3, 0.4), (4, 0.1, 0.2), (5, 0.05, 0.1)]
    cells_k = [(3, 0.1, 0.4), (4, 0.05, 0.2), (5, math.nan, 0.1)]
    res = {"g": {"kind": "rel", ("RK4", None): cells_none, ("RK4", 0.3): cells_k}}
    lines = split_landing.table(res).splitlines()
    assert "| g | RK4 | denoising | 0.750 @ 3 |" in lines[2]
    assert "| g | RK4 | 0.3 | inf @ 5 |" in lines[3]
    photos = [(3, 30.0, 31.0), (4, math.nan, 33.0)]
    res = {"p": {"kind": "psnr", ("Heun", None): photos}}
    assert "+inf dB @ 4" in split_landing.table(res)


def _count_calls(monkeypatch, cls) -> list[int]:
    """``[n]``: the calls made to instances of ``cls`` from now on (``n`` settable)."""
    calls, call = [0], cls.__call__

    def counted(self, *a, **k):
        calls[0] += 1
        return call(self, *a, **k)

    monkeypatch.setattr(cls, "__call__", counted)
    return calls


def test_fewnfe_rows_cost_exactly_n_model_evaluations(monkeypatch):
    # count the model's calls (not the loop's own count, nor the peers' formulas): every row of
    # the few-NFE table at n NFE — flowrestore's and the peers' — evaluates the model n times
    problem = P.diffusion_oracles("linear", "epsilon", "val", dim=8, batch=4, seeds=(7,))
    (inst,) = problem.instances
    calls = _count_calls(monkeypatch, type(inst.flow.model))
    for n in (3, 4, 7):
        calls[0] = 0
        ours = fewnfe._ours(inst, n)
        assert calls[0] == n * len(ours) and len(ours) >= 4, (n, calls[0], list(ours))
        calls[0] = 0
        peers = fewnfe._peers(problem, inst, n)
        assert calls[0] == n * len(peers), (n, calls[0], list(peers))
        assert ("k-diffusion Heun, Karras" in peers) == (n % 2 == 1)


def test_indi_default_peers_run_the_grids_fewnfe_runs():
    # `--peers all`: "DPM-Solver++/UniPC on that grid and on a uniform σ grid, as
    # benchmarks/fewnfe.py runs them" — the same float64 grids, hence the same answers
    from benchmarks import indi_default

    flow = fr.InDIFlow(lambda x, t: torch.tanh(2 * x) + 0.3 * t.reshape(-1, 1))
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    inst = P.Instance(flow, x, x, P.flow_denoiser(flow))
    n = 7
    got = indi_default.peers(inst, n, "all")
    grids = {
        "flowrestore's grid": fewnfe.default_grid(flow, n),
        "uniform σ": torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64),
    }
    want = {k: v for k, v in fewnfe._sigma_peers(inst, n, grids).items() if "Karras" not in k}
    assert set(got) == set(want) and len(got) == 10
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_fewnfe_fitted_rows_cost_exactly_n_model_evaluations(monkeypatch):
    # the fitted grids, fit_weights' solver and its analytic-start form at 4 NFE: 4 calls each
    problem = P.diffusion_oracles("linear", "epsilon", "val", dim=8, batch=4, seeds=(7,))
    fewnfe.prepare_fits(problem, fewnfe.warmups(problem, "val"), (4,), lambda *a: None, 8)
    (inst,) = problem.instances
    calls = _count_calls(monkeypatch, type(inst.flow.model))
    answers = fewnfe._ours(inst, 4)
    fitted = [k for k in answers if fewnfe.is_fitted(k)]
    assert len(fitted) == 5 and fewnfe.START_ROW in fitted, fitted
    assert calls[0] == 4 * len(answers)


def test_landing_guard_counts_a_diverged_cell_behind_euler(monkeypatch, capsys):
    from benchmarks import landing_guard

    res = {
        "IPNDM() (guarded landing)": {3: math.nan, 4: 0.1},
        "IPNDM(landing_guard=False)": {3: 0.3, 4: 0.3},
        "Euler()": {3: 0.2, 4: 0.2},
    }
    monkeypatch.setattr(landing_guard, "problems", lambda split: [(_problem(), None)])
    monkeypatch.setattr(landing_guard, "run_problem", lambda problem, rows, score: res)
    monkeypatch.setattr(landing_guard, "report", lambda *a: "")
    landing_guard.main(["--split", "val"])
    out = capsys.readouterr().out
    want = {"IPNDM() (guarded landing)": 1, "IPNDM(landing_guard=False)": 2}
    assert f"cells behind Euler (of 2): {want}" in out


def test_analytic_start_counts_a_diverged_cell_as_less_accurate(monkeypatch, capsys):
    from benchmarks import landing_guard

    assert landing_guard.less_accurate(math.nan, 0.2) and landing_guard.less_accurate(0.3, 0.2)
    assert not landing_guard.less_accurate(0.2, math.nan)  # the other one diverged
    assert not landing_guard.less_accurate(0.1, 0.2)
    monkeypatch.setattr(analytic_start, "NFES", (3, 4))
    res = {name: {3: 0.2, 4: 0.2} for pair in analytic_start.PAIRS for name in pair}
    res["UniPC(start_estimate=estimate)"] = {3: math.nan, 4: 0.1}
    monkeypatch.setattr(analytic_start, "problems", lambda split: [(_problem(), None, None, None)])
    monkeypatch.setattr(analytic_start, "run_problem", lambda *a: res)
    monkeypatch.setattr(analytic_start, "report", lambda *a: "")
    analytic_start.main(["--split", "val"])
    out = capsys.readouterr().out
    assert "UniPC(start_estimate=estimate) less accurate than without in 1 of 2 cells" in out
    assert "IPNDM(start_estimate=estimate) less accurate than without in 0 of 2 cells" in out


@pytest.mark.parametrize("family", ["fm-shift2", "edm-80/0.002"])
def test_unseen_rows_cost_exactly_n_model_evaluations(monkeypatch, family):
    # flow matching adds diffusers' flow schedulers on their own grid and on flowrestore's
    from benchmarks import unseen

    problem = unseen.make_problem(family, 0.05, 1.0, seeds=(7,), dim=8, batch=4)
    (inst,) = problem.instances
    calls = _count_calls(monkeypatch, type(inst.flow.model))
    for n in (3, 6):
        calls[0], errors = 0, []
        out = unseen.answers(problem, inst, n, lambda *a, e=errors: e.append(a), {})
        assert errors == [] and calls[0] == n * len(out), (n, calls[0], len(out))
        if family.startswith("fm"):
            assert sum("(flow σ)" in k for k in out) == 8
