"""The command line: demo tables, the model list, plain-text help, and one-line usage errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowrestore.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_toy_demo_prints_tables(capsys):
    assert main(["demo", "--task", "toy", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "Gaussian prior" in out and "landing frequency" in out
    # every solver row reports a finite error
    rows = [line for line in out.splitlines() if line.startswith("| ") and "e-" in line]
    assert len(rows) >= 10


def test_pretrained_lists_the_shipped_predictors_and_what_they_expect(capsys):
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    for name in ("indi-deblur", "indi-sr4", "dirac-deblur"):
        assert f"{name}:" in out
    assert "python -m flowrestore.training.trainer" in out
    blocks = out.split("\n" + "dirac-deblur:")[0], out.split("indi-deblur:")[1]
    deblur = blocks[1].split("indi-sr4:")[0]
    assert "Gaussian" in deblur and "halos" in deblur
    assert "4x smaller" in out.split("indi-sr4:")[1]


def test_demo_defaults_to_the_photo_tasks():
    args = build_parser().parse_args(["demo"])
    assert args.task == "all" and args.func.__name__ == "_demo"


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_help_is_plain_text_and_states_each_models_degradation(capsys):
    texts = {
        " ".join(a): _help(a, capsys)
        for a in (["--help"], ["restore", "--help"], ["pretrained", "--help"])
    }
    for text in texts.values():
        for markup in ("``", "**", ":class:", ":func:"):
            assert markup not in text
        assert not re.search(r"::\s*$", text, flags=re.M)  # no reST literal blocks
    restore = " ".join(texts["restore --help"].split())  # unwrap lines
    assert "--no-progress do not show the progress bar" in restore
    assert "--task deblur (indi-deblur): a photo blurred by a Gaussian" in restore
    assert "adds halos" in restore
    assert "--task sr4 (indi-sr4): an image 4x smaller" in restore
    assert "--task dirac-deblur: a photo blurred" in restore


def test_deblur_on_a_sharp_photo_adds_halos_as_the_help_says():
    import flowrestore as fr
    from flowrestore.pretrained import flow_for, heldout_crops, pretrained

    _, x = heldout_crops(64)  # sharp photos, not blurred
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; one thread runs the U-Net fastest here
    try:
        out = fr.solve(flow_for(pretrained("indi-deblur")), fr.SemiLinearMultistep(), x, steps=10).x
        out = out.clamp(0, 1)
    finally:
        torch.set_num_threads(threads)
    lap = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]]).expand(3, 1, 3, 3)

    def energy(z):
        return torch.nn.functional.conv2d(z, lap, groups=3).pow(2).mean()

    assert energy(out) > 3 * energy(x)  # over-sharpened: several times the high frequencies


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


def _usage_error(argv, capsys) -> str:
    """Run the command; it must exit with code 2 and one line on stderr, no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "option,expected",
    [
        (["--task", "bogus"], "argument --task: invalid choice: 'bogus'"),
        (["--solver", "bogus"], "argument --solver: invalid choice: 'bogus'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--steps", "0"], "argument --steps: must be a positive integer, got '0'"),
        (["--steps", "ten"], "argument --steps: must be a positive integer, got 'ten'"),
        (["--threads", "-1"], "argument --threads: must be a positive integer, got '-1'"),
        (["--batch-size", "0"], "argument --batch-size"),
        (["--tile", "-5"], "argument --tile: must be an integer >= 0"),
        (["--memory", "0"], "argument --memory"),
        (["--seed", "-3"], "argument --seed"),
        (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
        (["--task", "deblur", "--solver", "em"], "solver 'em' does not apply to indi predictors"),
        (["--checkpoint", "missing.ckpt"], "checkpoint 'missing.ckpt': no such file"),
        (["--tile", "20"], "tile must be >= 2 * overlap"),
        (["--task", "deblur", "--no-upsample"], "--no-upsample applies to super-resolution"),
    ],
)
def test_bad_options_are_one_line_usage_errors(option, expected, photo, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 120, 3), np.uint8)).save(big)
    argv = [
        "restore",
        str(photo),
        str(big),
        "-o",
        str(tmp_path / "out"),
        "--no-progress",
        "--device",
        "cpu",
        *option,
    ]
    err = _usage_error(argv, capsys)
    assert expected in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))


def test_a_missing_input_is_a_usage_error_before_the_output_folder_is_made(photo, tmp_path, capsys):
    """A mistyped input name is refused in one line, and nothing is created, even where the
    other inputs exist."""
    out = tmp_path / "o"
    for paths in ([tmp_path / "nope.png"], [photo, tmp_path / "nope.png"]):
        err = _usage_error(["restore", *map(str, paths), "-o", str(out)], capsys)
        assert f"input {str(tmp_path / 'nope.png')!r}: no such file or folder" in err
        assert not out.exists()


