"""Smoke test of examples/bird_diffusion.py (BIRD through a diffusers DDPM): seconds, not minutes.

The example trains a few steps, saves the pipeline folder, loads it back by path with
``DiffusionFlow.from_diffusers``, inverts in both gradient modes, writes the figure and the summary,
and re-uses the cached model on a second run; the widths respect their bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from examples_loader import load_example

pytest.importorskip("matplotlib")
pytest.importorskip("diffusers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bird_diffusion.py"


def _load():
    return load_example("bird_diffusion", "bird_diffusion_example")


def test_bird_diffusion_example_smoke(tmp_path, capsys):
    mod = _load()
    args = ["--out", str(tmp_path), "--train-steps", "3", "--batch", "4", "--channels", "8",
            "--faces", "2", "--iterations", "2", "--flow-steps", "2", "--threads", "1"]  # fmt: skip
    summary = mod.main(args)
    out = capsys.readouterr().out
    assert "est. w" in out and "PSNR" in out
    folder = tmp_path / "ddpm-faces"
    assert (folder / "model_index.json").exists() and (folder / "unet").is_dir()
    assert (tmp_path / "bird_diffusion.png").stat().st_size > 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved["modes"]) == {"exact", "detached"}
    for mode in ("exact", "detached"):
        widths = saved["modes"][mode]["estimated_width"]
        assert widths == pytest.approx(summary["modes"][mode]["estimated_width"])
        assert len(widths) == 2 and all(0.3 <= w <= 3.0 for w in widths)
    mod.main(args + ["--gradient", "detached"])  # the second run loads the cached pipeline
    assert "loaded cached diffusion model" in capsys.readouterr().out


@pytest.mark.slow
def test_bird_diffusion_example_meets_its_goals(tmp_path):
    """The full example (about 20 minutes on 2 cores): in both gradient modes BIRD through the
    trained DDPM raises PSNR over the blurred faces by >= 1 dB on average and estimates the blur
    widths within 10 % on average (README, "BIRD on a diffusion model")."""
    summary = _load().main(["--out", str(tmp_path), "--threads", "2", "--quiet"])
    for mode in ("exact", "detached"):
        m = summary["modes"][mode]
        assert m["psnr_gain_mean"] >= 1.0, (mode, m["psnr_gain_mean"])
        err = sum(m["width_rel_error"]) / len(m["width_rel_error"])
        assert err <= 0.10, (mode, m["width_rel_error"])
