"""Command line and demo, second review: usage errors found before any work and before the output
folder is made, options the toy demo cannot take refused, paths after options, and the demo's
files written atomically."""

import errno
import os

import numpy as np
import pytest
import torch
from PIL import Image

from flowrestore.cli import main
from flowrestore.demo.settings import SSIM_MIN_CROP, check_demo_outputs, plan_demo
from flowrestore.errors import ConfigError


@pytest.fixture
def photos(tmp_path):
    """Two small photo crops (skimage's coffee), as a user has them."""
    import skimage.data

    img = skimage.data.coffee()
    paths = []
    for k, name in enumerate(("a.png", "b.png")):
        path = tmp_path / name
        Image.fromarray(img[100 + 16 * k : 124 + 16 * k, 200:224]).save(path)
        paths.append(path)
    return paths


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- demo plan
def test_a_crop_smaller_than_the_ssim_window_is_refused_before_the_folder_is_made(tmp_path):
    """Every demo row is scored with SSIM, whose 11x11 window needs crops of 11 or more: a
    smaller --crop failed after the first model had run, in words that did not name --crop."""
    from flowrestore.metrics import ssim

    out = tmp_path / "d"
    with pytest.raises(ConfigError, match=f"--crop {SSIM_MIN_CROP - 1}: .*SSIM"):
        plan_demo(tasks=("deblur",), crop=SSIM_MIN_CROP - 1, out=str(out), device="cpu")
    assert not out.exists()
    # the smallest crop the plan takes is one SSIM scores (of an image against itself: 1)
    plan = plan_demo(tasks=("deblur",), crop=SSIM_MIN_CROP, out=str(out), device="cpu")
    x = torch.rand(1, 3, plan.crop, plan.crop, generator=torch.Generator().manual_seed(0))
    assert float(ssim(x, x)) == pytest.approx(1.0)


