"""The BIRD examples refuse settings they cannot run (faces, steps, rates, widths) before any
training (review finding: ``--faces -1`` trained for minutes, then restored 19 faces)."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples_loader import load_example

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    return load_example(name, f"review_{name}")


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

# --faces beyond the 20 held-out faces was silently cut to what was left (bird_diffusion:
# --first-face 15 --faces 8 restored 5 faces); --threads 0 / -1 was a RuntimeError traceback
# (blind_deblur: --threads 0 silently used torch's default); --noise inf made every
# observation inf; --channels not a multiple of 8 failed in GroupNorm with a traceback
CASES += [
    ("blind_deblur", ["--faces", "21"], "--faces"),
    ("blind_deblur", ["--threads", "0"], "--threads"),
    ("blind_deblur", ["--threads", "-2"], "--threads"),
    ("blind_deblur", ["--noise", "inf"], "--noise"),
    ("blind_deblur", ["--lr-latent", "inf"], "--lr-latent"),
    ("blind_deblur", ["--base-channels", "0"], "--base-channels"),
    ("blind_deblur", ["--batch", "0"], "--batch"),
    ("bird_diffusion", ["--first-face", "15", "--faces", "8"], "--faces"),
    ("bird_diffusion", ["--faces", "21"], "--faces"),
    ("bird_diffusion", ["--threads", "0"], "--threads"),
    ("bird_diffusion", ["--noise", "inf"], "--noise"),
    ("bird_diffusion", ["--lr-width", "inf"], "--lr-width"),
    ("bird_diffusion", ["--channels", "12"], "--channels"),
    ("bird_diffusion", ["--channels", "0"], "--channels"),
    ("bird_diffusion", ["--gradient", "exact", "exact"], "--gradient"),  # ran twice, one row
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
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # one error line naming the option, no traceback
    assert last.count("error:") == 1 and flag in last, err
    assert "Traceback" not in err
    assert trained == []
