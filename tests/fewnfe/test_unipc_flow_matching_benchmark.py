"""benchmarks/unipc_flow_matching.py and the flow-matching peers of ``benchmarks.unseen``: the
"diffusers' own" grid is the scheduler's, the splits are disjoint, and diffusers' flow-matching
UniPC on flowrestore's grid is ``fr.UniPC()`` started where diffusers starts."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

pytest.importorskip("diffusers")  # the peers; before the benchmark modules are imported

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import flowrestore as fr  # noqa: E402
from benchmarks import peers  # noqa: E402
from benchmarks import unipc_flow_matching as B  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2
F64 = torch.float64


def test_the_splits_share_no_shift_range_or_seed():
    (vf, vr, vs), (tf, tr, ts) = B.SPLITS["val"], B.SPLITS["test"]
    assert not set(vf.values()) & set(tf.values())
    assert not set(vr) & set(tr) and not set(vs) & set(ts)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_diffusers_own_grid_is_the_schedulers(shift):
    import diffusers

    sched = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift)
    sched.set_timesteps(6)
    want = sched.sigmas.to(F64)
    got = B.diffusers_flow_grid(shift, 6)
    assert torch.allclose(got[1:], want[1:], atol=1e-6)
    assert abs(float(got[0]) - 1) < 1e-12 and abs(float(want[0]) - (1 - 1e-6)) < 1e-6


def test_the_peer_on_flowrestores_grid_is_unipc_from_one_minus_1e_6():
    """The unseen benchmark's "diffusers UniPC-2 (flow σ), flowrestore's grid" row."""
    oracle = fr.oracles.GaussianFlowMatchingOracle(
        mean=torch.linspace(-0.5, 0.5, 8, dtype=F64), std=torch.linspace(0.1, 1, 8, dtype=F64)
    )
    flow = fr.FlowMatchingFlow(oracle, shift=2.0)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    grid = flow.default_spacing()(6, 1.0, 0.0).to(F64)
    peer, nfe = peers.diffusers_flow_sample("UniPC-2", oracle, x, 6, 2.0, grid=grid)
    near = grid.clone()
    near[0] = 1 - 1e-6
    ours = fr.solve(flow, fr.UniPC(), x, grid=near).x
    assert nfe == 6
    assert float((peer - ours).norm() / ours.norm()) < 1e-12