def test_a_seed_the_solvers_cannot_take_is_refused_in_the_plan(tmp_path):
    """The solvers' generator is seeded with seed + 1, below 2**63: a larger --seed was
    refused only after the photos were loaded, as 'evaluate: seed'."""
    out = tmp_path / "d"
    with pytest.raises(ConfigError, match=r"--seed 9223372036854775807"):
        plan_demo(tasks=("deblur",), crop=16, seed=2**63 - 1, out=str(out), device="cpu")
    assert not out.exists()
    assert plan_demo(tasks=("deblur",), crop=16, seed=2**63 - 2, out=str(out)).seed == 2**63 - 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_an_unusable_device_is_refused_before_the_demo_folder_is_made(tmp_path, capsys):
    out = tmp_path / "new" / "demo"
    assert main(["demo", "--task", "deblur", "--device", "cuda", "--out", str(out)]) == 2
    assert "CUDA is not available" in _one_line(capsys)
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- toy demo
@pytest.mark.parametrize(
    "option", [["--steps", "3"], ["--solver", "euler"], ["--crop", "32"], ["--out", "x"]]
)
def test_the_toy_demo_refuses_the_photo_options_it_would_ignore(
    option, tmp_path, monkeypatch, capsys
):
    """--task toy runs fixed solvers and step counts on the CPU and writes nothing: --steps 3,
    --solver euler, --crop or --out were accepted and silently ignored."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--task", "toy", "--quick", *option]) == 2
    line = _one_line(capsys)
    assert f"--task toy does not take {option[0]}" in line
    assert capsys.readouterr().out == "" and not (tmp_path / "x").exists()


def test_the_toy_demo_takes_seed_and_threads(monkeypatch, capsys):
    """--seed reaches the toy tables' samples (it was dropped), --threads the CPU setting."""
    import flowrestore.demo.toy as toy

    seen = {}
    monkeypatch.setattr(toy, "run", lambda **kw: seen.update(kw) or "tables")
    threads = torch.get_num_threads()
    try:
        assert main(["demo", "--task", "toy", "--quick", "--seed", "7", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert seen == {"quick": True, "seed": 7} and capsys.readouterr().out == "tables\n"


# ----------------------------------------------------------------------------- restore
def test_restore_takes_paths_after_options(photos, tmp_path, monkeypatch):
    """``restore a.png --steps 1 b.png -o out`` restores both files (the second path was
    refused as an unrecognized argument); an unknown option is still refused in one line."""
    import flowrestore.cli as cli

    got = {}
    monkeypatch.setattr(cli, "_restore", lambda args: got.update(vars(args)) or 0)
    a, b = map(str, photos)
    assert main(["restore", a, "--steps", "3", b, "-o", str(tmp_path / "o")]) == 0
    assert got["paths"] == [a, b] and got["steps"] == 3 and got["command"] == "restore"
    with pytest.raises(SystemExit) as exc:
        main(["restore", a, "--steps", "3", "--bogus", b, "-o", str(tmp_path / "o")])
    assert exc.value.code == 2


def test_a_usage_error_found_after_the_folder_was_made_leaves_no_folder(photos, tmp_path, capsys):
    """--tile 5 is refused once the model's overlap is known, after the output folder (and its
    parents) were made: they were left behind, empty. A folder that was there stays."""
    out = tmp_path / "new" / "out"
    argv = ["--tile", "5", "--steps", "1", "--device", "cpu", "--no-progress"]
    assert main(["restore", str(photos[0]), "-o", str(out), *argv]) == 2
    assert "tile must be" in _one_line(capsys)
    assert not (tmp_path / "new").exists()
    there = tmp_path / "there"
    there.mkdir()
    assert main(["restore", str(photos[0]), "-o", str(there), *argv]) == 2
    assert there.is_dir()


# ----------------------------------------------------------------------------- demo files
def test_a_failed_figure_write_leaves_the_earlier_demo_files_whole(tmp_path, monkeypatch, capsys):
    """A full disk while the figure is saved: the earlier figure stays whole, so a rerun still
    knows it as the demo's own (a truncated one was 'not written by flowrestore demo', and every
    later run into that folder was refused)."""
    from matplotlib.figure import Figure

    out = tmp_path / "demo"
    argv = ["demo", "--task", "deblur", "--crop", "12", "--steps", "1", "--solver", "euler"]
    argv += ["--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(self, fname, *args, **kwargs):
        data = b"\x89PNG\r\n\x1a\npartial"
        if isinstance(fname, (str, os.PathLike)):
            with open(fname, "wb") as f:
                f.write(data)
        else:
            fname.write(data)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(OSError, match="No space left"):
        main(argv)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file either
    assert check_demo_outputs(out) == out
    capsys.readouterr()


def test_a_solver_or_step_count_given_twice_runs_once(tmp_path):
    """``--solver euler euler --steps 2 2`` ran (and printed) the same run four times."""
    plan = plan_demo(
        tasks=("deblur",),
        solvers=["euler", "heun", "euler"],
        steps=[2, 1, 2],
        crop=16,
        out=str(tmp_path / "d"),
    )
    runs = [r[:2] for r in plan.tasks[0].runs]
    assert runs == [("euler", 2), ("euler", 1), ("heun", 2), ("heun", 1)]


@pytest.mark.parametrize("task", ["deblur", "sr4", "dirac-deblur"])
def test_the_overlap_help_states_each_shipped_models_default(task, photos, tmp_path, capsys):
    """--overlap's help said 48 px for every shipped model; dirac-deblur's steps also apply a
    blur, and its default overlap is wider. The stated number is the one a run uses (read from
    the refusal of a tile too small for it)."""
    import re

    from flowrestore.cli import build_parser

    helps = {a.dest: a.help for a in build_parser().subcommands["restore"]._actions}
    stated = re.search(rf"(?<![\w-]){re.escape(task)} (\d+)", helps["overlap"])
    assert stated is not None, helps["overlap"]
    argv = ["restore", str(photos[0]), "-o", str(tmp_path / "o"), "--task", task]
    assert main([*argv, "--tile", "5", "--device", "cpu", "--no-progress"]) == 2
    used = re.search(r"overlap=(\d+)", _one_line(capsys))
    assert used is not None and used.group(1) == stated.group(1)


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"steps": [0]}, "--steps takes step counts, each an int >= 1, got 0"),
        ({"steps": [2.5]}, "--steps takes step counts, each an int >= 1, got 2.5"),
        ({"crop": 12.0}, "--crop must be an int (pixels), got 12.0"),
        ({"crop": 0}, "--crop 0: the SSIM score needs crops of at least 11x11"),
        ({"solvers": [1]}, "--solver takes solver names"),
        ({"threads": 0}, "--threads must be a positive int or None, got 0"),
    ],
)
def test_the_demo_plan_refuses_step_counts_and_crops_of_the_wrong_kind(kw, words, tmp_path):
    """plan_demo / demo.photos.run (the Python API) took steps=[0] or [2.5], crop=12.0 and
    threads=0 into the plan (crop=0 as the default 192); they failed (or ran a 0-step solve)
    after the folder was made."""
    out = tmp_path / "d"
    with pytest.raises(ConfigError) as exc:
        plan_demo(tasks=("deblur",), out=str(out), device="cpu", **kw)
    assert words in str(exc.value) and not out.exists()


def test_the_demo_plan_takes_one_solver_name_or_step_count_bare(tmp_path):
    """solvers="euler" ran as the solvers "e", "u", ... (refused as 'e'); steps=5 raised a
    TypeError. One name / one count means that one."""
    plan = plan_demo(tasks=("deblur",), solvers="euler", steps=np.int64(5), out=str(tmp_path))
    assert [r[:2] for r in plan.tasks[0].runs] == [("euler", 5)]


def test_the_toy_tables_time_no_one_time_setup(monkeypatch):
    """The first row of the toy table (Euler, 2 steps) carried the process's one-time setup
    (0.6 s against 0.001 s for the others): the slowest solver at the fewest steps. A first
    solve that costs 0.3 s more now shows in no row."""
    import time

    import flowrestore as fr
    from flowrestore.demo.toy import gaussian_table

    solve, calls = fr.solve, []

    def first_call_slow(*args, **kwargs):
        if not calls:
            time.sleep(0.3)
        calls.append(1)
        return solve(*args, **kwargs)

    monkeypatch.setattr(fr, "solve", first_call_slow)
    rows = gaussian_table(dim=4, batch=2, steps=(2,))
    timed = [r["seconds"] for r in rows if r["steps"] != "adaptive"]
    assert len(timed) == 5 and max(timed) < 0.3
