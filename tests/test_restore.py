"""``flowrestore restore`` on files as users have them: folders, corrupt files, names across runs,
one file by several spellings, unwritable outputs, EXIF rotation, 16-bit, alpha, CMYK, palette,
tiles, sr4 sizes and sharding by rank."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import flowrestore as fr
import flowrestore.restore as restore_mod
import flowrestore.restore.estimates as estimates
from flowrestore.cli import main
from flowrestore.methods.registry import make_solver
from flowrestore.restore import list_inputs, output_name, restore_files

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("keep_threads")


def _png(path, size=(24, 20), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _png(d / "a.png", seed=1)
    _png(d / "b.png", seed=2)
    _png(d / "c.jpg", size=(16, 12), seed=3)
    _png(d / "grey.png", size=(20, 20), mode="L", seed=4)
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (d / "notes.txt").write_text("not an image")
    return d


def _restore(args):
    return main(["restore", *args, "--no-progress", "--steps", "2", "--device", "cpu"])


class Identity(torch.nn.Module):
    """F(x, t) = x: every solver returns its input, so a restoration is a pure file round trip."""

    multiple = 4

    def __init__(self, task="deblur"):
        super().__init__()
        self.zero = torch.nn.Parameter(torch.zeros(()), requires_grad=False)
        params = {"factor": 4, "upsample": "bicubic"} if task == "sr4" else {}
        self.metadata = {"method": "indi", "task": task, "task_params": params}

    def forward(self, x, t):
        return x + self.zero


def _identity(inputs, out, **kw):
    return restore_files(
        inputs,
        out,
        model=Identity(),
        solver="euler",
        steps=1,
        device="cpu",
        progress=False,
        log=lambda *_: None,
        **kw,
    )


def test_folder_with_a_corrupt_file_restores_the_others(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _restore([str(folder), "-o", str(out)])
    text = capsys.readouterr()
    assert rc == 1  # a file failed
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c_jpg.png", "grey.png"]
    both = text.err + text.out
    assert both.count("FAILED") == 1 and both.count("corrupt.png:") == 1  # reported once
    assert "restored 4, skipped 0, failed 1" in text.out
    assert "[rank" not in both and "restore[" not in both  # one process: no rank tags
    assert "Traceback" not in both
    with Image.open(out / "c_jpg.png") as im:
        assert im.size == (16, 12) and im.mode == "RGB"
    with Image.open(out / "grey.png") as im:
        assert im.mode == "L"


def test_existing_outputs_are_kept_unless_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "out"
    good = [str(folder / n) for n in ("a.png", "b.png")]
    assert _restore([*good, "-o", str(out)]) == 0
    first = (out / "a.png").read_bytes()
    inode = (out / "a.png").stat().st_ino
    capsys.readouterr()
    assert _restore([*good, "-o", str(out)]) == 0
    assert "skipped 2" in capsys.readouterr().out
    assert (out / "a.png").stat().st_ino == inode  # kept
    # --overwrite replaces an earlier output of restore (written anew: a new file, same bytes)
    assert _restore([*good, "-o", str(out), "--overwrite"]) == 0
    assert (out / "a.png").stat().st_ino != inode and (out / "a.png").read_bytes() == first
    # ... but never a file restore did not write
    (out / "a.png").write_bytes(b"keep me")
    capsys.readouterr()
    assert _restore([*good, "-o", str(out), "--overwrite"]) == 0
    assert (out / "a.png").read_bytes() == b"keep me"
    assert "restored 1, skipped 1 (output name taken by another file)" in capsys.readouterr().out


def test_output_names_depend_only_on_the_input_path(tmp_path, capsys):
    assert output_name("x/a.png") == output_name("y/z/a.png") == "a.png"
    assert output_name("x/a.jpg") == "a_jpg.png" and output_name("a.PNG") == "a.png"
    assert output_name(Path("photo.tiff")) == "photo_tiff.png"
    d = tmp_path / "in"
    d.mkdir()
    _png(d / "a.png", seed=1)
    out = tmp_path / "out"
    assert _identity([d / "a.png"], out).restored  # run 1: a.png alone
    _png(d / "a.jpg", seed=2)
    report = _identity([d], out)  # run 2: a.png and a.jpg; a.png's earlier output is seen
    assert [Path(p).name for p, _ in report.skipped] == ["a.png"]
    assert [Path(t).name for _, t in report.restored] == ["a_jpg.png"]
    report = _identity([d], out, overwrite=True)
    assert sorted(Path(t).name for _, t in report.restored) == ["a.png", "a_jpg.png"]


def test_two_inputs_with_one_output_name_fail_instead_of_renaming(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        _png(tmp_path / sub / "a.png", seed=len(sub))
    _png(tmp_path / "x" / "b.png", seed=5)
    report = _identity([tmp_path / "x", tmp_path / "y"], tmp_path / "out")
    assert sorted(Path(p).parent.name for p, _ in report.failed) == ["x", "y"]
    assert all("different -o folders" in why for _, why in report.failed)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]


def test_one_file_given_three_ways_is_restored_once(tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    _png(d / "a.png")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    spellings = [str(Path("..") / "in" / "a.png"), str(d / "a.png"), str(d / ".." / "in")]
    files, problems = list_inputs(spellings)
    assert len(files) == 1 and problems == []
    report = _identity(spellings, tmp_path / "out")
    assert len(report.restored) == 1 and not report.failed
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]


def test_small_same_size_images_are_batched(tmp_path):
    for i in range(3):
        _png(tmp_path / f"s{i}.png", seed=i)
    _png(tmp_path / "other.png", size=(30, 20))
    model, batches = Identity(), []
    model.register_forward_hook(lambda m, args, out: batches.append(tuple(args[0].shape)))
    restore_files(
        [tmp_path],
        tmp_path / "out",
        model=model,
        solver="euler",
        steps=1,
        batch_size=2,
        device="cpu",
        progress=False,
        log=lambda *_: None,
    )
    batches = sorted((b, h, w) for b, _, h, w in batches if (h, w) != (16, 16))  # 16: NFE probe
    assert batches == [(1, 20, 24), (1, 20, 30), (2, 20, 24)]  # 24x20: 2 then 1; 30x20: alone


def test_restoring_into_the_input_folder_does_not_replace_the_input(tmp_path):
    _png(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    report = _identity([tmp_path / "a.png"], tmp_path, overwrite=True)
    assert report.failed and "replace the input" in report.failed[0][1]
    assert (tmp_path / "a.png").read_bytes() == before


def _make_unwritable(path: Path):
    """A folder this process cannot write into, or None (root without chattr)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        return lambda: subprocess.run([chattr, "-i", str(path)], check=False)
    return None


