"""Output folders checked before any work: created if needed and test-written, so a run that
cannot write its result fails at once, not after it has computed (``flowrestore restore``,
``flowrestore demo``, the trainer's checkpoints); and the one atomic file writer every output
goes through (restored images, checkpoints, shipped weights, the registry). No torch here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flowrestore.errors import ConfigError, describe

__all__ = ["check_output_dir", "write_atomic"]


def check_output_dir(out_dir) -> Path:
    """Create ``out_dir`` (a path: ``str`` or ``os.PathLike``) if needed and check that a file
    can be written there; returns it as a :class:`~pathlib.Path`."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ConfigError(
            f"output folder must be a path (str or PathLike), got {describe(out_dir)}"
        )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {str(out)!r} is an existing file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"output folder {str(out)!r} cannot be created ({exc.strerror or exc})"
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".flowrestore-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"output folder {str(out)!r} is not writable ({exc.strerror or exc})"
        ) from exc
    return out


def _new_file_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file (``0o666`` less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path, write) -> None:
    """Replace the file ``path`` atomically: ``write(f)`` fills a temporary file next to it (a
    binary file object; a short random name, so an output name near the 255-byte limit still
    works), flushed to disk, then ``os.replace``. On any failure the temporary file is removed
    and ``path`` keeps its old content (a full disk or an interrupt never leaves a truncated
    file). A replaced file keeps its permissions; a new one gets those ``open`` would give."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".flowrestore-tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