def test_no_images_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _usage_error(["restore", str(tmp_path / "empty"), "-o", str(tmp_path / "o")], capsys)
    assert "no image files found" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_requested_without_cuda_is_a_clear_one_line_error(photo, tmp_path, capsys):
    err = _usage_error(
        ["restore", str(photo), "-o", str(tmp_path / "o"), "--device", "cuda"], capsys
    )
    assert "CUDA is not available" in err and "--device cpu" in err


def test_debug_shows_the_traceback(photo, tmp_path):
    from flowrestore.errors import ConfigError

    with pytest.raises(ConfigError, match="is an existing file"):
        main(["restore", str(photo), "-o", str(photo), "--debug", "--device", "cpu"])


def test_console_error_is_one_line_without_traceback(photo, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "flowrestore.cli", "restore", str(photo), "-o", str(photo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"flowrestore restore: error: output folder {str(photo)!r} is an existing file, "
        f"not a folder"
    ]


# ----------------------------------------------------------------------------- the real entry point
def _entry() -> list[str]:
    exe = Path(sys.executable).with_name("flowrestore")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "flowrestore.cli"]


def _cli(*args, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*_entry(), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The process exited with ``code`` and wrote exactly one line, no traceback, to stderr."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["demo", "--steps", "0"], "argument --steps: must be a positive integer, got '0'"),
        (
            ["demo", "--crop", "5"],
            "argument --crop: must be an integer >= 11 (the SSIM window), got '5'",
        ),
        (["demo", "--task", "sr4", "--crop", "30"], "--crop 30: task sr4 needs a multiple of 4"),
        (["demo", "--solver", "foo"], "argument --solver: invalid choice: 'foo'"),
        (["demo", "--task", "deblur", "--solver", "em"], "--solver em does not apply"),
        (["demo", "--task", "dirac-deblur", "--solver", "heun"], "--solver heun does not apply"),
        (["demo", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["demo", "--out", "/proc/flowrestore-demo"], "output folder '/proc/flowrestore-demo'"),
        (["demo", "--crop", "4000", "--task", "deblur"], "larger than"),
        (["bogus"], "argument command: invalid choice: 'bogus'"),
    ],
)
def test_demo_usage_errors_are_one_line_with_exit_code_2(args, expected, tmp_path):
    line = _one_line(_cli(*args, cwd=tmp_path))
    assert expected in line, line
    assert not (tmp_path / "flowrestore-demo").exists()  # nothing ran, nothing was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_demo_on_cuda_without_cuda_is_one_line(tmp_path):
    line = _one_line(_cli("demo", "--device", "cuda", cwd=tmp_path))
    assert "CUDA is not available" in line and "--device cpu" in line


def test_demo_help_says_which_solvers_it_runs():
    proc = _cli("demo", "--help")
    assert proc.returncode == 0 and not proc.stderr
    text = " ".join(proc.stdout.split())
    assert "deblur, sr4 (InDI):" in text and "multistep 6, 10 steps (last)" in text
    assert "multistep is restore's default" in text and "em is restore's default" in text
    assert "dirac-deblur (Dirac): phi (one-shot clean estimate, 1 NFE)" in text


def test_version_and_help_answer_without_importing_torch():
    probe = (
        "import json, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from flowrestore.cli import main\n"
        "try:\n"
        "    code = main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'code': code,\n"
        "                  'seconds': time.perf_counter() - t0}), file=sys.stderr)\n"
    )
    cases = {
        ("--version",): 0,
        ("--help",): 0,
        ("restore", "--help"): 0,
        ("demo", "--help"): 0,
        ("pretrained",): 0,
        ("restore", "x.png", "-o", "out", "--steps", "0"): 2,
        ("demo", "--solver", "foo"): 2,
        ("demo", "--task", "deblur", "--solver", "em"): 2,
    }
    for args, code in cases.items():
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120
        )
        report = json.loads(proc.stderr.strip().splitlines()[-1])
        assert report["code"] == code and not report["torch"], (args, report, proc.stderr)
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == "flowrestore 0.1.0"