def test_unwritable_output_is_a_one_line_usage_error_before_any_work(
    folder, tmp_path, capsys, monkeypatch
):
    def no_restoration(*args, **kwargs):
        raise AssertionError("restoration started although the output folder is unusable")

    monkeypatch.setattr(restore_mod, "load_model", no_restoration)
    monkeypatch.setattr(restore_mod, "restore_files", no_restoration)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = {"cannot be created": blocker / "sub", "is an existing file": blocker}
    locked = tmp_path / "locked"
    undo = _make_unwritable(locked)
    if undo is not None:
        cases["is not writable"] = locked
    try:
        for why, out in cases.items():
            assert _restore([str(folder), "-o", str(out)]) == 2
            err = capsys.readouterr().err
            assert why in err and str(out) in err
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        if undo is not None:
            undo()
    if undo is None:
        pytest.skip("root without chattr: the permission case could not be set up")


def test_exif_rotated_jpeg_comes_out_upright_with_its_metadata(tmp_path):
    from test_imageio import MAKE, ORIENTATION, _rotated_jpeg, icc_of

    _rotated_jpeg(tmp_path / "phone.jpg")
    assert _restore([str(tmp_path / "phone.jpg"), "-o", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "phone_jpg.png") as im:
        assert im.size == (200, 300)  # as displayed, not as stored (300x200)
        exif = im.getexif()
        assert exif.get(ORIENTATION) == 1 and exif.get(MAKE) == "TestCamera"
        assert im.info.get("icc_profile") == icc_of(tmp_path / "phone.jpg")
        red = np.asarray(im.convert("RGB"), dtype=np.float64)[..., 0]
    assert red[:40, -30:].mean() > 180 and red[:40, :30].mean() < 120  # block at the top right


def test_sixteen_bit_png_with_small_values_stays_dark_and_sixteen_bit(tmp_path):
    a = (np.add.outer(np.arange(32), np.arange(40)) * 3 % 256).astype(np.uint16)  # all <= 255
    Image.fromarray(a).save(tmp_path / "dark.png")
    out = tmp_path / "out"
    _identity([tmp_path / "dark.png"], out)
    with Image.open(out / "dark.png") as im:
        assert im.mode.startswith("I;16")
        got = np.asarray(im).astype(np.int64)
    assert np.abs(got - a).max() <= 1  # identity: within 1/65535
    assert _restore([str(tmp_path / "dark.png"), "-o", str(tmp_path / "model")]) == 0
    with Image.open(tmp_path / "model" / "dark.png") as im:
        assert im.mode.startswith("I;16")
        got = np.asarray(im).astype(np.float64)
    assert got.max() < 2000 and abs(got.mean() - a.mean()) < 100  # not 257x brighter


def test_rgba_cmyk_and_palette_inputs(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "CMYK").save(
        tmp_path / "cmyk.jpg"
    )
    pal = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).quantize(8)
    pal.save(tmp_path / "pal.png", transparency=0)
    out = tmp_path / "out"
    assert _restore([str(tmp_path), "-o", str(out)]) == 0
    with Image.open(out / "rgba.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    with Image.open(out / "cmyk_jpg.png") as im:
        assert im.mode == "RGB" and im.size == (24, 20)
    with Image.open(out / "pal.png") as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3] == 0, np.asarray(pal) == 0)


