"""benchmarks/multimodal.py: a small run scores every default, the landing option and the peers
on a mixture prior, its reference agrees with the check solve, and the report counts the cells
where the best default trails the best peer."""

from __future__ import annotations

import math
import pathlib
import sys

import pytest

pytest.importorskip("diffusers")  # the peers; before the benchmark modules are imported

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import multimodal  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2


@pytest.mark.parametrize("family", ["linear/eps", "fm-shift3"])
def test_a_small_run_scores_defaults_option_and_peers(family):
    problem = multimodal.make_problem(family, 0.5, 0.05, 1.0, seeds=(3,), batch=16)
    (inst,) = problem.instances
    assert inst.extra["agreement"] < 1e-4  # the two fine solves agree
    errors: list = []
    cells = multimodal.run_problem(problem, (4,), errors, log=lambda s: None)
    assert errors == []
    (cell,) = cells
    med = cell["median"]
    for name in ("IPNDM()", "SemiLinearMultistep()", "Euler()", multimodal.OPTION):
        assert 0 < med[name] < 1, (name, med[name])
    assert any(k.startswith("iPNDM") for k in med)
    assert all(0 <= v <= 1 for v in cell["wrong"].values())
    for name, v in med.items():
        assert v <= cell["worst"][name] + 1e-12, name
    text = multimodal.report(cells, {problem.name: inst.extra["agreement"]}, "header")
    (b, _), (p, _) = multimodal.best(med, True), multimodal.best(med, False)
    assert f"in **{int(b > p)} of 1**" in text
    assert math.isfinite(b) and multimodal.OPTION not in multimodal.best(med, True)[1]


def test_scores_are_the_median_and_worst_relative_errors_and_the_wrong_share():
    import torch

    problem = multimodal.make_problem("edm-80", 1.0, 0.02, 0.2, seeds=(4,), batch=8)
    (inst,) = problem.instances
    x = inst.ref.clone()
    x[0] = inst.extra["oracle"].means[(inst.extra["oracle"].component(x[:1]) + 1) % 8][0]
    x[1] = 1.1 * inst.ref[1]
    med, worst, wrong = multimodal.scores(inst, x)
    e = ((x - inst.ref).norm(dim=1) / inst.ref.norm(dim=1)).sort().values
    assert med == pytest.approx(float(torch.quantile(e, 0.5, interpolation="lower")))
    assert worst == pytest.approx(float(e[-1])) and wrong == pytest.approx(1 / 8)
