"""The few-NFE benchmark's harness (benchmarks/fewnfe.py, benchmarks/peers.py): its peers compute
what they claim, and a smoke run writes every table."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

import flowrestore as fr

from .helpers import diffusion_problem

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import fewnfe, peers  # noqa: E402
from benchmarks.fewnfe_problems import flow_denoiser  # noqa: E402

pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2


def test_reference_peers_match_the_same_updates_in_flowrestore():
    """iPNDM (order 4) is ``fr.IPNDM(ab_order=4)`` in σ units; k-diffusion's Euler is DDIM =
    ``fr.Euler``; its DPM++ 2M first step is DDIM too."""
    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=3)
    grid = flow.default_spacing()(6, 1.0, 0.0)
    sig = grid * flow.sigma_max
    d, xs = flow_denoiser(flow), flow.to_state(x_T, 1.0)
    ours = fr.solve(flow, fr.IPNDM(ab_order=4), x_T, grid=grid).x
    torch.testing.assert_close(peers.ipndm(d, xs, sig)[0], ours)
    torch.testing.assert_close(
        peers.kdiffusion_euler(d, xs, sig)[0], fr.solve(flow, fr.Euler(), x_T, grid=grid).x
    )
    one = sig[[0, 1]]
    torch.testing.assert_close(
        peers.kdiffusion_dpmpp_2m(d, xs, one)[0],
        flow.to_state(fr.solve(flow, fr.Euler(), x_T, grid=grid[[0, 1]]).x, float(grid[1])),
    )


def test_diffusers_peers_run_on_the_model_and_on_a_grid():
    oracle, flow, x_T, exact = diffusion_problem("linear", "epsilon", dim=6, batch=3)
    for label in peers.SCHEDULERS:
        x, nfe = peers.diffusers_sample(
            label, oracle, x_T, 8, oracle.alphas_cumprod, oracle.prediction_type
        )
        assert nfe == 8 and float((x - exact).norm() / exact.norm()) < 0.5, label
    sig = flow.default_spacing()(8, 1.0, 0.0) * flow.sigma_max
    x, nfe = peers.diffusers_solve("unipc", 3, flow_denoiser(flow), flow.to_state(x_T, 1.0), sig)
    assert nfe == 8 and float((x - exact).norm() / exact.norm()) < 0.2


def test_smoke_run_writes_the_tables(tmp_path):
    results, problems = fewnfe.main(split="val", quick=True, log=lambda *a: None)
    text = fewnfe.report(results, problems, "val", tmp_path)
    assert (tmp_path / "fewnfe.png").stat().st_size > 0
    for name in problems:
        assert f"### {name}" in text
    for row in ("SemiLinearMultistep()", "DataIPNDM()", "UniPC-3, own defaults", "iPNDM, Karras"):
        assert row in text
    assert "best default-constructed flowrestore" in text
    # the plotted numbers are saved, and the plot is redrawn from them without solving
    import json

    saved = json.loads((tmp_path / "fewnfe.json").read_text())
    assert set(saved) == set(results)
    for name, res in results.items():
        assert saved[name]["kind"] == problems[name].kind
        assert saved[name]["rows"] == {m: {str(n): v[n] for n in v} for m, v in res.items()}
    (tmp_path / "fewnfe.png").unlink()
    fewnfe.replot(tmp_path)
    assert (tmp_path / "fewnfe.png").stat().st_size > 0


def test_unipc_peer_is_fr_unipc_and_scored_a_tie():
    """diffusers' UniPC-2 on flowrestore's grid (the benchmark's peer) is ``fr.UniPC()`` up to its
    float32 σ's, and the goal table calls that a tie — neither ahead nor behind."""
    from benchmarks.fewnfe import verdict
    from benchmarks.fewnfe_problems import tied

    _, flow, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=3)
    grid = flow.default_spacing()(6, 1.0, 0.0)
    d, xs = flow_denoiser(flow), flow.to_state(x_T, 1.0)
    peer = peers.diffusers_solve("unipc", 2, d, xs, grid * flow.sigma_max)[0]
    ours = fr.solve(flow, fr.UniPC(), x_T, grid=grid).x
    assert float((peer - ours).norm() / ours.norm()) < 1e-5
    assert tied("rel", 0.10000, 0.100009) and not tied("rel", 0.1, 0.1001)
    assert tied("psnr", 50.0, 50.0009) and not tied("psnr", 50.0, 50.01)
    row = {"ours": 0.1, "peer": 0.10000001, "ahead": True, "tie": True}
    assert verdict(row) == "tie"
    assert verdict({**row, "peer": 0.2, "tie": False}) == "yes"
    assert verdict({**row, "peer": 0.05, "ahead": False, "tie": False}) == "**no**"


def test_ddim_on_its_own_defaults_clips_as_the_checkpoint_says():
    """A trained checkpoint's ``clip_sample`` reaches DDIM's own-default row (the only peer
    scheduler with the option); an exact model's run stays unclipped. From a state far outside
    the range, only the clipped run lands inside ``[−0.5, 0.5]``."""
    oracle, _, x_T, _ = diffusion_problem("linear", "epsilon", dim=6, batch=3)
    abar = oracle.alphas_cumprod
    clipped = peers.make_scheduler("DDIM (trailing)", abar, "epsilon", clip_range=0.5)
    plain = peers.make_scheduler("DDIM (trailing)", abar, "epsilon")
    assert clipped.config.clip_sample and clipped.config.clip_sample_range == 0.5
    assert not plain.config.clip_sample
    for label in set(peers.SCHEDULERS) - {"DDIM (trailing)"}:
        assert "clip_sample" not in peers.make_scheduler(label, abar, "epsilon", 0.5).config
    x, _ = peers.diffusers_sample(
        "DDIM (trailing)", oracle, 3 * x_T, 4, abar, "epsilon", clip_range=0.5
    )
    y, _ = peers.diffusers_sample("DDIM (trailing)", oracle, 3 * x_T, 4, abar, "epsilon")
    assert float(x.abs().max()) <= 0.5 + 1e-6 < float(y.abs().max())
