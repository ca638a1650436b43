"""The rule ``python -m benchmarks.indi_spacing --split val --write`` applies to choose the shipped
InDI predictors' declared spacing per solver (and ``benchmarks.indi_spacing_pairs`` for the
embedded pairs), and the registry record each writes, read back by ``flow_for`` (issue 16)."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

import flowrestore as fr
from benchmarks import indi_spacing as B
from benchmarks import indi_spacing_pairs as P
from flowrestore.methods.indi import _declared_spacings

NFE = {"Midpoint()": (4, 6), "Heun()": (3, 5), "RK4()": (5, 9)}


def _rows(best: dict[tuple[str, str], str], tie: str | None = None) -> dict:
    """Synthetic rows: 30 dB everywhere, 40 dB (mean) for ``best[(model, solver)]``; ``tie``
    scores the same as the best for every solver."""
    res = {}
    for model in B.MODELS:
        for cname in B.candidates():
            for sname in B.SOLVERS:
                nfes = NFE.get(sname, tuple(range(3, 11)))
                top = cname == best.get((model, sname)) or cname == tie
                res[(model, cname, sname)] = {
                    n: (40.0 + (i - 1) if top else 30.0) for i, n in enumerate(nfes)
                }
    return res


def test_each_solver_gets_the_candidate_with_its_highest_mean_and_ties_go_to_the_earliest():
    names = list(B.candidates())
    best = {("indi-deblur", "Heun()"): names[-1], ("indi-sr4", "RK4()"): names[3]}
    choice = B.per_solver(_rows(best))
    assert choice[("indi-deblur", "Heun()")] == names[-1]
    assert choice[("indi-sr4", "RK4()")] == names[3]
    # every other (model, solver) scores 30 on each candidate: the earliest, the loop's rule
    assert choice[("indi-sr4", "Heun()")] == B.NONE
    # an exact tie (a StartRefined and its Unrefined twin, for Euler) goes to the earlier
    sr3, twin = names[4], names[4 + len(B.RHOS)]
    assert twin == f"Unrefined({sr3})"
    both = _rows({(m, s): sr3 for m in B.MODELS for s in B.SOLVERS}, tie=twin)
    assert set(B.per_solver(both).values()) == {sr3}
    assert set(B.per_solver(_rows({}, tie=twin)).values()) == {twin}


def test_the_written_record_is_what_flow_for_declares(tmp_path: Path):
    shipped = Path(str(resources.files("flowrestore.pretrained").joinpath("registry.json")))
    path = tmp_path / "registry.json"
    shutil.copy(shipped, path)
    names = list(B.candidates())
    best = {
        ("indi-deblur", "Heun()"): "Unrefined(StartRefined(rho=2))",
        ("indi-deblur", "Euler()"): "StartRefined(rho=2.5)",
        ("indi-sr4", "IPNDM()"): "StartRefined(rho=4)",
    }
    choice = B.write(_rows(best), path=path)
    models = json.loads(path.read_text())["models"]
    deblur = _declared_spacings(models["indi-deblur"])
    assert deblur[fr.Heun] == fr.Unrefined(fr.StartRefined(rho=2.0, closing_pair=False))
    assert deblur[fr.Euler] == fr.StartRefined(rho=2.5, closing_pair=False)
    # the loop's rule is no declaration: those solvers are left out
    assert fr.RK4 not in deblur and choice[("indi-deblur", "RK4()")] == names[0]
    sr4 = _declared_spacings(models["indi-sr4"])
    shipped_sr4 = _declared_spacings(json.loads(shipped.read_text())["models"]["indi-sr4"])
    pairs = {cls: shipped_sr4[cls] for cls in P.SOLVERS.values()}  # kept: the pairs' own rule
    assert sr4 == {fr.IPNDM: fr.StartRefined(rho=4.0, closing_pair=False), **pairs}
    assert "command" in models["indi-sr4"]["spacings"]
    assert "pairs_command" in models["indi-sr4"]["spacings"]
    # the other models' records are untouched
    assert models["dirac-deblur"] == json.loads(shipped.read_text())["models"]["dirac-deblur"]


def test_cells_behind_euler_compare_equal_evaluations_each_on_its_own_spacing():
    names = list(B.candidates())
    res = _rows({})
    choice = {(m, s): names[1] for m in B.MODELS for s in B.SOLVERS}
    choice[("indi-sr4", "Euler()")] = names[2]
    res[("indi-sr4", names[2], "Euler()")] = {n: 35.0 if n == 3 else 30.0 for n in range(3, 11)}
    res[("indi-sr4", names[1], "Heun()")] = {3: 34.0, 5: 32.0}
    cells = B.behind_euler(res, choice)
    # Heun at 5 NFE (32 dB) is ahead of Euler's 30; Euler on its own spacing is 35 dB at 3 NFE
    expected = ["Heun() @3 -1.00", "IPNDM() @3 -5.00", "DataIPNDM() @3 -5.00"]
    assert cells == [f"indi-sr4 {c}" for c in expected]


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"per_solver": ["Heun"]}, "'per_solver' as"),
        ({"per_solver": {}, "solvers": ["Heun"]}, "no 'solvers' or 'spacing' beside it"),
        ({"per_solver": {}, "spacing": {"Uniform": {}}}, "no 'solvers' or 'spacing' beside it"),
        ({"per_solver": {"Nope": {"Uniform": {}}}}, "unknown solver 'Nope'"),
        ({"per_solver": {"Heun": {"Karras": {}}}}, "needs one spacing of"),
    ],
)
def test_a_wrong_per_solver_record_is_refused(entry, match):
    from flowrestore.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        _declared_spacings({"spacings": entry})


def _pair_rows(best: dict[tuple[str, str], str]) -> dict:
    """Synthetic rows of :mod:`benchmarks.indi_spacing_pairs`: ``{steps: (nfe, PSNR, Euler's)}``,
    30 dB everywhere but ``best[(model, solver)]``, 40 dB on average."""
    res = {}
    for model in P.SPLIT_MODELS["val"]:
        for cname in P.candidates():
            for sname in P.SOLVERS:
                top = cname == best.get((model, sname))
                res[(model, cname, sname)] = {
                    n: (3 * n, 40.0 + (n - 6.5) if top else 30.0, 35.0) for n in P.STEPS
                }
    return res


def test_the_pairs_rule_and_its_record_keep_the_other_solvers_entries(tmp_path: Path):
    """Each pair gets the candidate with its highest mean over 3–10 steps (ties: the earliest,
    the loop's rule); ``write`` adds the pairs' entries and keeps the other solvers', and a later
    ``indi_spacing`` write keeps the pairs'."""
    from benchmarks import indi_generic as G
    from flowrestore.methods.indi import TASK_SPACINGS_FILE

    shipped = Path(str(resources.files("flowrestore.pretrained").joinpath("registry.json")))
    path, tasks_path = tmp_path / "registry.json", tmp_path / "tasks.json"
    shutil.copy(shipped, path)
    shutil.copy(TASK_SPACINGS_FILE, tasks_path)
    names = list(P.candidates())
    best = {("indi-deblur", "Bosh3()"): names[2], ("indi-sr4", "Dopri5()"): names[-1]}
    choice = P.write(_pair_rows(best), path=path, tasks_path=tasks_path)
    assert choice[("indi-deblur", "Bosh3()")] == names[2]
    assert choice[("indi-deblur", "Dopri5()")] == P.NONE
    models = json.loads(path.read_text())["models"]
    before = _declared_spacings(json.loads(shipped.read_text())["models"]["indi-deblur"])
    deblur = _declared_spacings(models["indi-deblur"])
    assert deblur[fr.Bosh3] == P.candidates()[names[2]] and fr.Dopri5 not in deblur
    assert {k: v for k, v in deblur.items() if k is not fr.Bosh3} == {
        k: v for k, v in before.items() if k not in (fr.Bosh3, fr.Dopri5)
    }
    sr4 = _declared_spacings(models["indi-sr4"])
    assert sr4[fr.Dopri5] == P.candidates()[names[-1]] == fr.Unrefined(fr.Power(rho=3.0))
    # the few-step solvers' rule, written after, keeps the pairs' entries and their note
    B.write(_rows({("indi-sr4", "IPNDM()"): "StartRefined(rho=4)"}), path=path)
    again = json.loads(path.read_text())["models"]
    assert _declared_spacings(again["indi-sr4"])[fr.Dopri5] == sr4[fr.Dopri5]
    assert (
        again["indi-sr4"]["spacings"]["pairs_chosen"]
        == models["indi-sr4"]["spacings"]["pairs_chosen"]
    )
    # the same choice goes to the task records of checkpoints trained for the shipped tasks
    # (each validated on the shipped predictor), the other tasks and solvers untouched
    tasks = json.loads(tasks_path.read_text())["tasks"]
    old = json.loads(TASK_SPACINGS_FILE.read_text())["tasks"]
    assert _declared_spacings({"spacings": tasks["deblur"]})[fr.Bosh3] == deblur[fr.Bosh3]
    assert _declared_spacings({"spacings": tasks["sr4"]})[fr.Dopri5] == sr4[fr.Dopri5]
    assert fr.Dopri5 not in _declared_spacings({"spacings": tasks["deblur"]})
    pairs = ("Bosh3", "Dopri5")
    for task in ("jpeg", "denoise"):  # validated on their own checkpoints: the loop's rule won
        assert not set(pairs) & set(tasks[task]["per_solver"])
        assert f"on indi-{task}" in tasks[task]["pairs_chosen"]
    # every validation model's rows are needed
    partial = {k: v for k, v in _pair_rows(best).items() if k[0] != "indi-jpeg"}
    with pytest.raises(ValueError, match="indi-jpeg"):
        P.write(partial, path=path, tasks_path=tasks_path)
    for task in ("deblur", "sr4", "jpeg", "denoise"):
        mine = {k: v for k, v in tasks[task]["per_solver"].items() if k not in pairs}
        assert mine == {k: v for k, v in old[task]["per_solver"].items() if k not in pairs}
    # and indi_generic's task rule, written after, keeps them too
    flat = {n: 30.0 for n in range(3, 11)}
    cands = G.round_candidates(G.RECORD_ROUND)
    G.write({("indi-sr4", c, s): dict(flat) for c in cands for s in G.SOLVERS}, path=tasks_path)
    kept = json.loads(tasks_path.read_text())["tasks"]["sr4"]
    assert _declared_spacings({"spacings": kept})[fr.Dopri5] == sr4[fr.Dopri5]
    assert kept["pairs_chosen"] == tasks["sr4"]["pairs_chosen"]


def test_the_pairs_report_lists_the_steps_behind_euler_for_the_choice_and_the_registry():
    """Steps where a pair's worst crop is below Euler's at the same evaluations are listed, with
    their evaluations and the dB behind, for this split's choice and for what each model
    declares."""
    names = list(P.candidates())
    best = {(m, s): names[1] for m in P.SPLIT_MODELS["val"] for s in P.SOLVERS}
    res = _pair_rows(best)  # the best: 36.5–43.5 dB against Euler's 35 (3 steps: 36.5)
    res[("indi-sr4", names[1], "Dopri5()")][3] = (9, 34.0, 35.0)
    text = P.report(res, "val")
    choice_line = next(ln for ln in text.splitlines() if ln.startswith("- this split's best"))
    assert choice_line == "- this split's best: 1 (indi-sr4 Dopri5() @3 steps (9 NFE) -1.00 dB)"
    registry_line = next(ln for ln in text.splitlines() if ln.startswith("- what each"))
    assert registry_line.startswith("- what each declares: ")