def test_large_image_is_tiled_with_an_estimate_and_matches_whole(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (150, 260, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "big.png")
    monkeypatch.setattr(estimates, "ESTIMATE_ABOVE", 0)  # print the estimate for a small job
    args = [str(tmp_path / "big.png"), "--solver", "euler", "--steps", "1"]
    assert _restore([*args, "-o", str(tmp_path / "tiled"), "--tile", "128"]) == 0
    text = capsys.readouterr().out
    assert re.search(
        r"estimate: 1 image\(s\).* 6 tile\(s\).*about \d+ s.*peak memory about \d+ MB", text
    )
    assert text.index("estimate:") < text.index("restored ")
    assert _restore([*args, "-o", str(tmp_path / "whole"), "--tile", "0"]) == 0
    with (
        Image.open(tmp_path / "tiled" / "big.png") as a,
        Image.open(tmp_path / "whole" / "big.png") as b,
    ):
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
    assert diff.max() <= 1  # one 8-bit level at most (README: < 1/255 at the seams)


def test_sr4_output_is_four_times_larger_and_dirac_runs(folder, tmp_path):
    out = tmp_path / "sr"
    args = [str(folder / "c.jpg"), "--task", "sr4", "--solver", "euler", "-o", str(out)]
    assert _restore(args) == 0
    with Image.open(out / "c_jpg.png") as im:
        assert im.size == (64, 48)
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 77
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    restore_files(
        [tmp_path / "alpha.png"],
        out,
        model=Identity("sr4"),
        solver="euler",
        steps=1,
        device="cpu",
        progress=False,
        log=lambda *_: None,
    )
    with Image.open(out / "alpha.png") as im:
        assert im.size == (24, 20) and np.all(np.asarray(im)[..., 3] == 77)
    out2 = tmp_path / "dirac"
    assert _restore([str(folder / "a.png"), "--task", "dirac-deblur", "-o", str(out2)]) == 0
    assert (out2 / "a.png").exists()


def test_ranks_split_the_files_without_overlap(folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    seen = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        _restore([str(folder), "-o", str(out)])
        seen += re.findall(r"^restored (\S+) -> ", capsys.readouterr().out, flags=re.M)
    good = [str(p) for p in list_inputs([folder])[0] if p.name != "corrupt.png"]
    assert sorted(seen) == sorted(good)


def _torchrun():
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    if shutil.which("torchrun"):
        return [shutil.which("torchrun")]
    return None


@pytest.mark.distributed
def test_torchrun_restores_every_file_exactly_once(tmp_path):
    launcher = _torchrun()
    if launcher is None:
        pytest.skip("torchrun not found next to the interpreter or on PATH")
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        _png(d / f"img{i}.png", size=(16 + 4 * (i % 2), 16), seed=i)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            *launcher,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "flowrestore.cli",
            "restore",
            str(d),
            "-o",
            str(out),
            "--steps",
            "1",
            "--no-progress",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    restored = re.findall(r"restored (\S+) -> ", proc.stdout)
    assert sorted(restored) == sorted(str(d / f"img{i}.png") for i in range(5)), proc.stdout
    assert "[rank 0/2]" in proc.stdout and "[rank 1/2]" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"img{i}.png" for i in range(5)]


def test_sixteen_bit_grey_and_a_trainer_checkpoint(tmp_path):
    from flowrestore.training import TrainConfig, train
    from flowrestore.training.checkpoint import save_checkpoint

    d = tmp_path / "in"
    d.mkdir()
    a = (np.linspace(0, 60000, 20 * 24).reshape(20, 24)).astype(np.uint16)
    Image.fromarray(a).save(d / "deep.png")
    cfg = TrainConfig(steps=2, patch_size=16, batch_size=2, unet={"base_channels": 8})
    model, hist = train(cfg, progress=False)
    ck = tmp_path / "tiny.pt"
    save_checkpoint(ck, model, hist.ema, None, 2, cfg)
    out = tmp_path / "out"
    assert _restore([str(d), "--checkpoint", str(ck), "--solver", "euler", "-o", str(out)]) == 0
    with Image.open(out / "deep.png") as im:
        assert im.mode.startswith("I;16")  # 16 bits in, 16 bits out
        got = np.asarray(im, dtype=np.float64)
    # a 2-step model is close to the identity (residual U-Net): the ramp survives, not clipped
    assert abs(got.mean() - a.mean()) < 20 * 257 and got.max() > 150 * 257


def test_a_dirac_file_restores_the_same_alone_and_as_the_seventh_of_a_folder(tmp_path):
    """Each file's noise comes from --seed and its content, not its place in the list: the 7th
    file of a folder (batched with others of its size) restores exactly as it does alone."""
    from flowrestore.restore import file_seed, load_model

    d = tmp_path / "in"
    d.mkdir()
    for i in range(8):
        _png(d / f"f{i}.png", size=(24, 20), seed=10 + i)
    model = load_model("dirac-deblur", device="cpu")
    kw = dict(model=model, steps=2, device="cpu", progress=False, log=lambda *_: None)
    restore_files([d], tmp_path / "folder", **kw)
    restore_files([d / "f6.png"], tmp_path / "alone", **kw)
    with (
        Image.open(tmp_path / "folder" / "f6.png") as a,
        Image.open(tmp_path / "alone" / "f6.png") as b,
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    restore_files([d / "f6.png"], tmp_path / "seed1", seed=1, **kw)
    with (
        Image.open(tmp_path / "seed1" / "f6.png") as c,
        Image.open(tmp_path / "alone" / "f6.png") as b,
    ):
        assert not np.array_equal(np.asarray(c), np.asarray(b))  # --seed still matters
    shutil.copy(d / "f6.png", tmp_path / "renamed.png")
    assert file_seed(tmp_path / "renamed.png", 0) == file_seed(d / "f6.png", 0)
    assert file_seed(d / "f6.png", 0) != file_seed(d / "f5.png", 0)
    assert file_seed(d / "f6.png", 0) != file_seed(d / "f6.png", 1)


def test_restoring_a_folder_into_itself_can_be_run_again(tmp_path, capsys):
    """Outputs carry a text chunk marking them as this tool's own; a second run into the input
    folder skips them (and the inputs whose outputs exist) instead of failing on every file."""
    d = tmp_path / "photos"
    d.mkdir()
    _png(d / "a.jpg", seed=1)
    _png(d / "b.jpg", size=(16, 12), seed=2)
    assert _restore([str(d), "-o", str(d)]) == 0
    assert sorted(p.name for p in d.iterdir()) == ["a.jpg", "a_jpg.png", "b.jpg", "b_jpg.png"]
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    capsys.readouterr()
    assert _restore([str(d), "-o", str(d)]) == 0
    text = capsys.readouterr().out
    assert (
        "restored 0, skipped 4 (output exists: 2; input is an output of flowrestore restore: 2), "
        "failed 0 of 4 files" in text
    )
    assert "a_jpg.png is an output of flowrestore restore" in text
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # a PNG of someone else's that would be replaced by its own output still fails
    _png(d / "c.png", seed=3)
    assert _restore([str(d), "-o", str(d)]) == 1
    assert "would replace the input" in capsys.readouterr().err


def test_sr4_input_is_upsampled_as_in_training(tmp_path):
    """sr4 upsamples a file's pixels with the task's own mode (bicubic) before restoring: with an
    identity model the output is the bicubic upsampling of the input, to one 8-bit level."""
    rng = np.random.default_rng(5)
    low = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(low).save(tmp_path / "low.png")
    restore_files(
        [tmp_path / "low.png"],
        tmp_path / "out",
        model=Identity("sr4"),
        solver="euler",
        steps=1,
        device="cpu",
        progress=False,
        log=lambda *_: None,
    )
    x = torch.from_numpy(low).permute(2, 0, 1)[None].double() / 255
    up = torch.nn.functional.interpolate(x, size=(40, 48), mode="bicubic", align_corners=False)
    want = (up.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round()
    with Image.open(tmp_path / "out" / "low.png") as im:
        got = np.asarray(im, dtype=np.float64)
    assert got.shape == (40, 48, 3) and np.abs(got - want).max() <= 1


def test_the_estimate_is_work_times_the_measured_rate(monkeypatch):
    """Time = processed pixels × evaluations × the rate measured on the largest tile; peak memory
    at least the largest tile batch's activations (``th·tw·batch·bytes per pixel``) and the
    largest image held as float32 (4 bytes per value, 3 channels)."""
    from types import SimpleNamespace

    import flowrestore.tiling as tiling

    monkeypatch.setattr(tiling, "count_evaluations", lambda *a, **k: 10)
    monkeypatch.setattr(tiling, "seconds_per_megapixel", lambda flow, shape: 0.5)
    monkeypatch.setattr(tiling, "activation_bytes_per_pixel", lambda model: 1000)
    monkeypatch.setattr(estimates, "_rss_bytes", lambda: 0)
    plan = SimpleNamespace(processed_pixels=2_000_000, tile_shape=(256, 512), batch=2, count=3)
    small = SimpleNamespace(processed_pixels=10, tile_shape=(8, 8), batch=1, count=1)
    jobs = [SimpleNamespace(plan=plan, size=(1000, 2000)), SimpleNamespace(plan=small, size=(2, 5))]
    settings = SimpleNamespace(flow=None, solver=None, steps=3, output="last", model=None,
                               device="cpu")  # fmt: skip
    lines = []
    estimates.estimate(jobs, settings, lines.append)
    (line,) = lines
    # (2e6 + 10) px × 10 evaluations = 2.00001e7 → 20.00001 Mpx-evaluations × 0.5 s = 10 s
    assert "about 10 s on cpu" in line and "4 tile(s) up to 256x512" in line and "2.0 Mpx" in line
    peak_mb = float(re.search(r"peak memory about (\d+) MB", line).group(1))
    floor = (256 * 512 * 2 * 1000 + 1000 * 2000 * 3 * 4) / 2**20
    assert floor <= peak_mb <= 2 * floor
    monkeypatch.setattr(tiling, "seconds_per_megapixel", lambda flow, shape: 600.0)
    estimates.estimate(jobs, settings, lines.append)
    assert "about 3.3 h on cpu" in lines[-1]  # 20.00001 × 600 s


@pytest.mark.parametrize("solver, steps, nfe", [("ipndm", 6, 6), ("bosh3", 3, 8), ("dopri5", 2, 8)])
def test_fixed_grid_solvers_restore_nearer_the_odes_answer_than_euler(tmp_path, solver, steps, nfe):
    """``--solver ipndm`` / ``bosh3`` / ``dopri5`` (on the predictor's declared spacing) land
    nearer the ODE's answer (the multistep solver with 20 steps) than Euler with the same number
    of evaluations (``nfe``, counted by the loop: Bosh3 4 + 3 + the landing, Dopri5 7 + the
    landing)."""
    import skimage.data

    from flowrestore.pretrained import flow_for
    from flowrestore.tiling import count_evaluations

    flow = flow_for(fr.pretrained("indi-deblur"))
    assert count_evaluations(flow, make_solver(solver), steps) == nfe
    Image.fromarray(skimage.data.astronaut()[100:148, 180:228]).save(tmp_path / "p.png")
    outs = {}
    for name, n in ((solver, steps), ("euler", nfe), ("multistep", 20)):
        out = tmp_path / name
        args = [str(tmp_path / "p.png"), "--solver", name, "-o", str(out), "--no-progress"]
        assert main(["restore", *args, "--steps", str(n), "--device", "cpu"]) == 0
        with Image.open(out / "p.png") as im:
            outs[name] = np.asarray(im, dtype=np.float64)
    err = {k: np.abs(outs[k] - outs["multistep"]).mean() for k in (solver, "euler")}
    assert err[solver] < 0.5 * err["euler"], err


def test_the_memory_estimate_starts_from_the_resident_set():
    """The peak estimate adds to what the process holds now, its resident set: at most its peak
    resident set so far (``ru_maxrss``; not the virtual size, which for a torch process is GBs
    of mapped but untouched memory), and more than a bare interpreter's few MB."""
    import resource
    import sys

    rss = estimates._rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else 1024
    )
    assert 10 * 2**20 < rss <= peak * 1.01


def test_without_proc_the_memory_estimate_reads_the_peak_in_bytes(monkeypatch):
    """Where ``/proc`` is missing the peak resident set is read instead, in bytes: ``ru_maxrss``
    counts KiB on Linux and bytes on macOS."""
    import builtins
    import resource

    def no_proc(path, *a, **k):
        raise OSError(path)

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(estimates.sys, "platform", "linux")
    assert estimates._rss_bytes() >= kib * 1024
    monkeypatch.setattr(estimates.sys, "platform", "darwin")
    assert kib <= estimates._rss_bytes() < kib * 2


def test_a_one_channel_trainer_checkpoint_restores_grey_and_colour_files(tmp_path):
    """A checkpoint trained with ``channels=1`` restores a 16-bit grey file as 16-bit grey and an
    RGBA file as grey with its alpha (a note says so), whole and in tiles; in Python,
    ``flow_for(load_predictor(path))`` declares the task's spacings as ``--checkpoint`` does."""
    from flowrestore.pretrained import flow_for
    from flowrestore.restore import load_model
    from flowrestore.training import TrainConfig, train
    from flowrestore.training.checkpoint import load_predictor, save_checkpoint

    d = tmp_path / "in"
    d.mkdir()
    a = (np.linspace(0, 60000, 40 * 44).reshape(40, 44)).astype(np.uint16)
    Image.fromarray(a).save(d / "deep.png")
    rgba = np.random.default_rng(0).integers(0, 256, (40, 44, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "colour.png")
    cfg = TrainConfig(steps=2, patch_size=16, batch_size=2, channels=1, unet={"base_channels": 8})
    model, hist = train(cfg, progress=False)
    ck = tmp_path / "grey.pt"
    save_checkpoint(ck, model, hist.ema, None, 2, cfg)
    for tile in ("0", "32"):
        out = tmp_path / f"out{tile}"
        args = [str(d), "--checkpoint", str(ck), "--solver", "euler", "-o", str(out)]
        assert _restore([*args, "--tile", tile, "--overlap", "8"]) == 0
        with Image.open(out / "deep.png") as im:
            assert im.mode.startswith("I;16") and im.size == (44, 40)
        with Image.open(out / "colour.png") as im:
            assert im.mode == "LA" and im.size == (44, 40)
            assert np.array_equal(np.asarray(im)[..., 1], rgba[..., 3])  # alpha kept
    mine = flow_for(load_predictor(ck)).declared_spacing(fr.Heun())
    cli = flow_for(load_model(checkpoint=str(ck))).declared_spacing(fr.Heun())
    assert mine == cli and mine is not None
