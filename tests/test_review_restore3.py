"""Review of ``flowrestore restore`` (third pass): ``--overwrite`` replaces only this tool's
own earlier outputs — never a user's file, a symbolic link, a pipe, or a file put at an output
name while the run computed — and the summary line says why each file was skipped."""

import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowrestore.restore import restore_files
from flowrestore.restore.files import is_own_output

pytestmark = pytest.mark.usefixtures("keep_threads")


@pytest.fixture
def no_hang():
    """Fail instead of waiting forever (opening a named pipe for reading blocks)."""

    class Hung(BaseException):  # not an Exception: no `except Exception` may swallow it
        pass

    def boom(*_):
        raise Hung("the run opened a named pipe and waited")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


class Identity(torch.nn.Module):
    """F(x, t) = x: every solver returns its input, so a restoration is a pure file round trip;
    ``during(x)`` runs at each evaluation (to act while the run computes)."""

    multiple = 4

    def __init__(self, during=None):
        super().__init__()
        self.zero = torch.nn.Parameter(torch.zeros(()), requires_grad=False)
        self.metadata = {"method": "indi", "task": "deblur", "task_params": {}}
        self.during = during

    def forward(self, x, t):
        if self.during is not None and x.shape[-1] != 16:  # 16: the evaluation-count probe
            self.during()
        return x + self.zero


def _run(inputs, out, model=None, **kw):
    """Restore with the identity model; ``(report, lines)``: the summary and estimate lines."""
    lines = []
    report = restore_files(
        inputs,
        out,
        model=model or Identity(),
        solver="euler",
        steps=1,
        device="cpu",
        progress=False,
        log=lines.append,
        **kw,
    )
    return report, lines


def _png(path, value, size=(8, 6)):
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _png(d / "a.png", 40)
    _png(d / "b.png", 200)
    return d


