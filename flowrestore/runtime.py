"""Where inference runs: the device a user asks for (checked before any work) and CPU threads.

:func:`resolve_device` turns ``None``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a torch device,
or refuses it with one line that says why (no CUDA in this PyTorch build, no device visible, an
index past the last device) instead of torch's bare ``AssertionError`` at the first ``.to``.
:func:`default_threads`/:func:`set_threads` pick the CPU threads for inference. Used by
:mod:`flowrestore.restore`, :mod:`flowrestore.demo` and :func:`flowrestore.pretrained`.
"""

from __future__ import annotations

import os
import re

from flowrestore.errors import ConfigError, describe

__all__ = ["DEVICE_PATTERN", "default_threads", "set_threads", "resolve_device"]

#: The device names accepted: cpu, cuda and cuda:N (ASCII digits: ``\d`` would take ``cuda:١``,
#: which torch refuses with a bare ``RuntimeError``).
DEVICE_PATTERN = r"cpu|cuda(:[0-9]+)?"


def default_threads() -> int:
    """CPU threads for inference: ``OMP_NUM_THREADS`` if set, else ``min(4, cores - 1)`` (>= 1).

    One core is left free on purpose: on a shared 2-core machine two OpenMP threads competing
    with one other busy process ran the U-Net 5x slower than one thread (0.42 vs 0.084 s per
    192x192 image and evaluation).
    """
    env = os.environ.get("OMP_NUM_THREADS")
    if env and re.fullmatch("[0-9]+", env) and int(env) > 0:  # not isdigit: "²" is a digit
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


def set_threads(threads: int | None, device) -> int:
    """Apply ``threads`` (a positive int, or ``None`` for :func:`default_threads`) to torch when
    ``device`` (cpu, cuda, cuda:N or a torch device) is the CPU; returns the count. Anything else
    is refused with a :class:`ConfigError` before torch's setting changes. The setting is
    process-wide and stays (read ``torch.get_num_threads()`` first to restore it)."""
    import torch

    if threads is not None and not (
        isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    ):
        raise ConfigError(f"threads must be a positive int or None, got {describe(threads)}")
    if not re.fullmatch(DEVICE_PATTERN, str(device)):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {describe(device)}")
    n = threads or default_threads()
    if torch.device(str(device)).type == "cpu":
        torch.set_num_threads(n)
    return n


def resolve_device(device=None, *, hint: str = "use --device cpu"):
    """``device`` as a torch device (default: ``cuda:LOCAL_RANK`` if CUDA works, else CPU).

    Raises :class:`ConfigError` with a plain reason (and ``hint``) when CUDA is asked for but
    not usable, when the name is not cpu, cuda or cuda:N, or when its index (``LOCAL_RANK`` for
    the default) is past the last device.
    """
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        rank = os.environ.get("LOCAL_RANK", "0")
        if not re.fullmatch("[0-9]+", rank):  # str.isdigit takes "²", which int() refuses
            raise ConfigError(
                f"LOCAL_RANK must be a non-negative int (the process's CUDA device), got "
                f"{rank!r}; {hint}"
            )
        device = f"cuda:{int(rank)}"  # checked below: LOCAL_RANK past the last device
    text = str(device)
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {describe(device)}; {hint}")
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this PyTorch was built without CUDA"
                if torch.version.cuda is None
                else "no CUDA device is visible"
            )
            raise ConfigError(
                f"device {text!r}: CUDA is not available ({why}; torch {torch.__version__}); {hint}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {text!r}: only {torch.cuda.device_count()} CUDA device(s); {hint}"
            )
    return dev
