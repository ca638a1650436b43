"""Which files a run restores, where it writes, and which files are this tool's own outputs.

:func:`list_inputs` expands folders and de-duplicates spellings; :func:`check_output_dir` creates
and test-writes the output folder before any work; every output carries the PNG text chunk
:data:`OWN_OUTPUT_KEY` (the input it came from), which :func:`is_own_output` reads, so a folder
restored into itself can be restored again without touching its earlier outputs, and
``--overwrite`` replaces such outputs only, never another file. No torch here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from flowrestore.paths import check_output_dir

__all__ = [
    "IMAGE_EXTENSIONS",
    "OWN_OUTPUT_KEY",
    "list_inputs",
    "check_output_dir",
    "is_own_output",
    "own_output_text",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: The PNG text keyword every output of ``flowrestore restore`` carries (value: the input's name).
OWN_OUTPUT_KEY = "flowrestore restored from"


def list_inputs(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """``(files, problems)``: files named and image files in folders named (not recursive);
    ``paths``: a path or several.

    Files are de-duplicated by resolved path and sorted by it; of several spellings the one that
    names the file itself (not a link to it) is kept, else the first by name, whatever the order;
    ``problems`` lists ``(path, reason)`` for paths that do not exist, paths named that are no
    regular file, folders that cannot be listed, and entries of a folder named like an image that
    are no regular file (a broken link, a pipe, a socket): reported, never opened — reading a pipe
    would wait forever.
    """
    if isinstance(paths, (str, os.PathLike)):  # one path, not its characters ("a.png" has ".")
        paths = [paths]
    seen: dict[Path, Path] = {}
    problems = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            try:
                named = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
            except OSError as exc:  # no permission to list it
                problems.append((str(p), f"cannot list the folder ({exc.strerror or exc})"))
                continue
            found = [q for q in named if q.is_file()]
            for q in named:
                if not q.is_file() and not q.is_dir():
                    why = (
                        "a broken link" if q.is_symlink() and not q.exists() else "no regular file"
                    )
                    problems.append((str(q), f"{why}, skipped"))
        elif p.is_file():
            found = [p]
        elif p.exists():  # a pipe or a device named on the command line: never opened
            problems.append((str(p), "no regular file"))
            continue
        else:
            problems.append((str(p), "no such file or folder"))
            continue
        for q in found:
            k = q.resolve()
            if k not in seen or _spelling_key(q, k) < _spelling_key(seen[k], k):
                seen[k] = q
    return [seen[k] for k in sorted(seen, key=str)], problems


def _spelling_key(q: Path, resolved: Path) -> tuple[bool, str]:
    """Which spelling of one file names it: its own name before a link's, then by string."""
    return q.name != resolved.name, str(q)


def own_output_text(source) -> dict[str, str]:
    """The PNG text chunks that mark an output restored from the file ``source``."""
    name = Path(source).name.encode("latin-1", "replace").decode("latin-1")
    return {"Software": "flowrestore", OWN_OUTPUT_KEY: name}


def is_own_output(path) -> bool:
    """Whether ``path`` is a PNG written by ``flowrestore restore`` (its text chunk says so).

    Only a regular file can be: a symbolic link (even to such a PNG: what it points to is not
    in the output folder), a folder or a pipe (never opened: reading it would wait) is not."""
    if Path(path).suffix.lower() != ".png":
        return False
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
    except OSError:  # gone, or no permission to look: not ours
        return False
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and OWN_OUTPUT_KEY in im.info  # chunks before IDAT
    except Exception:  # noqa: BLE001 (an unreadable file is not ours; it fails later, once)
        return False
