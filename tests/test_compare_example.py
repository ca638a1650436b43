"""examples/compare_restoration.py: DPS, DiffPIR, DDRM and BIRD on one diffusers DDPM.

Default suite: the ``--quick`` run (a 3-step model, 2 validation + 2 test faces, NFE 2 and 3)
writes the table, the figure and the summary with every task × method × NFE, each setting taken
from its grid, the validation and test faces disjoint; and the selection rule picks the grid point
with the best validation PSNR. ``-m slow``: the full run (training included) meets the README's
claims in under 20 minutes on 2 threads.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("diffusers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compare_restoration.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_restoration_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_writes_table_figure_and_summary(tmp_path, capsys):
    mod = _load()
    summary = mod.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    printed = capsys.readouterr().out
    md = (tmp_path / "compare_restoration.md").read_text()
    assert md.splitlines()[0] in printed and (tmp_path / "compare_restoration.png").stat().st_size
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]
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
    with pytest.raises(SystemExit):  # 21 faces: there are 20 held-out ones
        mod.parse(["--out", str(tmp_path), "--val-faces", "15", "--test-faces", "6"])


def test_settings_are_chosen_by_validation_psnr(monkeypatch):
    """``choose`` returns the grid point whose restorations score best on the validation faces
    (a fake solver: each setting's output is the truth plus noise of its own size)."""
    mod = _load()
    faces = torch.rand(3, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    errors = {1.0: 0.2, 3.0: 0.05, 10.0: 0.1}

    def fake(method, flow, op, y, noise, nfe, hp, seed):
        g = torch.Generator().manual_seed(seed)
        return faces + errors[hp["zeta"]] * torch.randn(faces.shape, generator=g), nfe, 0.0

    monkeypatch.setattr(mod, "guided_solve", fake)
    cfg = mod.parse(["--out", "unused"])
    for task in mod.TASKS:
        assert mod.choose("DPS", task, 10, None, faces, cfg) == {"zeta": 3.0}
    errors.update({3.0: 0.3})
    assert mod.choose("DPS", "motion deblur", 10, None, faces, cfg) == {"zeta": 10.0}


@pytest.mark.slow
def test_full_comparison_meets_its_claims(tmp_path):
    """The full example (README "Guided restoration on a trained DDPM"), training included, on 2
    threads: under 20 minutes; at 50 NFE DDRM and DiffPIR restore above the observation's PSNR
    on both deblurring tasks and fit the data to within twice the noise level."""
    summary = _load().main(["--out", str(tmp_path), "--threads", "2", "--quiet"])
    assert summary["total_time_s"] < 20 * 60, summary["total_time_s"]
    rows = summary["rows"]
    for task in ("gaussian deblur", "motion deblur"):
        observed = next(r for r in rows if (r["task"], r["method"]) == (task, "observed"))
        for method in ("DDRM", "DiffPIR"):
            r = next(r for r in rows if (r["task"], r["method"], r["nfe"]) == (task, method, 50))
            assert r["psnr"] > observed["psnr"], (task, method, r["psnr"], observed["psnr"])
            assert r["residual"] < 2.0, (task, method, r["residual"])
