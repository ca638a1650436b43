"""examples/compare_restoration.py: DPS, DiffPIR, DDRM and BIRD on one diffusers DDPM.

Default suite: the ``--quick`` run (a 3-step model, 2 validation + 2 test faces, NFE 2 and 3, on
two forked workers) writes the table, the figure and the summary with every task × method × NFE,
each setting taken from its grid, the validation and test faces disjoint; the selection rules pick
the grid point with the best validation PSNR (guided methods) and BIRD's learning rate whose
validation run ended best; the job runner respects dependencies and runs jobs in workers; the
shipped DDPM is the default model and its training record is the docstring's settings.
``-m slow``: the full run on the shipped DDPM (training excluded: the folder is reused) meets the
README's claims in under 20 minutes of wall time on 2 workers × 1 thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from examples_loader import load_example

pytest.importorskip("matplotlib")
pytest.importorskip("diffusers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compare_restoration.py"


def _load():
    return load_example("compare_restoration", "compare_restoration_example")


def test_quick_run_writes_table_figure_and_summary(tmp_path):
    """Run as a user runs it, in a fresh process: its workers are forked, and a CUDA build of
    torch refuses autograd in a child forked after the parent ran autograd (as this test
    process has, in other tests)."""
    mod = _load()
    argv = ["--quick", "--out", str(tmp_path), "--threads", "1", "--workers", "2"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *argv], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = proc.stdout
    md = (tmp_path / "compare_restoration.md").read_text()
    assert md.splitlines()[0] in printed and (tmp_path / "compare_restoration.png").stat().st_size
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["validation_faces"]).isdisjoint(summary["test_faces"])
    rows = summary["rows"]
    for task in mod.TASKS:
        for method in mod.METHODS:
            got = [r for r in rows if (r["task"], r["method"]) == (task, method)]
            assert [r["nfe"] for r in got] == [2, 3], (task, method)
            for r in got:
                assert r["hp"] in mod.QUICK_GRIDS[method]
                assert r["residual"] > 0 and -1 <= r["ssim"] <= 1 and r["s_per_image"] > 0
                assert f"| {task} | {method} | {r['nfe']} | {r['psnr']:.2f} |" in md
    bird = [r for r in rows if r["method"] == "BIRD (blind)"]
    assert len(bird) == 1 and bird[0]["task"] == "gaussian deblur"
    assert bird[0]["nfe"] == 3 * 2  # (2 iterations + the final solve) x 2 steps per image
    assert summary["workers"] == 2 and summary["model_source"] == "trained"
    (curve,) = summary["bird_validation"]  # one learning rate in the quick grid
    assert sorted(map(int, curve["psnr_by_iteration"])) == [1, 2]  # JSON keys are strings
    assert curve["hp"] == {"lr_latent": bird[0]["hp"]["lr_latent"]}
    with pytest.raises(SystemExit):  # 21 faces: there are 20 held-out ones
        mod.parse(["--out", str(tmp_path), "--val-faces", "15", "--test-faces", "6"])


def test_settings_are_chosen_by_validation_psnr(monkeypatch):
    """``choose`` returns the grid point whose restorations score best on the validation faces
    (a fake solver: each setting's output is the truth plus noise of its own size)."""
    mod = _load()
    faces = torch.rand(3, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    errors = {1.0: 0.2, 3.0: 0.05, 10.0: 0.1, 30.0: 0.4}

    def fake(method, flow, op, y, noise, nfe, hp, seed):
        g = torch.Generator().manual_seed(seed)
        return faces + errors[hp["zeta"]] * torch.randn(faces.shape, generator=g), nfe, 0.0

    monkeypatch.setattr(mod, "guided_solve", fake)
    cfg = mod.parse(["--out", "unused"])
    for task in mod.TASKS:
        assert mod.choose("DPS", task, 10, None, faces, cfg) == {"zeta": 3.0}
    errors.update({3.0: 0.3})
    assert mod.choose("DPS", "motion deblur", 10, None, faces, cfg) == {"zeta": 10.0}


def test_bird_takes_the_learning_rate_whose_validation_run_ended_best(monkeypatch):
    mod = _load()
    cfg = mod.parse(["--out", "unused"])
    seen = []

    def fake(flow, y, noise, steps, iterations, hp, seed):
        seen.append(hp)
        return torch.zeros(y.shape), 7, 1.0, torch.full((y.shape[0],), mod.WIDTH)

    monkeypatch.setattr(mod, "bird_solve", fake)
    end = cfg.bird_iterations
    validation = [  # the middle rate is best mid-way, the last one at the end
        {"hp": {"lr_latent": 0.05}, "curve": {50: 20.0, end: 21.0}},
        {"hp": {"lr_latent": 0.1}, "curve": {50: 25.0, end: 21.5}},
        {"hp": {"lr_latent": 0.2}, "curve": {50: 19.0, end: 22.0}},
    ]
    test = torch.rand(2, 1, 24, 24)
    row = mod.evaluate_bird(None, test, validation, cfg, lambda *a: None)
    assert seen == [{"lr_latent": 0.2}] and row["hp"]["lr_latent"] == 0.2
    assert row["width_error"] == 0.0 and row["nfe"] == 7


def test_jobs_run_after_their_dependencies_in_workers(tmp_path):
    mod = _load()
    jobs = {
        "a": ((), lambda done: torch.arange(3)),
        "b": (("a",), lambda done: done["a"] + 1),
        "pid": ((), lambda done: os.getpid()),
    }
    for workers in (1, 2):
        got = mod.run_jobs(jobs, workers, tmp_path / str(workers))
        assert torch.equal(got["b"], torch.tensor([1, 2, 3]))
        assert (got["pid"] == os.getpid()) == (workers == 1)

    def fails(done):
        raise ValueError("boom")

    with pytest.raises(RuntimeError, match="'bad' failed"):
        mod.run_jobs({"bad": ((), fails)}, 2, tmp_path / "bad")


def test_the_shipped_ddpm_is_the_default_and_was_trained_as_documented(tmp_path):
    mod = _load()
    folder, seconds, source = mod.model_folder(mod.parse(["--out", str(tmp_path)]), print)
    assert (folder, source) == (mod.SHIPPED, "shipped") and seconds > 0
    record = json.loads((folder / "training.json").read_text())["config"]
    assert record == {"steps": 2000, "batch": 32, "channels": 16, "seed": 0, "lr": 0.002,
                      "prediction_type": "v_prediction"}  # fmt: skip
    for setting in ("steps=2000, batch=32, channels=16, seed=0, lr=2e-3", '"v_prediction"'):
        assert setting in mod.__doc__
    given = mod.model_folder(mod.parse(["--out", str(tmp_path), "--model", str(tmp_path)]), print)
    assert given == (tmp_path, 0.0, "given")
    with pytest.raises(SystemExit):
        mod.parse(["--retrain", "--model", str(tmp_path)])


@pytest.mark.slow
def test_full_comparison_meets_its_claims(tmp_path):
    """The full example (README "Guided restoration on a trained DDPM") on the shipped DDPM (its
    training, 53 minutes once, is not repeated), 2 workers × 1 thread: under 20 minutes of wall
    time from loading the model to the written table and figure; at 50 NFE DDRM and DiffPIR
    restore above the observation's PSNR on both deblurring tasks and fit the data to within
    twice the noise level."""
    summary = _load().main(["--out", str(tmp_path), "--workers", "2", "--threads", "1", "--quiet"])
    assert summary["model_source"] == "shipped"
    assert summary["total_time_s"] < 20 * 60, summary["total_time_s"]
    rows = summary["rows"]
    for task in ("gaussian deblur", "motion deblur"):
        observed = next(r for r in rows if (r["task"], r["method"]) == (task, "observed"))
        for method in ("DDRM", "DiffPIR"):
            r = next(r for r in rows if (r["task"], r["method"], r["nfe"]) == (task, method, 50))
            assert r["psnr"] > observed["psnr"], (task, method, r["psnr"], observed["psnr"])
            assert r["residual"] < 2.0, (task, method, r["residual"])
