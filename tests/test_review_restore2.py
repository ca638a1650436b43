"""Review of ``flowrestore restore`` and its image I/O: TIFF orientation, 16-bit colour keys,
LAB files, NaN pixels, named pipes, the torchrun environment, case-only name clashes, the
memory estimate of batched images and unreadable checkpoints."""

import os
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import flowrestore.restore.estimates as estimates
import flowrestore.restore.models as models
import flowrestore.restore.run as run
from flowrestore.cli import main
from flowrestore.errors import ConfigError, NonFiniteError
from flowrestore.imageio import (
    _chunk,
    _write_png16,
    displayed_size,
    from_tensor,
    read_image,
    to_tensor,
)
from flowrestore.restore import list_inputs, restore_files
from flowrestore.restore.planning import TileOptions, plan_jobs

pytestmark = pytest.mark.usefixtures("keep_threads")


class Identity(torch.nn.Module):
    """F(x, t) = x: every solver returns its input, so a restoration is a pure file round trip."""

    multiple = 4

    def __init__(self):
        super().__init__()
        self.zero = torch.nn.Parameter(torch.zeros(()), requires_grad=False)
        self.metadata = {"method": "indi", "task": "deblur", "task_params": {}}

    def forward(self, x, t):
        return x + self.zero


def _identity(inputs, out, **kw):
    kw.setdefault("log", lambda *_: None)
    return restore_files(
        inputs, out, model=Identity(), solver="euler", steps=1, device="cpu", progress=False, **kw
    )


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_tiff_is_turned_upright_once(tmp_path, orientation, mode):
    """Pillow >= 11 applies a TIFF's orientation while decoding (and reports the turned size):
    ``read_image`` turned it a second time and ``displayed_size`` swapped the size back, so a
    rotated TIFF came out wrong (and its size disagreed with the plan). Uncompressed L, P, RGBA
    and I;16 TIFFs turned by 90 degrees were memory-mapped with the turned size: scrambled."""
    rng = np.random.default_rng(orientation)
    a = Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)).convert(mode)
    a.save(tmp_path / "o.png", exif=_exif(orientation))
    a.save(tmp_path / "o.tif", exif=_exif(orientation))
    want = read_image(tmp_path / "o.png").colour  # upright, as every viewer shows it
    assert want.shape[:2] == ((10, 6) if orientation in (6, 8) else (6, 10))
    got = read_image(tmp_path / "o.tif")
    assert got.colour.shape == want.shape and (got.colour == want).all()
    assert displayed_size(tmp_path / "o.tif") == got.size == (want.shape[1], want.shape[0])
    report = _identity([tmp_path / "o.tif"], tmp_path / "out")
    assert not report.failed
    assert (read_image(tmp_path / "out" / "o_tif.png").colour == want).all()


def _png16_with_key(path, arr: np.ndarray, key: tuple[int, ...]) -> None:
    """A 16-bit PNG (grey or RGB) with a tRNS colour key."""
    _write_png16(path, arr, exif=None, icc=None)
    raw = path.read_bytes()
    at = raw.index(b"IDAT") - 4
    path.write_bytes(raw[:at] + _chunk(b"tRNS", struct.pack(f">{len(key)}H", *key)) + raw[at:])


@pytest.mark.parametrize("channels", [1, 3])
def test_a_sixteen_bit_colour_key_becomes_a_sixteen_bit_alpha(tmp_path, channels):
    """A 16-bit PNG with a colour key (tRNS): grey lost its transparency, RGB lost it and was
    read at 8 bits (Pillow compared 8-bit pixels with the 16-bit key, then could not decode the
    low bytes into RGBA)."""
    rng = np.random.default_rng(channels)
    shape = (5, 7) if channels == 1 else (5, 7, 3)
    a = rng.integers(1, 65535, shape, dtype=np.uint16)
    key = (1234,) if channels == 1 else (1000, 2000, 3000)
    a[1, 2] = key if channels == 3 else key[0]
    a[4, 6] = key if channels == 3 else key[0]
    _png16_with_key(tmp_path / "k.png", a, key)
    pic = read_image(tmp_path / "k.png")
    assert pic.bits == 16 and (pic.colour == a).all()
    assert pic.alpha is not None and pic.alpha.dtype == np.uint16
    want = np.full(a.shape[:2], 65535, np.uint16)
    want[1, 2] = want[4, 6] = 0
    assert (pic.alpha == want).all()
    report = _identity([tmp_path / "k.png"], tmp_path / "out")
    assert not report.failed
    back = read_image(tmp_path / "out" / "k.png")
    assert back.bits == 16 and (back.colour == a).all() and (back.alpha == want).all()


