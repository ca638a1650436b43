"""Output folders checked before any work: created if needed and test-written, so a run that
cannot write its result fails at once, not after it has computed (``flowrestore restore``,
``flowrestore demo``, the trainer's checkpoints); and the one atomic file writer every output
goes through (restored images, checkpoints, shipped weights, the registry). No torch here."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import tempfile
from pathlib import Path

from flowrestore.errors import ConfigError, describe

__all__ = ["check_output_dir", "write_atomic"]


def check_output_dir(out_dir) -> Path:
    """Create ``out_dir`` (a path: ``str`` or ``os.PathLike``) if needed and check that a file
    can be written there; returns it as a :class:`~pathlib.Path`. An empty string is refused
    (``Path("")`` is the working folder)."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ConfigError(
            f"output folder must be a path (str or PathLike), got {describe(out_dir)}"
        )
    if isinstance(out_dir, str) and not out_dir:
        # Path("") is the working folder: an unset variable (--out "$OUT") would write there
        raise ConfigError(f"output folder must be a non-empty path, got {out_dir!r}")
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


_TMP_PREFIX = ".flowrestore-tmp-"


def _open_temporary(folder: str) -> tuple[int, str]:
    """A new, empty temporary file in ``folder`` (a short random name), opened for writing.

    Created with mode ``0o666`` so that the kernel applies the umask (and a folder's default
    ACL) exactly as ``open(path, "w")`` would; reading the umask with ``os.umask`` instead would
    set it to 0 process-wide for a moment, and a file another thread creates then is
    world-writable."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, _TMP_PREFIX + secrets.token_hex(4))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def write_atomic(path, write) -> None:
    """Replace the file ``path`` atomically: ``write(f)`` fills a temporary file next to it (a
    binary file object; a short random name, so an output name near the 255-byte limit still
    works), flushed to disk, then ``os.replace``, then the folder flushed (so the new name
    survives a crash). On any failure the temporary file is removed and ``path`` keeps its old
    content (a full disk or an interrupt never leaves a truncated file). A replaced file keeps
    its permissions; a new one gets those ``open`` would give. A symbolic link at ``path`` is
    replaced by the file, never followed: a write stays in ``path``'s folder (a link in an
    output folder must not send an output elsewhere, or replace the file it points to). The
    folder must exist: a missing
    folder, a name too long for the file system or a ``path`` that is a folder raise the
    :class:`OSError` ``open`` would (naming ``path``) before ``write`` is called."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder = os.path.dirname(path) or "."
    name = os.path.basename(path)
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    if len(os.fsencode(name)) > name_max:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
    try:
        fd, tmp = _open_temporary(folder)
    except OSError as exc:  # name the user's file, not the temporary one (as open() would)
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Flush the folder's entry for the renamed file to disk (POSIX: without it a crash right
    after a successful write can leave the old file, or none, under the name). Best effort: a
    platform or file system that cannot open or sync a folder (Windows) is left as it is."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
