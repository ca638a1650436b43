"""Restore a user's own image files with a shipped or trained predictor (``flowrestore restore``).

The library behind the command, one job per module:

* :mod:`.files` — which files a run restores (:func:`list_inputs`), the output folder
  (:func:`check_output_dir`), and which files are this tool's own outputs;
* :mod:`.naming` — output names and per-file noise seeds, both from the file alone
  (:func:`output_name`, :func:`file_seed`);
* :mod:`.models` — the predictor: shipped by task name or a trainer checkpoint (:func:`load_model`);
* :mod:`.planning` — jobs, tiles and batches, decided before anything runs;
* :mod:`.estimates` — the time and memory estimate printed before a long job;
* :mod:`.run` — :func:`restore_files`, the run itself;
* :mod:`.help` — the command's help text (:data:`DESCRIPTION`, :func:`models_help`).

The command line (argument parsing, exit codes) is :mod:`flowrestore.cli`. Importing this package
does not import torch; the names that need it load on first use.
"""

from __future__ import annotations

import importlib

from flowrestore.methods import make_solver, solver_table
from flowrestore.pretrained import TASK_MODELS
from flowrestore.restore.files import IMAGE_EXTENSIONS, check_output_dir, list_inputs
from flowrestore.restore.help import DESCRIPTION, expected_degradation, models_help
from flowrestore.restore.naming import file_seed, output_name
from flowrestore.runtime import default_threads, resolve_device, set_threads

__all__ = [
    "SOLVERS",
    "TASK_MODELS",
    "DESCRIPTION",
    "IMAGE_EXTENSIONS",
    "default_threads",
    "set_threads",
    "make_solver",
    "load_model",
    "expected_degradation",
    "resolve_device",
    "list_inputs",
    "output_name",
    "file_seed",
    "check_output_dir",
    "restore_files",
    "RestoreReport",
    "models_help",
]

#: solver name -> (methods it applies to, description), from the method records.
SOLVERS = solver_table()

_LAZY = {
    "load_model": "models",
    "restore_files": "run",
    "RestoreReport": "planning",
    "RestoreSettings": "planning",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'flowrestore.restore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowrestore.restore.{mod}"), name)
    globals()[name] = value
    return value