def test_a_lab_file_gets_no_alpha_channel(tmp_path):
    """``"A" in mode`` took LAB for a mode with alpha: an opaque alpha channel was added."""
    Image.new("LAB", (4, 3), (50, 10, 20)).save(tmp_path / "lab.tif")
    pic = read_image(tmp_path / "lab.tif")
    assert pic.alpha is None and pic.colour.shape == (3, 4, 3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_from_tensor_refuses_non_finite_pixels(bad):
    """NaN became black pixels (the cast to integers), silently."""
    like = _picture()
    x = to_tensor(like).clone()
    x[1, 0, 0] = bad
    with pytest.raises(NonFiniteError, match="1 NaN/infinite"):
        from_tensor(x, like)
    assert from_tensor(to_tensor(like), like).colour.shape == like.colour.shape


def _picture():
    from flowrestore.imageio import Picture

    rng = np.random.default_rng(0)
    return Picture(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8), None, 8)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_given_on_the_command_line_is_refused_not_opened(tmp_path, capsys):
    """A folder's pipes were reported, but a pipe named on the command line was taken as a file
    and opened: the run waited forever."""
    fifo = tmp_path / "p.png"
    os.mkfifo(fifo)
    files, problems = list_inputs([fifo])
    assert files == [] and problems == [(str(fifo), "no regular file")]
    rc = main(["restore", str(fifo), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no regular file" in err and str(fifo) in err


@pytest.mark.parametrize("rank, world", [("x", "2"), ("0", ""), ("1", "1"), ("-1", "2")])
def test_a_bad_torchrun_environment_is_a_one_line_error(monkeypatch, rank, world):
    """``RANK=x`` raised a bare ``ValueError`` (a traceback from the command)."""
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ConfigError, match=f"RANK={rank!r} / WORLD_SIZE={world!r}"):
        run._dist()


def test_output_names_that_differ_only_in_case_are_refused(tmp_path):
    """``x/A.png`` and ``y/a.png`` write ``A.png`` and ``a.png``: one file on a case-insensitive
    disk (macOS, Windows, a USB stick), so the second replaced the first (likewise ``é`` composed
    and decomposed on macOS)."""
    names = (("x", "A.png"), ("y", "a.png"), ("x", "b.JPG"), ("y", "b.jpg"))
    names += (("x", "\u00e9.png"), ("y", "e\u0301.png"))  # é composed and decomposed
    for sub, name in names:
        (tmp_path / sub).mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / sub / name, format="PNG")
    Image.new("RGB", (8, 8)).save(tmp_path / "x" / "c.png")
    files = sorted((tmp_path / s / n) for s in "xy" for n in os.listdir(tmp_path / s))
    failed = []
    settings = SimpleNamespace(seed=0, scale=1, flow=None, device="cpu")
    jobs = plan_jobs(
        files, files, tmp_path / "out", settings, overwrite=False, tiles=TileOptions(tile=0),
        skip=lambda *a: None, fail=lambda p, why: failed.append((p.name, why)),
    )  # fmt: skip
    assert [j.path.name for j in jobs] == ["c.png"]
    assert sorted(n for n, _ in failed) == sorted(n for _, n in names)
    assert all("different -o folders" in why for _, why in failed)


