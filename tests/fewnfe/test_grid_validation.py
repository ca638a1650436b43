"""benchmarks/grid_validation.py: its candidates replace exactly the grid ``steps=N`` lays, its
flow-matching candidate is DDPM's noise levels in flow-matching time, and its summary counts what
``benchmarks.unseen`` counts."""

from __future__ import annotations

import math
import pathlib
import sys

import pytest
import torch

pytest.importorskip("diffusers")  # the peers; before the benchmark modules are imported

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import flowrestore as fr  # noqa: E402
from benchmarks import grid_validation as G  # noqa: E402
from benchmarks import unseen  # noqa: E402
from flowrestore.grids import make_grid  # noqa: E402
from flowrestore.oracles.diffusion import linear_alphas_cumprod  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2


def test_validation_families_are_disjoint_from_the_test_benchmarks():
    assert not set(G.DIFF) & set(unseen.DIFF)
    assert not set(G.FM.values()) & set(unseen.FM.values())
    assert not set(G.EDM.values()) - {(80.0, 0.002)} & set(unseen.EDM.values())
    assert not set(G.SEEDS) & set(unseen.SEEDS) and not set(G.RANGES) & set(unseen.RANGES)


def test_a_candidate_replaces_the_grid_steps_lays_on_that_flow_only():
    problem = unseen.make_problem("linear-T750/eps", 0.1, 0.5, seeds=(11,), dim=4, batch=2,
                                  diff=G.DIFF)  # fmt: skip
    flow = problem.instances[0].flow
    G._prepare(G._own_timesteps)(problem)
    sol = fr.solve(flow, fr.Euler(), problem.instances[0].x, steps=6, save_at="steps")
    want = make_grid(6, 1.0, 0.0, G._own_timesteps(flow))
    torch.testing.assert_close(sol.ts, want)
    other = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=flow.alphas_cumprod)
    assert other.default_spacing() != flow.default_spacing()


def test_flow_matching_levels_are_ddpm_levels_in_flow_matching_time():
    ddpm = fr.DiffusionFlow(lambda x, k: x, alphas_cumprod=linear_alphas_cumprod())
    for n in (3, 6, 10):
        sig = ddpm.default_spacing()(n, 1.0, 0.0) * ddpm.sigma_max
        got = G.FlowMatchingLevels()(n, 1.0, 0.0)
        torch.testing.assert_close(got[1:], (sig / (1 + sig))[1:], rtol=1e-12, atol=0.0)
        assert float(got[0]) == 1.0


def test_summary_counts_cells_behind_the_peer_and_euler():
    def cell(n, ours, peer, euler, heun=None):
        res = {"IPNDM()": ours, "UniPC-3, own defaults": peer, "Euler()": euler}
        if heun is not None:
            res["Heun()"] = heun
        return {"problem": "p", "n": n, "res": res, "steps": {"Heun()": 3}}

    cells = [cell(3, 0.5, 0.1, 1.0), cell(4, 0.2, 0.1, 1.0, heun=2.0), cell(5, 0.1, 0.4, 1.0)]
    behind, geo, euler = G.summary(cells)
    assert behind == "1 of 2" and euler == 1
    assert float(geo) == pytest.approx(math.sqrt(2.0 * 0.25), abs=1e-3)
