"""Review of the examples as a user runs them: settings they cannot honour are refused up front
(one line naming the option, exit 2, no traceback, no silent truncation or fallback), and they
use the public API."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
from examples_loader import load_example

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    return load_example(name, f"review2_{name}")


def _tiny_faces(mod):
    """Four random 24×24 "faces" instead of the LFW set: the tests only train one step."""
    import torch

    faces = torch.rand(4, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    mod.faces = lambda split, offset=(0, 0): faces.clone()
    return mod


def _refused(mod, argv, flag, capsys, fn="main"):
    """``argv`` exits 2 with one ``error:`` line naming ``flag`` before any training."""
    trained = []
    for attr in ("train_ddpm", "train_generative"):
        if hasattr(mod, attr):
            setattr(mod, attr, lambda *a, **k: trained.append(1))
    with pytest.raises(SystemExit) as info:
        getattr(mod, fn)(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.count("error:") == 1 and flag in last, err
    assert "Traceback" not in err
    assert trained == []


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--retrain", "--channels", "12"], "--channels"),  # GroupNorm traceback
        (["--noise", "inf"], "--noise"),
        (["--nfe", "10", "10"], "--nfe"),  # the same rows twice in the table
        (
            ["--workers", "0"],
            "--workers must be >= 1, got 0",
        ),  # named neither the option nor the value
        (["--bird-every", "-1"], "--bird-every must be >= 1, got -1"),
        (["--val-faces", "15", "--test-faces", "9"], "--test-faces 9"),
        # --quick replaced these by its own values without a word
        (["--quick", "--nfe", "5", "7"], "--nfe"),
        (["--quick", "--val-faces=4"], "--val-faces"),
        (["--quick", "--train-st", "50"], "--train-steps"),
    ],
)
def test_compare_restoration_refuses_in_parse(args, flag, tmp_path, capsys):
    _refused(
        _load("compare_restoration"),
        ["--out", str(tmp_path / "o"), *args],
        flag,
        capsys,
        fn="parse",
    )


def test_compare_restoration_refuses_a_model_that_is_no_pipeline(tmp_path, capsys):
    """``--model no/such/folder``: a ConfigError traceback after OUT was made."""
    out = tmp_path / "o"
    _refused(
        _load("compare_restoration"),
        ["--out", str(out), "--model", str(tmp_path / "no" / "such")],
        "--model",
        capsys,
    )
    assert not out.exists()


def test_dirac_mixture_refuses_negative_show(tmp_path, capsys):
    """``--show -5`` drew no path but scattered all but 5 starts, titled "-5 of N paths"."""
    _refused(
        _load("dirac_mixture"),
        ["--out", str(tmp_path), "--samples", "4", "--steps", "1", "--show", "-5"],
        "--show",
        capsys,
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("regression_to_mean", ["--samples", "4", "--steps", "1"]),
        ("dirac_mixture", ["--samples", "4", "--steps", "1"]),
        ("solver_comparison", ["--quick"]),
    ],
)
def test_out_that_is_a_file_is_refused_not_a_traceback(name, args, tmp_path, capsys):
    """``--out`` naming an existing file: the work ran, then ``mkdir`` raised FileExistsError."""
    target = tmp_path / "results.txt"
    target.write_text("mine")
    _refused(_load(name), ["--out", str(target), *args], "--out", capsys)
    assert target.read_text() == "mine"


def test_examples_import_no_private_modules():
    """Public names exist for what the examples use (``fr.SemiLinearMultistep``): no import of
    ``flowrestore.<private or implementation module>`` where ``fr`` exports the name."""
    import flowrestore as fr

    for path in sorted(ROOT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flowrestore."):
                for alias in node.names:
                    assert not alias.name.startswith("_"), (path.name, alias.name)
                    sub = node.module.split(".")[1]
                    if sub in ("solvers", "flows", "core"):  # implementation packages
                        assert not hasattr(fr, alias.name), (path.name, node.module, alias.name)


def test_dirac_mixture_noise_line_follows_the_schedule(tmp_path, capsys, monkeypatch):
    """The printed E‖σ_1 z‖ is computed from the schedule, not a hard-coded 0.5."""
    import flowrestore as fr

    mod = _load("dirac_mixture")
    setup = mod.setup

    def other():
        mix, family, _ = setup()
        sigma = fr.schedules.Geometric(0.01, 0.25)
        mix = fr.oracles.DiracMixture(
            centers=mix.centers, weights=mix.weights, H=mix.H, noise_std=0.25
        )
        return mix, family, sigma

    monkeypatch.setattr(mod, "setup", other)
    monkeypatch.setattr(mod, "ON_CENTRE", 0.2)  # the header printed "within 0.05" regardless
    mod.main(["--out", str(tmp_path), "--samples", "8", "--steps", "2", "--show", "2"])
    out = capsys.readouterr().out
    assert f"E‖σ_1 z‖ = {0.25 * (3.141592653589793 / 2) ** 0.5:.3f}" in out, out
    assert "within 0.2 of a centre" in out and "within 0.05" not in out, out


def test_blind_deblur_training_is_reproducible_from_its_seed(tmp_path):
    """The U-Net was built before ``torch.manual_seed(seed)``: its initial weights came from
    whatever the global RNG held, so the same ``--seed`` trained a different model in-process."""
    import torch

    mod = _tiny_faces(_load("blind_deblur"))
    kw = {"steps": 1, "batch": 2, "base_channels": 4, "seed": 3, "log": lambda *a: None}
    first = mod.train_generative(tmp_path / "a", **kw).state_dict()
    torch.rand(5)  # anything else drawing from the global generator in between
    second = mod.train_generative(tmp_path / "b", **kw).state_dict()
    for k, v in first.items():
        assert torch.equal(v, second[k]), k


def test_compare_restoration_noiseless_table_has_finite_residuals():
    """``--noise 0`` (accepted) printed ``inf`` for every residual: RMS / σ_y with σ_y = 0."""
    import torch

    mod = _load("compare_restoration")
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    op = mod.Downsample(4)
    found = mod.scores(x.clamp(0, 1) * 0.9, x, op, op(x), 0.0)
    assert 0 < found["residual"] < float("inf")
    row = {"task": "t", "method": "m", "nfe": 1, "s_per_image": 0.0, "hp": {}, **found}
    text = mod.table([row], 0.0)
    assert "inf" not in text and "/ σ_y" not in text
    assert "/ σ_y" in mod.table([row], 0.01)


@pytest.mark.parametrize(
    ("name", "train", "size", "saved"),
    [
        ("blind_deblur", "train_generative", {"base_channels": 4}, "generative_unet.pt"),
        ("bird_diffusion", "train_ddpm", {"channels": 8}, "ddpm-faces"),
    ],
)
def test_a_bird_example_says_when_it_replaces_a_cached_model(name, train, size, saved, tmp_path):
    """A run with other settings into the same OUT overwrote the trained weights silently."""
    if name == "bird_diffusion":
        pytest.importorskip("diffusers")
    fit = getattr(_tiny_faces(_load(name)), train)
    kw = {"steps": 1, "batch": 2, "seed": 0, **size}
    fit(tmp_path, log=lambda *a: None, **kw)
    said = []
    fit(tmp_path, log=said.append, **{**kw, "seed": 1})
    assert any("replacing" in m and saved in m for m in said), said


def test_every_example_says_which_method_and_equations_it_demonstrates():
    """solver_comparison named neither the ODE it solves nor a docs/math.md section."""
    for path in sorted(ROOT.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "docs/math.md §" in doc, path.name


def test_compare_restoration_table_says_what_ran_on_what(tmp_path, monkeypatch):
    """The written table said only σ_y: not the model, the faces, the seed it ran with."""
    import torch

    mod = _load("compare_restoration")
    img = torch.zeros(1, 24, 24)

    def fake_jobs(todo, workers, parts):
        row = {"residual": 1.0, "psnr": 20.0, "ssim": 0.5, "s_per_image": 0.1, "hp": {},
               "image": img}  # fmt: skip
        done = {n: {"hp": {"lr_latent": 0.1}, "curve": {2: 20.0}} for n in todo if "val" in n}
        done["bird-test"] = {**row, "task": "gaussian deblur", "method": "BIRD (blind)",
                             "nfe": 6, "width_error": 0.1}  # fmt: skip
        for task in mod.TASKS:
            for m in mod.METHODS:
                done[f"{task} / {m}"] = [
                    {**row, "task": task, "method": m, "nfe": n} for n in (2, 3)
                ]
        return done

    monkeypatch.setattr(mod, "run_jobs", fake_jobs)
    monkeypatch.setattr(mod, "model_folder", lambda cfg, log: (Path("some/ddpm"), 1.0, "given"))
    monkeypatch.setattr(
        mod.fr.DiffusionFlow,
        "from_diffusers",
        lambda *a, **k: SimpleNamespace(model=torch.nn.Linear(1, 1)),
    )
    monkeypatch.setattr(mod, "figure", lambda *a, **k: None)
    mod.main(["--quick", "--out", str(tmp_path), "--seed", "5", "--quiet"])
    md = (tmp_path / "compare_restoration.md").read_text()
    for text in ("some/ddpm (given)", "faces 0–1", "faces 2–3", "seed 5"):
        assert text in md, md
