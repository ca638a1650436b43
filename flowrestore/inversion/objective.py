"""BIRD's data term (docs/math.md §5): the degradation chain ``H_φ`` with its unknowns, the noise
model and a prior on ``φ``.

Per image ``i``: ``L_i = mean_j (ỹ_i − H_{φ_i}(x_i))_j²`` (least squares), or with a noise level
``σ`` (a number or a :class:`~flowrestore.Param` estimated too) the Gaussian negative
log-likelihood per pixel ``mean_j r_j² / (2σ²) + log σ``; plus ``regularizer(φ)_i`` when given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.degradations.blind import BlindOperator, Param
from flowrestore.errors import ConfigError, ShapeError, describe, finite_number

__all__ = ["Objective", "positive_number"]


def positive_number(value, name: str) -> float:
    """``value`` as a float, or :class:`ConfigError` unless it is a positive finite number."""
    return finite_number(name, value)


class Objective:
    """The data term of a blind inversion (module docstring).

    Args:
        degradation: an operator (blind when it is a :class:`BlindOperator`), any callable
            ``x -> y``, or a sequence of them applied in order.
        noise_std: ``None`` (least squares), a number or a scalar :class:`Param` kept positive
            (its key is its ``name``, else ``"noise_std"``).
        regularizer: ``None`` or ``regularizer(params) -> [B]`` (or a scalar).

    ``unknowns`` maps each unknown's key (the Param's ``name`` or the operator argument's) to
    ``(index of its operator or None, argument name, Param)``.
    """

    def __init__(
        self,
        degradation,
        *,
        noise_std: float | Param | None = None,
        regularizer: Callable[[dict[str, Tensor]], Tensor] | None = None,
    ):
        if regularizer is not None and not callable(regularizer):
            raise ConfigError(f"regularizer must be callable or None, got {describe(regularizer)}")
        self.ops = _parse_degradation(degradation)
        self.noise_std = _parse_noise(noise_std)
        self.regularizer = regularizer
        self.unknowns = _collect_unknowns(self.ops, self.noise_std)
        #: the key of a blind noise level among the unknowns (a named Param is keyed by its name)
        self.noise_key = (
            (self.noise_std.name or "noise_std") if isinstance(self.noise_std, Param) else None
        )

    def check_reads_no_values(self) -> None:
        """Refuse a blind operator that reads its unknowns' values when built
        (:meth:`BlindOperator.check_reads_no_values`): :meth:`forward` builds it every iteration."""
        for op in self.ops:
            if isinstance(op, BlindOperator):
                op.check_reads_no_values()

    def forward(self, x: Tensor, values: dict[str, Tensor], *, constrained: bool = True) -> Tensor:
        """``H_φ(x)`` with the unknowns set to ``values`` (keys as in ``unknowns``).

        ``constrained=True`` (BIRD's loop: the values were projected onto their Params' sets)
        builds the operators without their value checks, which read the device; ``False`` keeps
        them, for values that come from elsewhere (:meth:`BlindInversion.forward`)."""
        for i, op in enumerate(self.ops):
            if isinstance(op, BlindOperator):
                kw = {arg: values[key] for key, (j, arg, _) in self.unknowns.items() if j == i}
                if constrained:
                    op = op.materialize(constrained=True, **kw)  # Params keep values valid
                else:  # values from elsewhere: the operator checks them
                    op = op.materialize(**kw)
            x = op(x)
        return x

    def __call__(self, y: Tensor, pred: Tensor, values: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(objective, mean squared residual)`` per image ``[B]`` for ``pred = H_φ(x)``."""
        if pred.shape != y.shape:
            raise ShapeError(
                f"the degradation maps images to shape {tuple(pred.shape)} but the observation y "
                f"has shape {tuple(y.shape)}; pass image_shape= if Ψ's images differ from y in size"
            )
        mse = (pred - y).reshape(y.shape[0], -1).square().mean(dim=1)
        if self.noise_std is None:
            loss = mse
        else:
            s = (
                values[self.noise_key]
                if self.noise_key is not None
                else torch.full((), self.noise_std, dtype=y.dtype, device=y.device)
            )
            loss = mse / (2 * s * s) + torch.log(s)
        if self.regularizer is not None:
            reg = self.regularizer(values)
            if not isinstance(reg, Tensor) or reg.shape not in ((), (y.shape[0],)):
                raise ShapeError(
                    f"regularizer must return a scalar or [B] tensor, got {describe(reg)}"
                )
            loss = loss + reg
        return loss, mse


def _parse_degradation(degradation) -> tuple:
    ops = tuple(degradation) if isinstance(degradation, (list, tuple)) else (degradation,)
    if not ops:
        raise ConfigError("degradation must be an operator or a non-empty sequence of them")
    for i, op in enumerate(ops):
        if isinstance(op, Param):
            raise ConfigError(
                f"degradation[{i}] is a bare Param; pass it as an operator argument, e.g. "
                "BlindOperator(GaussianBlur, width=Param(...))"
            )
        if not (isinstance(op, BlindOperator) or callable(op)):
            raise ConfigError(
                f"degradation must be an operator, a callable x -> y, or a sequence of them; "
                f"item {i} is {describe(op)}"
            )
    return ops


def _parse_noise(noise_std):
    if noise_std is None:
        return None
    if not isinstance(noise_std, Param):
        return positive_number(noise_std, "noise_std")
    if noise_std.event_shape != ():
        raise ConfigError(f"noise_std Param must be a scalar, got {noise_std!r}")
    if noise_std.constraint != "positive" and (
        noise_std.bounds is None or noise_std.bounds[0] <= 0
    ):
        raise ConfigError(
            f"noise_std Param must stay positive: use constraint='positive' or bounds "
            f"with lo > 0, got {noise_std!r}"
        )
    return noise_std


def _collect_unknowns(ops, noise_std) -> dict[str, tuple[int | None, str, Param]]:
    found: dict[str, tuple[int | None, str, Param]] = {}
    entries = [
        (i, arg, p)
        for i, op in enumerate(ops)
        if isinstance(op, BlindOperator)
        for arg, p in op.params.items()
    ]
    if isinstance(noise_std, Param):
        entries.append((None, "noise_std", noise_std))
    for i, arg, p in entries:
        key = p.name or arg
        if key in found:
            raise ConfigError(
                f"two unknowns are both called {key!r}; give them distinct names with "
                f"Param(..., name=...)"
            )
        found[key] = (i, arg, p)
    return found
