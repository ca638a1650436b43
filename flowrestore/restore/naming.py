"""Output names and per-file noise seeds: both from the file alone, so every run agrees.

:func:`output_name` depends on the input's name only (a later run sees earlier outputs);
:func:`file_seed` on ``--seed`` and the file's bytes only (a file gets the same noise alone, in a
folder, in any batch or process).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["output_name", "file_seed", "SEED_BITS"]

#: Per-file seeds lie in ``[0, 2**SEED_BITS)``, below ``restore_tiled``'s limit of 2**63.
SEED_BITS = 60


def output_name(path) -> str:
    """The output file name of an input, from its name alone: ``a.png`` -> ``a.png``,
    ``a.jpg`` -> ``a_jpg.png``, ``a.tif`` -> ``a_tif.png``, ``a`` -> ``a.png``."""
    path = Path(path)
    ext = path.suffix[1:]
    if not ext or ext.lower() == "png":
        return f"{path.stem}.png"
    return f"{path.stem}_{ext}.png"


def file_seed(path, seed: int) -> int:
    """The noise seed of one file: SHA-256 of ``seed`` and the file's bytes, ``SEED_BITS`` bits."""
    h = hashlib.sha256(f"flowrestore-seed:{int(seed)}:".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return int.from_bytes(h.digest()[:8], "big") >> (64 - SEED_BITS)
