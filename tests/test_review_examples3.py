"""Third review of the examples: they cite the papers they demonstrate, keep each other's outputs
(the README runs them all into ``./out``), leave no intermediate files, honour ``--seed``
everywhere, and refuse (one line, exit 2, before any work) options they would ignore."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from examples_loader import load_example

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    return load_example(name, f"review3_{name}")


def _refused(fn, argv, flag, capsys):
    """``fn(argv)`` exits 2 with one ``error:`` line naming ``flag`` and no traceback."""
    with pytest.raises(SystemExit) as info:
        fn(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.count("error:") == 1 and flag in last, err
    assert "Traceback" not in err


#: the authors of the method(s) each example demonstrates (the papers in its docstring)
CITED = {
    "regression_to_mean": ("Delbracio", "Milanfar"),  # InDI
    "solver_comparison": ("Delbracio", "Milanfar"),  # InDI's ODE
    "dirac_mixture": ("Fabian", "Soltanolkotabi"),  # DiracDiffusion
    "blind_deblur": ("Chihaoui", "Favaro", "Delbracio"),  # BIRD on an InDI flow
    "bird_diffusion": ("Chihaoui", "Favaro"),  # BIRD
    "compare_restoration": ("Chung", "Zhu", "Kawar", "Chihaoui"),  # DPS, DiffPIR, DDRM, BIRD
}


def test_every_example_cites_the_papers_it_demonstrates():
    """dirac_mixture said "paper eq. 7" of no named paper; solver_comparison, blind_deblur and
    regression_to_mean named the method but not its authors."""
    assert {p.stem for p in ROOT.glob("*.py")} == set(CITED)
    for name, authors in CITED.items():
        doc = ast.get_docstring(ast.parse((ROOT / f"{name}.py").read_text())) or ""
        for author in authors:
            assert author in doc, (name, author)


def test_summaries_in_one_out_say_when_they_replace_another_examples(tmp_path, capsys):
    """blind_deblur, bird_diffusion and compare_restoration all wrote ``OUT/summary.json``: the
    README's ``--out ./out`` for each replaced the earlier ones' summaries without a word."""
    blind, bird = _load("blind_deblur"), _load("bird_diffusion")
    blind.write_summary(tmp_path, {"psnr": 1.0}, "blind_deblur.py")
    assert capsys.readouterr().err == ""
    blind.write_summary(tmp_path, {"psnr": 2.0}, "blind_deblur.py")  # its own re-run: no notice
    assert capsys.readouterr().err == ""
    bird.write_summary(tmp_path, {"psnr": 3.0}, "bird_diffusion.py")
    err = capsys.readouterr().err
    assert "replacing" in err and "summary.json" in err and "blind_deblur.py" in err, err
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == {"example": "bird_diffusion.py", "psnr": 3.0}


def test_compare_bird_validation_draws_from_the_seed(monkeypatch):
    """BIRD's validation runs drew their latent from ``manual_seed(5)`` whatever ``--seed`` was:
    two seeds shared that noise."""
    import torch

    mod = _load("compare_restoration")
    drawn = []

    class Fake:
        def run(self, y, *, generator, callback=None):
            drawn.append(generator.initial_seed())
            return SimpleNamespace(x=torch.zeros_like(y))

    monkeypatch.setattr(mod, "bird_inversion", lambda *a, **k: Fake())
    faces = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    for seed in (0, 1):
        cfg = SimpleNamespace(noise=0.01, seed=seed, bird_every=1, bird_iterations=2,
                              bird_steps=2)  # fmt: skip
        mod.bird_validation({"lr_latent": 0.1}, None, faces, cfg)
    assert drawn[0] != drawn[1], drawn


def test_compare_run_jobs_leaves_no_parts(tmp_path):
    """The forked workers' results stayed in ``OUT/parts/*.pt`` (every test image of every
    method), a folder the docstring's outputs do not list."""
    mod = _load("compare_restoration")
    parts = tmp_path / "parts"
    jobs = {"a": ((), lambda _: 1), "b": (("a",), lambda done: done["a"] + 1)}
    assert mod.run_jobs(jobs, 2, parts) == {"a": 1, "b": 2}
    assert not parts.exists()
    # a folder that holds someone else's file keeps it
    parts.mkdir()
    (parts / "mine.txt").write_text("mine")
    assert mod.run_jobs(jobs, 2, parts) == {"a": 1, "b": 2}
    assert sorted(p.name for p in parts.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize(
    ("args", "flag", "value"),
    [
        (["--train-steps", "50"], "--train-steps", 50),
        (["--batch=4"], "--batch", 4),
        (["--channels", "8"], "--channels", 8),
        (["--model", "elsewhere", "--train-st", "5"], "--train-steps", 5),
    ],
)
def test_compare_refuses_training_options_when_nothing_is_trained(
    args, flag, value, tmp_path, capsys, monkeypatch
):
    """Without ``--retrain`` the shipped (or given) model is used: ``--train-steps 50`` and
    friends were accepted and ignored without a word."""
    mod = _load("compare_restoration")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "model_index.json").write_text("{}")
    monkeypatch.setattr(mod, "SHIPPED", shipped)
    _refused(mod.parse, ["--out", str(tmp_path / "o"), *args], flag, capsys)
    # the same option shapes the model when one is trained: accepted, and kept
    own = [a for a in args if "elsewhere" not in a and a != "--model"]
    cfg = mod.parse(["--out", str(tmp_path / "o"), "--retrain", *own])
    assert cfg.retrain and getattr(cfg, flag[2:].replace("-", "_")) == value
    assert cfg.nfes == [10, 20, 50]  # the other defaults untouched (not --quick's)
    monkeypatch.setattr(mod, "SHIPPED", tmp_path / "none")  # no shipped model: OUT trains one
    cfg = mod.parse(["--out", str(tmp_path / "o"), *own])
    assert getattr(cfg, flag[2:].replace("-", "_")) == value


