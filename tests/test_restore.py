"""``flowrestore restore``: folders, corrupt files, no overwriting, sr4 sizes, sharding by rank."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowrestore.cli import main
from flowrestore.restore import list_inputs, output_names

ROOT = Path(__file__).resolve().parents[1]


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


def test_folder_with_a_corrupt_file_restores_the_others(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _restore([str(folder), "-o", str(out)])
    text = capsys.readouterr()
    assert rc == 1  # a file failed
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "grey.png"]
    assert "FAILED" in text.err + text.out and "corrupt.png" in text.err + text.out
    assert "restored 4, skipped 0 (output exists), failed 1" in text.out
    with Image.open(out / "c.png") as im:
        assert im.size == (16, 12) and im.mode == "RGB"
    with Image.open(out / "grey.png") as im:
        assert im.mode == "L"


def test_existing_outputs_are_kept_unless_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "out"
    good = [str(folder / n) for n in ("a.png", "b.png")]
    assert _restore([*good, "-o", str(out)]) == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    (out / "a.png").write_bytes(b"keep me")
    capsys.readouterr()
    assert _restore([*good, "-o", str(out)]) == 0
    assert "skipped 2" in capsys.readouterr().out
    assert (out / "a.png").read_bytes() == b"keep me"
    assert _restore([*good, "-o", str(out), "--overwrite"]) == 0
    assert (out / "a.png").read_bytes() != b"keep me"
    assert (out / "a.png").stat().st_mtime_ns >= stamp


def test_sr4_output_is_four_times_larger_and_dirac_runs(folder, tmp_path):
    out = tmp_path / "sr"
    args = [str(folder / "c.jpg"), "--task", "sr4", "--solver", "euler", "-o", str(out)]
    assert _restore(args) == 0
    with Image.open(out / "c.png") as im:
        assert im.size == (64, 48)
    out2 = tmp_path / "dirac"
    assert _restore([str(folder / "a.png"), "--task", "dirac-deblur", "-o", str(out2)]) == 0
    assert (out2 / "a.png").exists()


def test_output_names_are_unique():
    files = [Path("x/a.png"), Path("x/a.jpg"), Path("y/a.png"), Path("x/b.png")]
    names = output_names(files)
    assert len(set(names)) == 4 and names[3] == "b.png"


def test_ranks_split_the_files_without_overlap(folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    seen = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        _restore([str(folder), "-o", str(out)])
        seen += re.findall(r"^restored (\S+) -> ", capsys.readouterr().out, flags=re.M)
    good = [str(p) for p in list_inputs([folder]) if p.name != "corrupt.png"]
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
        [*launcher, "--standalone", "--nproc_per_node=2", "-m", "flowrestore.cli", "restore",
         str(d), "-o", str(out), "--steps", "1", "--no-progress", "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
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
        assert im.mode == "L"
        got = np.asarray(im, dtype=np.float64)
    # a 2-step model is close to the identity (residual U-Net): the ramp survives, not clipped
    assert abs(got.mean() - a.mean() / 65535 * 255) < 20 and got.max() > 150
