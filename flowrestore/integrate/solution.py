"""What a solve returns: the result, the saved trajectory, statistics and status per sample."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from flowrestore.errors import MAX_STEPS, NONFINITE, STATUS_NAMES, SUCCESS, UNDERFLOW

__all__ = [
    "MAX_STEPS",
    "NONFINITE",
    "STATUS_NAMES",
    "SUCCESS",
    "UNDERFLOW",
    "Solution",
    "Stats",
    "make_stats",
]


@dataclass
class Stats:
    """Per-sample statistics (``[B]`` int64 CPU tensors).

    ``nfe``: drift/predictor evaluations (an error controller's start included: the drift at
    ``t0`` and, without ``dt0``, Hairer's probe); ``steps``: accepted steps (the landing step
    onto a singular end included); ``rejected``: rejected steps (adaptive solvers); ``status``:
    0 success, 1 max_steps reached, 2 step-size underflow, 3 non-finite.
    """

    nfe: Tensor
    steps: Tensor
    rejected: Tensor
    status: Tensor

    def summary(self) -> dict[str, float]:
        """The batch's mean and max NFE, mean accepted steps and total rejected steps."""
        return {
            "nfe_mean": float(self.nfe.double().mean()),
            "nfe_max": int(self.nfe.max()),
            "steps_mean": float(self.steps.double().mean()),
            "rejected": int(self.rejected.sum()),
        }


@dataclass
class Solution:
    """Result of :func:`flowrestore.solve`.

    Attributes:
        x: the result ``[B, ...]`` (last iterate, or its clean-image estimate with
            ``output="posterior_mean"``).
        ts: times of the saved states (``[S]``; just the end time unless ``save_at`` asked more).
        trajectory: saved states ``[S, B, ...]`` or ``None``.
        stats: :class:`Stats`.
        t_final: per-sample time reached ``[B]`` (a failed sample: where it stopped; one
            refused before the first step: the start time, its ``x`` its start).
        records: per-step values a flow or solver recorded (e.g. Dirac's data consistency), each
            stacked to ``[steps, ...]``; a per-sample value has one row per sample, NaN in a step
            that did not move that sample (it had failed, or waited under error control).
    """

    x: Tensor
    ts: Tensor
    trajectory: Tensor | None
    stats: Stats
    t_final: Tensor
    records: dict[str, Tensor] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"success"`` if every sample finished, else the worst sample's status name."""
        worst = int(self.stats.status.max())
        return STATUS_NAMES[worst]

    @property
    def success(self) -> Tensor:
        """Per-sample boolean: reached the end time."""
        return self.stats.status == SUCCESS


def make_stats(batch: int) -> Stats:
    """Zeroed statistics for a batch."""
    z = lambda: torch.zeros(batch, dtype=torch.int64)  # noqa: E731
    return Stats(nfe=z(), steps=z(), rejected=z(), status=z())
