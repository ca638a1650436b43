"""The value range a trained image predictor takes, checked on a start state before a solve.

A predictor trained on images in ``[0, 1]`` (every shipped one) returns garbage on an image in
``0..255`` — silently: outputs of −1254..1833. A predictor that declares ``value_range`` (and
``input_noise_std``, ``model_name``: the shipped ones, :func:`flowrestore.pretrained`) has its
flow refuse such a start state when a solve is planned, before anything is evaluated: one host
read of the state's minimum and maximum per solve, never inside the step loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import ConfigError

__all__ = ["check_value_range", "check_declared_range"]


def check_value_range(
    x: Tensor, value_range: tuple[float, float], *, name: str = "", noise_std: float = 0.0
) -> None:
    """Refuse ``x`` if a value lies more than half of ``value_range`` plus ``6 · noise_std`` outside
    it (NaN included). ``noise_std``: the std of the Gaussian noise the predictor's inputs carry
    (its task's), which takes a degraded image's pixels past the clean range: at σ = 0.2, a 96²
    crop of a photo with black pixels reaches −0.78 (``flowrestore.pretrained.degrade_for``)."""
    if x.device.type == "meta":  # no values to read (a device-placement check on meta)
        return
    lo, hi = value_range
    margin = 0.5 * (hi - lo) + 6.0 * float(noise_std)
    with torch.no_grad():
        got = torch.aminmax(x.detach().float()) if x.numel() else None
    if got is None:
        return
    xmin, xmax = (float(v) for v in torch.stack(got).cpu())
    what = f"the predictor {name!r}" if name else "this predictor"
    if xmin != xmin or xmax != xmax or abs(xmin) == float("inf") or abs(xmax) == float("inf"):
        raise ConfigError(f"x_start has NaN or infinite values; nothing was evaluated by {what}")
    if lo - margin <= xmin and xmax <= hi + margin:
        return
    hint = " (8-bit pixels? divide by 255)" if xmax > 2 * hi else ""
    raise ConfigError(
        f"x_start has values in [{xmin:.4g}, {xmax:.4g}], but {what} takes images with values in "
        f"[{lo:g}, {hi:g}]{hint}; nothing was evaluated"
    )


def check_declared_range(x: Tensor, predictor) -> None:
    """:func:`check_value_range` with the range, input noise and name ``predictor`` declares
    (``value_range``, ``input_noise_std``, ``model_name``); nothing for one that declares none."""
    declared = getattr(predictor, "value_range", None)
    if declared is None:
        return
    check_value_range(
        x,
        tuple(declared),
        name=str(getattr(predictor, "model_name", "") or ""),
        noise_std=float(getattr(predictor, "input_noise_std", 0.0) or 0.0),
    )
