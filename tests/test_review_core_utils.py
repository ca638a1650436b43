"""Review of the small core utilities and the public surface: ``flowrestore/__init__.py``,
``errors.py``, ``runtime.py`` and ``paths.py`` (the one atomic file writer)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch

from flowrestore.errors import ConfigError, describe, finite_number
from flowrestore.paths import write_atomic
from flowrestore.runtime import resolve_device, set_threads


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported before), return its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---- the public surface ---------------------------------------------------------------------


def test_every_submodule_is_an_attribute_whatever_was_imported_before():
    """Was: ``fr.flows.bcast`` (the README's advice), ``fr.solvers``, ``fr.grids`` … raised
    AttributeError in a fresh interpreter, and worked only once something else had imported the
    module; ``fr.importlib`` (the lazy loader's import) was a public attribute. ``import
    flowrestore`` itself still imports neither torch nor diffusers, and loading
    every export does not import diffusers (an optional dependency)."""
    out = _python(
        "import json, sys\n"
        "import flowrestore as fr\n"
        "light = 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
        "mods = [fr.flows.bcast, fr.solvers, fr.grids, fr.noise, fr.diagnostics, fr.errors]\n"
        "missing = sorted(n for n in ['nope', '_hidden', 'os', 'importlib'] if hasattr(fr, n))\n"
        "undocumented = []\n"
        "for n in fr.__all__:\n"
        "    v = getattr(fr, n)\n"
        "    own = v.__dict__.get('__doc__') if isinstance(v, type) else v.__doc__\n"
        "    if not (own or '').strip():\n"
        "        undocumented.append(n)\n"
        "print(json.dumps([light, missing, undocumented, 'diffusers' in sys.modules]))\n"
    )
    light, missing, undocumented, diffusers = json.loads(out)
    assert light
    # only real submodules resolve: no private or unrelated names, no leaked ``fr.importlib``
    assert missing == []
    assert undocumented == []
    assert not diffusers


# ---- errors --------------------------------------------------------------------------------


def test_describe_does_not_import_torch():
    """Was: every error message (``check_output_dir(3)`` on the command line's light path)
    imported torch, seconds of work, to ask whether the value was a tensor."""
    out = _python(
        "import sys\n"
        "from flowrestore.errors import describe\n"
        "text = describe(3)\n"
        "print(text, 'torch' in sys.modules)\n"
    )
    assert out.split() == ["3", "False"]


def test_describe_never_raises_while_an_error_is_reported():
    """Was: a meta tensor (``Cannot copy out of meta tensor``) or an object whose ``repr``
    fails raised inside the message, hiding the error being reported."""

    class BadRepr:
        def __repr__(self):
            raise RuntimeError("boom")

    meta = describe(torch.zeros(2, device="meta"))
    assert "shape=(2,)" in meta and "meta" in meta
    assert describe(BadRepr()) == "<BadRepr object>"
    assert describe(torch.tensor([1.0, 2.0])).startswith("tensor([1.0, 2.0]")  # values still


def test_finite_number_refuses_an_int_past_float_range_naming_the_argument():
    """Was: ``OverflowError: int too large to convert to float`` (no argument named)."""
    with pytest.raises(ConfigError, match="step must be a finite number > 0"):
        finite_number("step", 10**400)
    assert finite_number("step", 10**300) == 1e300  # large but finite: accepted


# ---- runtime -------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda:\u0661", "cuda:\u0967"])
def test_a_device_index_in_non_ascii_digits_is_a_config_error(device):
    """Was: ``\\d`` took Arabic-Indic digits, and torch then raised a bare RuntimeError
    ("Invalid device string")."""
    with pytest.raises(ConfigError, match="device must be cpu, cuda or cuda:N"):
        resolve_device(device)
    with pytest.raises(ConfigError, match="device must be cpu, cuda or cuda:N"):
        set_threads(1, device)


def test_a_local_rank_in_non_ascii_digits_is_a_config_error(monkeypatch):
    """Was: ``"²".isdigit()`` is true, and ``int("²")`` a bare ValueError."""
    monkeypatch.setenv("LOCAL_RANK", "\u00b2")
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        pytest.raises(ConfigError, match="LOCAL_RANK must be a non-negative int"),
    ):
        resolve_device(None)


# ---- paths.write_atomic --------------------------------------------------------------------


def test_write_atomic_leaves_the_process_umask_alone(tmp_path, monkeypatch):
    """Was: the new file's mode was read with ``os.umask(0)`` then restored: for that moment
    the umask is 0 process-wide, and a file another thread creates is world-writable. The new
    file still gets the permissions ``open`` gives."""
    old = os.umask(0o027)
    try:
        probe = tmp_path / "probe"
        probe.write_bytes(b"")

        def no_umask(mask):
            raise AssertionError(f"os.umask({mask:#o}) called")

        monkeypatch.setattr(os, "umask", no_umask)
        write_atomic(tmp_path / "new.bin", lambda f: f.write(b"x"))
    finally:
        monkeypatch.undo()
        os.umask(old)
    mode = (tmp_path / "new.bin").stat().st_mode & 0o777
    assert mode == probe.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "new.bin").read_bytes() == b"x"


def test_write_atomic_never_writes_through_a_symbolic_link(tmp_path):
    """A link at the path is replaced, its target left alone: following it (as ``open`` would)
    let ``flowrestore restore`` write outside ``-o`` through a dangling link, or replace the
    user's file a live link points to."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "live.png").symlink_to(elsewhere / "user.png")
    (elsewhere / "user.png").write_bytes(b"user's data")
    (out / "dangling.png").symlink_to(elsewhere / "new.png")
    for name in ("live.png", "dangling.png"):
        write_atomic(out / name, lambda f: f.write(b"restored"))
        assert not (out / name).is_symlink() and (out / name).read_bytes() == b"restored"
    assert (elsewhere / "user.png").read_bytes() == b"user's data"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["user.png"]


def test_write_atomic_in_a_missing_folder_names_the_users_file(tmp_path):
    """Was: the FileNotFoundError named the temporary file (``.flowrestore-tmp-…``), not the
    file asked for. It is the error ``open`` gives, before ``write`` runs."""
    target = tmp_path / "no" / "such" / "a.png"
    calls = []
    with pytest.raises(FileNotFoundError) as info:
        write_atomic(target, calls.append)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOENT
    assert calls == [] and not (tmp_path / "no").exists()


def test_write_atomic_refuses_a_name_too_long_before_writing(tmp_path):
    """A name of 255 bytes (the limit) works; one byte more was refused only by the rename,
    after ``write`` had done its work. Now refused first, naming the file, nothing left."""
    ok = tmp_path / ("é" * 127 + "x")  # 255 bytes in UTF-8
    assert len(os.fsencode(ok.name)) == 255
    write_atomic(ok, lambda f: f.write(b"x"))
    assert ok.read_bytes() == b"x"
    long = tmp_path / ("é" * 128)  # 256 bytes
    calls = []
    with pytest.raises(OSError) as info:
        write_atomic(long, calls.append)
    assert info.value.errno == errno.ENAMETOOLONG and info.value.filename == str(long)
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == [ok.name]


def test_write_atomic_refuses_a_folder_before_writing(tmp_path):
    """Was: ``write`` ran, then the rename failed (IsADirectoryError); the folder is kept."""
    folder = tmp_path / "out"
    (folder / "keep").mkdir(parents=True)
    calls = []
    with pytest.raises(IsADirectoryError):
        write_atomic(folder, calls.append)
    assert calls == [] and (folder / "keep").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_atomic_reports_the_write_error_even_if_cleanup_fails(tmp_path, monkeypatch):
    """Was: an ``os.unlink`` failure while removing the temporary file replaced the error that
    made the write fail (the user saw the cleanup's error, not the cause)."""
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"ne")
        raise ValueError("encoder failed")

    def no_unlink(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "denied", path)

    monkeypatch.setattr(os, "unlink", no_unlink)
    with pytest.raises(ValueError, match="encoder failed"):
        write_atomic(target, fail)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"


def test_check_output_dir_refuses_an_empty_string(tmp_path, monkeypatch):
    """Was: ``Path("")`` is the working folder, so ``--out "$OUT"`` with ``OUT`` unset wrote
    the outputs there silently."""
    from flowrestore.paths import check_output_dir

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="output folder must be a non-empty path, got ''"):
        check_output_dir("")
    assert check_output_dir(tmp_path / "out") == tmp_path / "out" and (tmp_path / "out").is_dir()
