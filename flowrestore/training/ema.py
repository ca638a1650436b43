"""Exponential moving average (EMA) of model weights, as used for InDI's predictors.

``shadow ← decay · shadow + (1 - decay) · θ`` after every optimiser step (InDI used decay 0.9999 for
500k steps; short CPU runs want a smaller decay, e.g. 0.999). Buffers are copied, not averaged. An
optional warm-up uses ``min(decay, (1 + n) / (10 + n))`` at update ``n`` so that early averages are
not dominated by the random initialisation.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from flowrestore.errors import ConfigError, ShapeError, describe

__all__ = ["EMA"]


def _check_same(what: str, mine: dict, other: dict) -> None:
    """Refuse a state dict whose names or shapes differ from the shadow's (another model)."""
    if mine.keys() != other.keys():
        diff = sorted(set(mine) ^ set(other))
        raise ShapeError(f"EMA.{what}: the weights' names differ from the EMA's ({diff[:3]} ...)")
    bad = [k for k, v in other.items() if tuple(v.shape) != tuple(mine[k].shape)]
    if bad:
        k = bad[0]
        raise ShapeError(
            f"EMA.{what}: weight {k!r} has shape {tuple(other[k].shape)}, the EMA's is "
            f"{tuple(mine[k].shape)} (another model)"
        )


class EMA:
    """EMA of a module's weights: ``update(model)``, ``copy_to(model)``, state dicts."""

    def __init__(self, model: nn.Module, *, decay: float = 0.999, warmup: bool = True):
        if isinstance(decay, bool) or not (isinstance(decay, numbers.Real) and 0.0 <= decay < 1.0):
            raise ConfigError(f"EMA: decay must be a number in [0, 1), got {describe(decay)}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next update will use (after warm-up it is ``decay``)."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        d = self.current_decay()
        params = {  # every name of a tied (shared) weight is averaged, not just its first
            k for k, p in model.named_parameters(remove_duplicate=False) if p.is_floating_point()
        }
        state = model.state_dict()
        _check_same("update", self.shadow, state)
        for k, v in state.items():
            s = self.shadow[k]
            if s.device != v.device or s.dtype != v.dtype:  # the model was moved or cast
                s = self.shadow[k] = s.to(device=v.device, dtype=v.dtype)
            if k in params:
                s.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:  # buffers (BatchNorm statistics, counters): copied, not averaged
                s.copy_(v)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (same architecture)."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict:
        """Serializable state: shadow weights, decay, warm-up flag and update count."""
        return {
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (of an EMA of the same architecture)."""
        _check_same("load_state_dict", self.shadow, state["shadow"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
