"""Smoke test of examples/blind_deblur.py (BIRD on faces) with a tiny setting: seconds, not minutes.

Checks that the example trains (a handful of steps), caches its weights, re-uses them, inverts,
writes the figure and the summary, and that the estimated widths respect the bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from examples_loader import load_example

pytest.importorskip("matplotlib")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "blind_deblur.py"


def _load():
    return load_example("blind_deblur", "blind_deblur_example")


def test_blind_deblur_example_smoke(tmp_path, capsys):
    mod = _load()
    args = [
        "--out",
        str(tmp_path),
        "--train-steps",
        "3",
        "--batch",
        "4",
        "--base-channels",
        "8",
        "--faces",
        "2",
        "--iterations",
        "3",
        "--flow-steps",
        "2",
        "--threads",
        "1",
    ]
    summary = mod.main(args)
    out = capsys.readouterr().out
    assert "est. w" in out and "PSNR" in out
    assert (tmp_path / "generative_unet.pt").exists()
    assert (tmp_path / "blind_deblur.png").stat().st_size > 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["estimated_width"] == pytest.approx(summary["estimated_width"])
    assert len(saved["estimated_width"]) == 2
    assert all(0.3 <= w <= 3.0 for w in saved["estimated_width"])
    # a second run re-uses the cached weights
    mod.main(args + ["--gradient", "detached"])
    assert "loaded cached generative model" in capsys.readouterr().out