def test_the_memory_estimate_counts_the_images_batched_together(monkeypatch, tmp_path):
    """Whole images of one size run ``batch_size`` at a time, but the peak memory counted one
    (their plan's tile batch is 1): four images in a batch were estimated at a quarter."""
    import flowrestore.tiling as tiling

    monkeypatch.setattr(tiling, "count_evaluations", lambda *a, **k: 10)
    monkeypatch.setattr(tiling, "seconds_per_megapixel", lambda flow, shape: 0.5)
    monkeypatch.setattr(tiling, "activation_bytes_per_pixel", lambda model: 1000)
    monkeypatch.setattr(estimates, "_rss_bytes", lambda: 0)
    plan = SimpleNamespace(processed_pixels=1_000_000, tile_shape=(1000, 1000), batch=1, count=1)
    jobs = [SimpleNamespace(plan=plan, size=(1000, 1000)) for _ in range(4)]
    settings = SimpleNamespace(flow=None, solver=None, steps=3, output="last", model=None,
                               device="cpu")  # fmt: skip
    lines = []
    estimates.estimate(jobs, settings, lines.append, groups=[jobs])
    peak_mb = float(lines[-1].split("peak memory about ")[1].split()[0])
    assert peak_mb >= 4 * 1000 * 1000 * 1000 / 2**20  # four images' activations
    # the run passes its batches
    seen = {}
    monkeypatch.setattr(run, "estimate", lambda jobs, s, log, **kw: seen.update(kw))
    for k in range(3):
        Image.new("RGB", (8, 8), (k, 0, 0)).save(tmp_path / f"{k}.png")
    _identity([tmp_path], tmp_path / "out", batch_size=2)
    assert [len(g) for g in seen["groups"]] == [2, 1]


def test_an_unreadable_checkpoint_is_a_one_line_error(tmp_path, monkeypatch):
    """A checkpoint that exists but cannot be read (permissions) raised ``PermissionError``."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(models, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match=r"model.pt' cannot be read \(Permission denied\)"):
        models.load_model(checkpoint=path)


@pytest.mark.parametrize("option", ["overwrite", "upsample", "progress"])
def test_flags_must_be_bools(tmp_path, option):
    """``overwrite="no"`` (a truthy string) replaced existing outputs; now a one-line error
    before anything is written."""
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "out" / "a.png")
    before = (tmp_path / "out" / "a.png").read_bytes()
    kw = {"overwrite": False, "upsample": True, "progress": False, option: "no"}
    with pytest.raises(ConfigError, match=f"{option} must be a bool, got 'no'"):
        restore_files([tmp_path / "a.png"], tmp_path / "out", model=Identity(), steps=1,
                      device="cpu", log=lambda *_: None, **kw)  # fmt: skip
    assert (tmp_path / "out" / "a.png").read_bytes() == before


@pytest.mark.parametrize("case", ["solver", "checkpoint", "no checkpoint"])
def test_a_usage_error_leaves_no_output_folder_behind(tmp_path, capsys, case):
    """The output folder was created before the solver and the checkpoint file were checked: a
    mistyped option left an empty folder behind."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    options = {
        "solver": ["--task", "dirac-deblur", "--solver", "euler"],
        "checkpoint": ["--checkpoint", str(tmp_path / "notes.txt")],
        "no checkpoint": ["--checkpoint", str(tmp_path / "missing.pt")],
    }[case]
    out = tmp_path / "out"
    rc = main(["restore", str(tmp_path / "a.png"), "-o", str(out), "--no-progress", *options])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_folder_that_cannot_be_listed_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """A folder without read permission raised ``PermissionError`` from ``iterdir`` (a
    traceback from the command)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert list_inputs([locked]) == (
        [],
        [(str(locked), "cannot list the folder (Permission denied)")],
    )
    rc = main(["restore", str(locked), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Permission denied" in err and str(locked) in err


def test_one_path_as_a_string_is_one_input_not_its_characters(tmp_path, monkeypatch):
    """``restore_files("a.png", ...)`` iterated the string: ``"."`` among its characters is the
    working folder, whose every image was restored."""
    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "other.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    assert list_inputs("a.png") == ([Path("a.png")], [])
    assert list_inputs(Path("a.png")) == ([Path("a.png")], [])
    report = _identity("a.png", tmp_path / "out")
    assert [Path(p).name for p, _ in report.restored] == ["a.png"] and not report.failed


def test_a_sixteen_bit_tiff_is_turned_upright_once_at_sixteen_bits(tmp_path):
    """The 16-bit path decodes the file a second time (the low bytes): both decodes must agree
    with the orientation Pillow already applied."""
    tifffile = pytest.importorskip("tifffile")
    a = np.random.default_rng(6).integers(0, 65536, (6, 10, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "o.tif", a, extratags=[(274, "H", 1, 6, True)])
    pic = read_image(tmp_path / "o.tif")
    assert pic.bits == 16 and (pic.colour == np.rot90(a, -1)).all()
    assert displayed_size(tmp_path / "o.tif") == pic.size == (6, 10)


def test_nan_pixels_of_a_float_tiff_are_said_not_silent(tmp_path):
    """A float TIFF's NaN pixels became black without a word."""
    a = np.full((3, 4), 0.5, np.float32)
    a[0, 0], a[2, 3] = np.nan, np.inf
    Image.fromarray(a).save(tmp_path / "f.tif")
    pic = read_image(tmp_path / "f.tif")
    assert pic.colour[0, 0] == 0 and pic.colour[2, 3] == 65535
    assert any("2 NaN/infinite value(s)" in n for n in pic.notes), pic.notes
    Image.fromarray(np.full((3, 4), 0.5, np.float32)).save(tmp_path / "ok.tif")
    assert not any("NaN" in n for n in read_image(tmp_path / "ok.tif").notes)


