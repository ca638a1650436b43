"""README "Flow-matching and EDM models, and guided restoration" runs exactly as printed (it saves
its own stand-in velocity UNet and flow-matching scheduler to a local folder: nothing is
downloaded), and its results are what the prose says they are."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

pytest.importorskip("diffusers")


def _block(heading: str) -> str:
    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading) :], flags=re.S).group(1)


def test_readme_models_and_guided_example_runs(tmp_path, monkeypatch):
    block = _block("### Flow-matching and EDM models, and guided restoration")
    assert 'from_diffusers("models/rf-faces")' in block
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ns = {"__name__": "__readme__"}
    exec(compile(block, "README.md", "exec"), ns)  # noqa: S102
    assert ns["flow"].shift == 3.0  # the scheduler's shift, read from the local folder
    assert ns["edm"].latent_std == 80.0 and ns["res"].params["width"].shape == (4,)
    width = ns["res"].params["width"]
    assert bool(((width >= 0.3) & (width <= 1.0)).all())  # BIRD keeps the Param in its bounds
    assert ns["x"].shape == (4, 1, 8, 8) and bool(torch.isfinite(ns["x"]).all())
