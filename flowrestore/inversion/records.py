"""What a BIRD run records (docs/math.md §5): one :class:`Evaluation` per iteration, the
:class:`History` they stack into, the :class:`IterationState` a callback sees, and the
:class:`InversionResult` of :meth:`flowrestore.BlindInversion.run` — named fields, no string-keyed
dictionaries (``history[name]`` and ``state[name]`` still read a field by name).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Evaluation", "History", "InversionResult", "IterationState", "stack_history"]


@dataclass
class History:
    """Per-iteration values of a run: row ``k`` is after ``k`` updates (``iterations + 1`` rows).

    ``loss`` (the objective) and ``mse`` (mean squared residual) are ``[K+1, B]``; ``params`` maps
    each unknown's key to ``[K+1, B, *event]`` (``[K+1, *event]`` when shared). ``history[name]``
    reads ``"loss"``, ``"mse"`` or a parameter's key.
    """

    loss: Tensor
    mse: Tensor
    params: dict[str, Tensor]

    def __getitem__(self, name: str) -> Tensor:
        if name in ("loss", "mse"):
            return getattr(self, name)
        if name in self.params:
            return self.params[name]
        raise KeyError(f"no history {name!r}; have 'loss', 'mse' and {sorted(self.params)}")


@dataclass
class IterationState:
    """What ``callback(k, state)`` receives after update ``k`` (detached copies: a kept state
    does not change with later updates): the latent, the objective per image before the update,
    and every unknown's new value. ``state[name]`` reads an attribute by name."""

    latent: Tensor
    loss: Tensor
    params: dict[str, Tensor]

    def __getitem__(self, name: str):
        if name not in ("latent", "loss", "params"):
            raise KeyError(f"no field {name!r}; have 'latent', 'loss', 'params'")
        return getattr(self, name)


@dataclass
class Evaluation:
    """One evaluation of the objective at ``(z, φ)`` (detached): ``x = Ψ(z)``, the prediction
    ``H_φ(x)``, the objective and the mean squared residual per image ``[B]``, and the predictor
    evaluations of the solve (a 0-d tensor: read once, at the end of a run)."""

    x: Tensor
    prediction: Tensor
    loss: Tensor
    mse: Tensor
    nfe: Tensor


@dataclass
class InversionResult:
    """Outcome of :meth:`BlindInversion.run`.

    Attributes:
        x: the restoration ``Ψ(z)`` at the final latent, ``[B, *image_shape]``, in the
            observation's dtype (the flow's); the other tensors are in at least float32
            (:mod:`flowrestore.inversion.blind`, "Precision").
        latent: the final latent ``z`` (on the sphere ``‖z_i‖ = sqrt(d)``).
        params: final value of every unknown, ``[B, *event]`` (``event`` when shared).
        history: :class:`History` (``history["loss"]``, ``history["mse"]``, ``history[key]``).
        loss: final objective ``[B]``; ``mse``: final mean squared residual ``[B]``.
        prediction: ``H_φ(Ψ(z))`` at the end (compare with the observation).
        gradient: ``"exact"`` or ``"detached"`` — which gradient the latent received.
        iterations, nfe (predictor evaluations of every solve of the run, the final one
        included), time_s (wall clock).
    """

    x: Tensor
    latent: Tensor
    params: dict[str, Tensor]
    history: History
    loss: Tensor
    mse: Tensor
    prediction: Tensor
    gradient: str
    iterations: int
    nfe: int
    time_s: float

    @property
    def residual_rms(self) -> Tensor:
        """Root-mean-square data residual per image (compare with the noise level)."""
        return self.mse.sqrt()


def stack_history(rows: list[tuple[Tensor, Tensor, dict[str, Tensor]]], keys: list[str]) -> History:
    """Stack the per-iteration ``(loss, mse, parameter values)`` into a :class:`History`. A row
    keeps no image: an :class:`Evaluation`'s ``x`` and ``prediction`` kept for every iteration
    made a run's memory grow by two batches of images per iteration."""
    return History(
        loss=torch.stack([loss for loss, _, _ in rows]),
        mse=torch.stack([mse for _, mse, _ in rows]),
        params={key: torch.stack([vals[key] for _, _, vals in rows]) for key in keys},
    )
