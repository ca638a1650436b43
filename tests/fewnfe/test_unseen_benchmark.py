"""benchmarks/unseen.py: a smoke run writes every section, and its analysis lists exactly the
cells where a default is behind Euler or behind the best peer."""

from __future__ import annotations

import json
import math
import pathlib
import sys

import pytest

pytest.importorskip("diffusers")  # the peers; before the benchmark modules are imported

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import fewnfe, unseen  # noqa: E402
from benchmarks.fewnfe_problems import diffusion_oracles  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2

SECTIONS = ("## 1. ", "## 2. ", "## 3. ", "## 4. ", "Machine: ", "diffusers ")


def test_smoke_run_writes_every_section_and_finite_euler_scores(tmp_path, capsys):
    argv = ["--only", "scaled_linear/eps", "--ranges", "0.05:1", "--seeds", "777"]
    assert unseen.main([*argv, "--nfes", "3,4", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "unseen.md").read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    for section in SECTIONS:
        assert section in text, section
    recs = [json.loads(line) for line in (tmp_path / "unseen.jsonl").read_text().splitlines()]
    cells = [r for r in recs if "res" in r]
    assert [(c["problem"], c["n"]) for c in cells] == [
        ("scaled_linear/eps std[0.05,1.0]", 3),
        ("scaled_linear/eps std[0.05,1.0]", 4),
    ]
    for c in cells:
        assert math.isfinite(c["res"]["Euler()"]) and 0 < c["res"]["Euler()"] < 1
        assert "UniPC-3, own defaults" in c["res"] and "iPNDM, Karras" in c["res"]
    assert "| scaled_linear/eps std[0.05,1.0] |" in text


def cell(n, **scores):
    """A synthetic cell of problem ``p`` (``scores``: method -> score; ``_`` stands for ``()``)."""
    res = {k.replace("_", "()"): v for k, v in scores.items()}
    return {"problem": "p", "n": n, "res": res, "steps": {"Heun()": 2}}


def test_analysis_lists_the_default_behind_euler_and_only_it():
    cells = [
        cell(4, Euler_=0.1, Heun_=0.25, IPNDM_=0.05, SemiLinearMultistep_=0.1),
        cell(5, Euler_=0.1, RK4_=0.09, IPNDM_=0.02),
        cell(6, Euler_=0.1, IPNDM_=0.04),
    ]
    cells[0]["res"]["UniPC-3, own defaults"] = 0.01  # ahead of every default at 4 NFE
    cells[1]["res"]["UniPC-3, own defaults"] = 0.03  # behind IPNDM() at 5 NFE
    cells[2]["res"]["UniPC-3, own defaults"] = 0.04  # a tie at 6 NFE: not behind
    a = unseen.analyze(cells)
    assert [(p, n, s) for p, n, s, *_ in a["behind_euler"]] == [("p", 4, "Heun()")]
    assert a["behind_euler"][0][5] == pytest.approx(2.5)  # ratio; equal to Euler: not behind
    assert [(r[1], r[2], r[4]) for r in a["behind_peer"]] == [
        (4, "IPNDM()", "UniPC-3, own defaults")
    ]
    assert a["behind_peer"][0][-1] == pytest.approx(5.0) and a["compared"] == 3
    text = unseen.report(cells, [{"problem": "p", "n": 5, "method": "RK4()", "error": "boom"}])
    assert "| p | 4 | Heun() | 2 | 0.25 | 0.1 | 2.50 |" in text
    assert (
        "| p | 1 (0) | 2.50 (Heun() @4) | 1 of 3 |" in text and "| p | 5 | RK4() | boom |" in text
    )


def test_a_nonfinite_default_counts_as_behind_euler():
    a = unseen.analyze([cell(3, Euler_=0.1, Heun_=math.nan)])
    assert [(s, r) for _, _, s, _, _, r, _ in a["behind_euler"]] == [("Heun()", math.inf)]


def test_karras_peers_use_the_flows_own_sigma_min():
    import flowrestore as fr

    edm = fr.DenoiserFlow(lambda x, s: x, sigma_max=14.6, sigma_min=0.0292)
    assert fewnfe.karras_sigma_min(edm) == 0.0292
    assert fewnfe.karras_sigma_min(fr.DenoiserFlow(lambda x, s: x, sigma_max=80.0)) == 0.002
    assert fewnfe.karras_sigma_min(fr.InDIFlow(lambda x, t: x)) == 0.002


def test_an_unknown_schedule_name_is_refused():
    with pytest.raises(ValueError, match="'cosin'"):
        diffusion_oracles("cosin", "epsilon", "val", dim=4, batch=2)
    assert diffusion_oracles("cosine-zsnr", "v_prediction", "val", dim=4, batch=2).instances


def test_compare_is_the_per_family_geometric_mean_of_the_best_defaults_ratio(tmp_path, capsys):
    def rec(problem, n, **res):
        scores = {k.replace("_", "()"): v for k, v in res.items()}
        return {"problem": problem, "n": n, "res": scores}

    before = [
        rec("fam std[0.1,1]", 3, IPNDM_=9.0),  # NFE 3: not compared
        rec("fam std[0.1,1]", 4, IPNDM_=0.4, Euler_=0.8),
        rec("fam std[0.3,3]", 5, IPNDM_=0.1, SemiLinearMultistep_=0.2),
        rec("other std[0.1,1]", 4, Heun_=0.5),
    ]
    before[1]["res"]["UniPC-3, own defaults"] = 0.01  # a peer: never the best default
    after = [
        rec("fam std[0.1,1]", 3, IPNDM_=1.0),
        rec("fam std[0.1,1]", 4, IPNDM_=0.1, Euler_=0.8),  # best default 0.4 -> 0.1
        rec("fam std[0.3,3]", 5, IPNDM_=0.4, SemiLinearMultistep_=0.2),  # 0.1 -> 0.2
        rec("other std[0.1,1]", 6, Heun_=0.5),  # not in before: not compared
    ]
    rows = {f: (float(g), n) for f, g, n in unseen.compare(before, after)}
    assert rows == {"fam": (pytest.approx(math.sqrt(0.25 * 2.0), abs=1e-3), 2)}
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in [*before, {"error": {"n": 4}}]))
    b.write_text("\n".join(json.dumps(r) for r in after))
    assert unseen.main(["--compare", str(a), str(b)]) == 0
    assert "| fam | 0.707 | 2 |" in capsys.readouterr().out


