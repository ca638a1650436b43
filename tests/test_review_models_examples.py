"""The BIRD examples refuse settings they cannot run (faces, steps, rates, widths) before any
training (review finding: ``--faces -1`` trained for minutes, then restored 19 faces)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"review_{name}", ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CASES = [
    ("blind_deblur", ["--faces", "-1"], "--faces"),
    ("blind_deblur", ["--faces", "0"], "--faces"),
    ("bird_diffusion", ["--faces", "-1"], "--faces"),
    ("bird_diffusion", ["--faces", "0"], "--faces"),
    ("bird_diffusion", ["--first-face", "-3"], "--first-face"),
    ("bird_diffusion", ["--first-face", "20"], "--first-face"),
]
# refused after training before (BlindInversion or Param): minutes spent, then a ConfigError
CASES += [
    (name, [flag, value], flag)
    for name in ("blind_deblur", "bird_diffusion")
    for flag, value in (
        ("--flow-steps", "0"),
        ("--iterations", "-1"),
        ("--lr-latent", "0"),
        ("--lr-width", "nan"),
        ("--init-width", "5"),
        ("--train-steps", "0"),
    )
]


@pytest.mark.parametrize(("name", "args", "flag"), CASES)
def test_bad_settings_refused_before_training(name, args, flag, tmp_path, capsys):
    if name == "bird_diffusion":
        pytest.importorskip("diffusers")
    mod = _load(name)
    trained = []
    for attr in ("train_ddpm", "train_generative"):
        if hasattr(mod, attr):
            setattr(mod, attr, lambda *a, **k: trained.append(1))
    with pytest.raises(SystemExit) as info:
        mod.main(["--out", str(tmp_path), "--quiet", *args])
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
    assert trained == []