def test_overwrite_replaces_only_earlier_outputs_of_restore(photos, tmp_path, capsys):
    """``--overwrite`` replaced any file with an output's name: a user's own PNG (an edited
    copy, another program's result) in the output folder was lost. Now only this tool's earlier
    outputs are replaced; the other file is kept and its input skipped, in one line naming it."""
    out = tmp_path / "out"
    report, _ = _run([photos], out)
    assert len(report.restored) == 2 and is_own_output(out / "b.png")
    _png(out / "a.png", 123)  # the user's file, not written by flowrestore
    mine = (out / "a.png").read_bytes()
    _png(photos / "b.png", 77)  # b's input changed: its earlier output is to be replaced
    capsys.readouterr()
    report, lines = _run([photos], out, overwrite=True)
    assert (out / "a.png").read_bytes() == mine  # kept
    assert [Path(t).name for _, t in report.restored] == ["b.png"]
    assert np.asarray(Image.open(out / "b.png")).max() == 77  # replaced: the new restoration
    assert [Path(p).name for p, _ in report.skipped] == ["a.png"]
    said = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("skipped")]
    assert len(said) == 1 and str(out / "a.png") in said[0]
    assert "not written by flowrestore" in said[0]
    assert not report.failed


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_symbolic_link_at_the_output_name_is_never_replaced(
    photos, tmp_path, overwrite, dangling
):
    """A link at an output name was replaced by the output (a broken one even without
    ``--overwrite``: ``exists()`` is False for it), losing the user's link; a link to one of
    this tool's outputs passed as "ours". A link is not ours: kept, its input skipped."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    _run([photos / "a.png"], elsewhere)  # a genuine output of restore, outside -o
    out.mkdir()
    pointed = elsewhere / ("gone.png" if dangling else "a.png")
    before = None if dangling else pointed.read_bytes()
    (out / "a.png").symlink_to(pointed)
    report, _ = _run([photos / "a.png"], out, overwrite=overwrite)
    assert (out / "a.png").is_symlink() and os.readlink(out / "a.png") == str(pointed)
    assert before is None or pointed.read_bytes() == before
    assert not report.restored and len(report.skipped) == 1 and not report.failed


def test_a_named_pipe_at_the_output_name_is_kept_and_never_opened(photos, tmp_path, no_hang):
    """With ``--overwrite`` a pipe at an output name was replaced by the output; asking whether
    it is an earlier output must not open it either (reading a pipe waits for a writer)."""
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "a.png")
    assert not is_own_output(out / "a.png")
    report, _ = _run([photos / "a.png"], out, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(out / "a.png").st_mode)
    assert not report.restored and len(report.skipped) == 1


def test_a_file_put_at_the_output_name_while_the_run_computes_is_kept(photos, tmp_path):
    """The output name was checked once, before the (possibly long) run: a file the user saved
    there meanwhile was replaced when the output was written."""
    out = tmp_path / "out"
    out.mkdir()

    def save_theirs():
        if not (out / "a.png").exists():
            _png(out / "a.png", 9)

    report, lines = _run([photos / "a.png"], out, model=Identity(during=save_theirs))
    assert np.asarray(Image.open(out / "a.png")).max() == 9  # theirs, kept
    assert not report.restored and [Path(p).name for p, _ in report.skipped] == ["a.png"]
    assert "restored 0, skipped 1 (" in lines[-1]


def test_the_summary_says_why_files_were_skipped(tmp_path):
    """A folder restored into itself, run again, skips its inputs (output exists) and its
    earlier outputs (they are outputs of flowrestore restore, not inputs): the summary called
    all of them "skipped 4 (output exists)"."""
    d = tmp_path / "photos"
    d.mkdir()
    _png(d / "a.jpg", 10)
    _png(d / "b.jpg", 20)
    _run([d], d)
    report, lines = _run([d], d)
    assert len(report.skipped) == 4
    summary = lines[-1]
    assert "skipped 4 (output exists)" not in summary
    assert "output exists: 2" in summary
    assert "input is an output of flowrestore restore: 2" in summary
    report, lines = _run([d / "a.jpg", d / "b.jpg"], d)  # one reason: said once, no counts
    assert "restored 0, skipped 2 (output exists), failed 0 of 2 files" in lines[-1]


@pytest.mark.parametrize(
    ("mode", "values", "clipped"),
    [("F", [0.5, 2.0, -0.25, 1.0], 2), ("I", [70000, -5, 300, 65535], 2)],
)
def test_values_beyond_the_range_are_said_when_clipped(tmp_path, mode, values, clipped):
    """A float TIFF's highlights above 1 (HDR) or a 32-bit TIFF's values above 65535 were
    clipped without a word (NaN got a note; these lose as much)."""
    from flowrestore.imageio import read_image

    dtype = np.float32 if mode == "F" else np.int32
    Image.fromarray(np.array([values], dtype), mode).save(tmp_path / "x.tif")
    pic = read_image(tmp_path / "x.tif")
    assert pic.bits == 16 and pic.colour.min() == 0 and pic.colour.max() == 65535
    said = [n for n in pic.notes if "clipped" in n]
    assert len(said) == 1 and said[0].startswith(f"{clipped} ")
    Image.fromarray(np.array([[0, 1]], dtype), mode).save(tmp_path / "in_range.tif")
    assert not [n for n in read_image(tmp_path / "in_range.tif").notes if "clipped" in n]


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"overlap": -1}, "overlap"),  # accepted for an image small enough for one tile
        ({"compile": "yes"}, "compile"),  # every file FAILED with the same error, exit 1
        ({"output": "bogus"}, "output"),  # found after the output folder was made
        ({"solver": "euler", "tile": -1}, "tile"),  # likewise
        ({"solver": "dirac_step_object"}, "DiracStep"),  # a solver for another kind of flow
    ],
)
def test_options_every_solve_would_refuse_are_refused_before_the_run(photos, tmp_path, kw, named):
    """One line naming the option, before the output folder is made or any file is read."""
    import flowrestore as fr
    from flowrestore.errors import FlowRestoreError

    kw = dict(kw)
    if kw.get("solver") == "dirac_step_object":
        kw["solver"] = fr.DiracStep()
    kw.setdefault("solver", "euler")
    out = tmp_path / "out"
    with pytest.raises(FlowRestoreError, match=named) as err:
        restore_files(
            [photos], out, model=Identity(), steps=1, device="cpu", progress=False,
            log=lambda *_: None, **kw,
        )  # fmt: skip
    assert "\n" not in str(err.value)
    assert not out.exists()


@pytest.mark.parametrize("ext", ["tif", "gif"])
def test_a_multi_page_file_says_that_only_its_first_page_is_restored(tmp_path, ext):
    """A scanned multi-page TIFF or an animated GIF came out as its first page alone, without
    a word: the others were lost silently."""
    from flowrestore.imageio import read_image

    pages = [Image.fromarray(np.full((6, 8, 3), v, np.uint8)) for v in (10, 120, 240)]
    pages[0].save(tmp_path / f"p.{ext}", save_all=True, append_images=pages[1:])
    pic = read_image(tmp_path / f"p.{ext}")
    assert abs(int(pic.colour.max()) - 10) <= 2  # the first page
    assert [n for n in pic.notes if "first of 3" in n]
    pages[0].save(tmp_path / f"one.{ext}")
    assert not [n for n in read_image(tmp_path / f"one.{ext}").notes if "first of" in n]


def test_a_checkpoint_path_naming_a_folder_is_not_called_missing(tmp_path):
    """``--checkpoint runs/`` (the folder, not the file in it) was answered "no such file"."""
    from flowrestore.errors import ConfigError
    from flowrestore.restore.models import check_checkpoint_file

    with pytest.raises(ConfigError, match="no regular file"):
        check_checkpoint_file(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        check_checkpoint_file(tmp_path / "missing.pt")
