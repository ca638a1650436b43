"""One loader for the example scripts the tests import (they are scripts, not a package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str, module_name: str | None = None):
    """``examples/<name>.py`` as a fresh module (not registered in ``sys.modules``)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name or f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