def test_declared_fit_declares_each_priors_own_fitted_grids_and_steps_uses_them():
    """benchmarks/declared_fit.py: each instance's flow carries ``IPNDM()`` grids fitted on its
    own warm-up noises (never the scored ones), and ``steps=N`` alone runs on them."""
    import torch

    import flowrestore as fr
    from benchmarks import declared_fit

    problem = unseen.make_problem("linear(0.00085,0.012)/x0", 0.02, 0.2, seeds=(777,), batch=8)
    plain = problem.instances[0].flow
    declared_fit.NFES = (5,)
    try:
        assert declared_fit.declare_fitted(problem, log=lambda s: None) > 0
    finally:
        declared_fit.NFES = tuple(range(4, 11))
    inst = problem.instances[0]
    grids = inst.flow.fitted_grids()
    assert plain.fitted_grids() is None and grids is not None
    assert [n for n, _ in grids.times] == [5]
    fitted = fr.solve(inst.flow, fr.IPNDM(), inst.x, steps=5).x
    explicit = fr.solve(plain, fr.IPNDM(), inst.x, grid=torch.tensor(grids.times[0][1]))
    torch.testing.assert_close(fitted, explicit.x)
    err = [float(((x - inst.ref).norm(dim=1) / inst.ref.norm(dim=1)).max())
           for x in (fitted, fr.solve(plain, fr.IPNDM(), inst.x, steps=5).x)]  # fmt: skip
    assert err[0] < err[1], err
