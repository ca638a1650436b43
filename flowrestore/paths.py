"""Output folders checked before any work: created if needed and test-written, so a run that
cannot write its result fails at once, not after it has computed (``flowrestore restore``,
``flowrestore demo``, the trainer's checkpoints). No torch here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flowrestore.errors import ConfigError, describe

__all__ = ["check_output_dir"]


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