def test_regression_to_mean_refuses_a_step_count_twice(tmp_path, capsys):
    """``--steps 5 5`` drew the same panel twice."""
    mod = _load("regression_to_mean")
    _refused(mod.main, ["--out", str(tmp_path), "--samples", "4", "--steps", "5", "5"],
             "--steps", capsys)  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_bird_train_ddpm_refuses_a_target_it_does_not_train(tmp_path):
    """``prediction_type="sample"`` trained on the velocity and saved a scheduler that reads the
    output as the clean image: a silently wrong model."""
    mod = _load("bird_diffusion")
    with pytest.raises(ValueError, match="prediction_type.*'sample'"):
        mod.train_ddpm(tmp_path, steps=1, batch=2, channels=8, seed=0, prediction_type="sample")
    assert not list(tmp_path.iterdir())


def test_blind_summary_records_what_it_ran_with(tmp_path, monkeypatch):
    """``summary.json`` held widths and PSNRs but not the seed, the noise or the training
    settings: the run could not be repeated from it."""
    import torch

    mod = _load("blind_deblur")
    faces = torch.rand(4, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(mod, "faces", lambda split, offset=(0, 0): faces.clone())
    argv = ["--out", str(tmp_path), "--train-steps", "1", "--batch", "2", "--base-channels", "4",
            "--faces", "1", "--flow-steps", "1", "--iterations", "1", "--seed", "7",
            "--noise", "0.02", "--quiet"]  # fmt: skip
    mod.main(argv)
    settings = json.loads((tmp_path / "summary.json").read_text())["settings"]
    given = dict(zip(argv[0:-1:2], argv[1::2], strict=True))
    for flag, text in given.items():
        value = settings[flag[2:].replace("-", "_")]
        assert str(value) == text or value == float(text), (flag, value)