def test_a_file_and_a_link_to_it_get_one_output_name_in_any_order(tmp_path):
    """The first spelling given was kept, so ``restore link.png a.png`` wrote ``link.png`` and
    ``restore a.png link.png`` wrote ``a.png``: a second run in another order restored again."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.png").symlink_to(tmp_path / "a.png")
    link, real = tmp_path / "sub" / "link.png", tmp_path / "a.png"
    assert list_inputs([link, real])[0] == list_inputs([real, link])[0] == [real]
    assert list_inputs([tmp_path / "sub", real])[0] == [real]
    assert list_inputs([link])[0] == [link]  # a link alone keeps its name


class NaNOnBright(Identity):
    """The identity, but NaN for an image brighter than 0.9 on average."""

    def forward(self, x, t):
        bright = x.mean(dim=(1, 2, 3), keepdim=True) > 0.9
        return torch.where(bright, torch.full_like(x, float("nan")), x) + self.zero


def test_one_failing_file_does_not_fail_its_batch_mates(tmp_path):
    """Same-size images are solved together; a NaN in one failed the whole batch, so a file's
    result depended on what else was in the run."""
    for name, v in (("a.png", 10), ("b.png", 250), ("c.png", 20)):
        Image.new("RGB", (8, 8), (v, v, v)).save(tmp_path / name)
    report = restore_files([tmp_path], tmp_path / "out", model=NaNOnBright(), solver="euler",
                           steps=2, device="cpu", progress=False, batch_size=4,
                           log=lambda *_: None)  # fmt: skip
    assert sorted(Path(p).name for p, _ in report.restored) == ["a.png", "c.png"]
    assert [Path(p).name for p, _ in report.failed] == ["b.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


def test_an_output_that_is_the_input_under_another_name_is_refused(tmp_path):
    """``resolve()`` does not see two spellings of one file (``A.PNG`` / ``a.png`` on a
    case-insensitive disk; here a hard link): with ``overwrite=True`` the run replaced what was
    the input itself."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(src / "a.png")
    os.link(src / "a.png", out / "a.png")
    report = _identity([src / "a.png"], out, overwrite=True)
    assert report.failed and "would replace the input" in report.failed[0][1]
    assert os.path.samefile(src / "a.png", out / "a.png")  # untouched, still one file