def test_pretrained_labels_the_input_row_and_states_the_noise_each_model_expects():
    proc = _cli("pretrained")
    assert proc.returncode == 0
    out = proc.stdout
    blocks = {b.split(":", 1)[0]: b for b in re.split(r"\n(?=\S)", out)}
    assert set(blocks) == {"dirac-deblur", "indi-deblur", "indi-sr4"}
    for block in blocks.values():
        assert "degraded input (no restoration)" in block and "NFE   0" in block
    flat = {k: " ".join(v.split()) for k, v in blocks.items()}
    assert "with noise of std 0.05" in flat["dirac-deblur"]
    assert "with noise of std 0.01" in flat["indi-deblur"]
    assert "with noise of std 0" in flat["indi-sr4"]
    help_text = " ".join(_cli("restore", "--help").stdout.split())
    for name, task in (("dirac-deblur", "dirac-deblur"), ("indi-deblur", "deblur")):
        sentence = flat[name].split(f"restore --task {task}: expects ", 1)[1].split(".")[0]
        assert sentence in help_text  # the same words in both places


def test_checkpoint_that_is_not_one_is_a_one_line_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello, this is not a checkpoint\n")
    line = _one_line(
        _cli("restore", "a.png", "-o", "out", "--checkpoint", "notes.txt", "--device", "cpu",
             cwd=tmp_path)
    )  # fmt: skip
    assert "checkpoint 'notes.txt' is not a PyTorch file" in line, line
    zipped = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, zipped)
    line = _one_line(
        _cli("restore", "a.png", "-o", "out", "--checkpoint", zipped, "--device", "cpu",
             cwd=tmp_path)
    )  # fmt: skip
    assert "is not a flowrestore training checkpoint (flowrestore-checkpoint/1 file)" in line, line


def test_restore_passes_its_options_through_and_exits_1_when_a_file_failed(tmp_path, monkeypatch):
    """``--memory`` is MiB (the run gets bytes), ``--steps 1`` is accepted, and the exit code is
    1 when any file failed, 0 otherwise (the run itself replaced by a recorder)."""
    from types import SimpleNamespace

    import flowrestore.restore as R

    img = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(img)
    seen = {}

    def fake(paths, out, **kw):
        seen.update(kw)
        return SimpleNamespace(failed=seen.pop("_failed", []))

    monkeypatch.setattr(R, "restore_files", fake)
    args = ["restore", str(img), "-o", str(tmp_path / "o"), "--device", "cpu", "--threads", "1"]
    assert main([*args, "--steps", "1", "--memory", "3"]) == 0
    assert seen["memory_budget"] == 3 * 2**20 and seen["steps"] == 1
    seen.clear()
    assert main(args) == 0 and seen["memory_budget"] is None
    seen["_failed"] = ["a.png"]
    assert main(args) == 1


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 2), (5, 4), (16, 4)])
def test_default_threads_leave_one_core_free_up_to_four(monkeypatch, cores, expected):
    from flowrestore import runtime

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _: set(range(cores)), raising=False)
    assert runtime.default_threads() == expected
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert runtime.default_threads() == 7
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.default_threads() == 1


def test_default_threads_without_affinity_count_the_cpus(monkeypatch):
    from flowrestore import runtime

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delattr(runtime.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: None)
    assert runtime.default_threads() == 1  # unknown: one thread
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 3)
    assert runtime.default_threads() == 2


def test_every_stated_default_is_the_parsed_default():
    """An option whose help says ``(default N)`` parses to N when it is not given."""
    parser = build_parser()
    subs = next(a for a in parser._actions if a.choices and "restore" in a.choices).choices
    checked = 0
    for name, sub in subs.items():
        for action in sub._actions:
            m = re.search(r"\(default (-?\d+(?:\.\d+)?)\)", action.help or "")
            if m is None or not action.option_strings:
                continue
            assert action.default == type(action.default)(m.group(1)), (name, action.dest)
            checked += 1
    assert checked >= 2  # restore's --steps and --batch-size at least


def test_demo_crop_takes_sizes_from_11():
    """The SSIM score's window is 11x11: the parser refuses a smaller crop at once."""
    assert build_parser().parse_args(["demo", "--crop", "11"]).crop == 11
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--crop", "10"])


def test_a_broken_link_or_a_pipe_in_a_folder_is_reported_not_opened(photo, tmp_path, capsys):
    """Entries of an input folder named like images that are no regular file are reported as
    failed (exit 1) and never opened — a pipe would block the run — while the rest restore."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(photo.read_bytes())
    (folder / "b.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(folder / "c.png")
    out = tmp_path / "out"
    argv = ["restore", str(folder), "-o", str(out), "--steps", "1", "--no-progress"]
    assert main([*argv, "--device", "cpu"]) == 1
    text = capsys.readouterr()
    assert f"{folder / 'b.png'}: a broken link, skipped" in text.out + text.err
    assert f"{folder / 'c.png'}: no regular file, skipped" in text.out + text.err
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png"]


def test_python_dash_m_flowrestore_is_the_command_line():
    """``python -m flowrestore`` runs the same command line as the console script."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "flowrestore", "demo", "--crop", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "argument --crop: must be an integer >= 11" in out.stderr
