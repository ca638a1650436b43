"""Which predictor a run uses: a shipped one by task or model name, or a trainer checkpoint.

Every predictor comes back with ``.metadata`` in the registry's format, so the rest of the run
reads what it was trained for through :class:`flowrestore.methods.ModelSpec`. A checkpoint that is
not one (a text file, another program's file) is refused with one line saying what it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowrestore.errors import ConfigError, FlowRestoreError, describe
from flowrestore.methods import ModelSpec
from flowrestore.pretrained import TASK_MODELS, list_pretrained, pretrained

__all__ = ["load_model", "model_name", "check_checkpoint_file"]

_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"  # torch.save's zip format; its legacy pickle format


def model_name(task: str | None) -> str:
    """The shipped model a ``--task`` name means (a model name stands for itself)."""
    name = TASK_MODELS.get(task, task)
    if name not in list_pretrained():
        raise ConfigError(
            f"task must be one of {sorted(TASK_MODELS)} or a shipped model "
            f"{list_pretrained()}, got {describe(task)}"
        )
    return name


def check_checkpoint_file(path: Path) -> None:
    """Refuse (one line) a checkpoint path that is no file or no PyTorch file; reads 4 bytes."""
    if not path.is_file():  # a folder or a pipe is there, but it is no checkpoint either
        what = "no regular file" if path.exists() else "no such file"
        raise ConfigError(f"checkpoint {str(path)!r}: {what}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ConfigError(
            f"checkpoint {str(path)!r} cannot be read ({exc.strerror or exc})"
        ) from exc
    if not (head.startswith(_ZIP) or head.startswith(_PICKLE)):
        raise ConfigError(
            f"checkpoint {str(path)!r} is not a PyTorch file (it starts with {head!r}); pass a "
            f"checkpoint written by python -m flowrestore.training --out ..."
        )


def _load_checkpoint(checkpoint, device):
    from flowrestore.training.checkpoint import load_predictor

    path = Path(checkpoint)
    check_checkpoint_file(path)
    try:
        model = load_predictor(path, device=device)
    except FlowRestoreError as exc:
        raise ConfigError(f"checkpoint {str(path)!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 (any unpickling error: not a trainer checkpoint)
        raise ConfigError(
            f"checkpoint {str(path)!r} is not a flowrestore trainer checkpoint "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    model.metadata = ModelSpec.from_train_config(model.train_config, name=str(path)).metadata()
    return model


def load_model(task: str | None = None, checkpoint: str | os.PathLike | None = None, device="cpu"):
    """A predictor with ``.metadata``: a shipped one by task/model name, or a trainer checkpoint.

    Give one of ``task`` and ``checkpoint``: a checkpoint carries its own task, so both together
    are refused (the task would otherwise be ignored without a word).
    """
    if checkpoint is not None:
        if task is not None:
            raise ConfigError(
                f"give task (a shipped model) or checkpoint (which names its own task), not "
                f"both; got task={describe(task)} and checkpoint={str(checkpoint)!r}"
            )
        return _load_checkpoint(checkpoint, device)
    return pretrained(model_name(task), device=device)
