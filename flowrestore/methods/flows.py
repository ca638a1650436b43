"""The flows of trained image predictors: InDI's and Dirac's, refusing inputs they cannot take.

A predictor trained on images in ``[0, 1]`` (every shipped one) returns garbage on an image in
``0..255`` — silently: outputs of −1254..1833. :class:`PredictorInDIFlow` and
:class:`PredictorDiracSDE` are :class:`~flowrestore.InDIFlow` and :class:`~flowrestore.DiracSDE`
whose :meth:`check_state` — called once when a solve is planned, before anything is evaluated —
also refuses a start state far outside the predictor's value range (more than half the range
beyond either end; noisy inputs stay well inside). It reads the state's minimum and maximum: one
host read per solve, never inside the step loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import ConfigError
from flowrestore.flows import InDIFlow
from flowrestore.flows.dirac import DiracSDE

__all__ = ["PredictorInDIFlow", "PredictorDiracSDE", "check_value_range"]


def check_value_range(
    x: Tensor, value_range: tuple[float, float], *, name: str = "", noise_std: float = 0.0
) -> None:
    """Refuse ``x`` if a value lies more than half of ``value_range`` plus ``6 · noise_std`` outside
    it (NaN included). ``noise_std``: the std of the Gaussian noise the predictor's inputs carry
    (its task's), which takes a degraded image's pixels past the clean range: at σ = 0.2, a 96²
    crop of a photo with black pixels reaches −0.78 (``flowrestore.pretrained.degrade_for``)."""
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


class PredictorInDIFlow(InDIFlow):
    """:class:`~flowrestore.InDIFlow` over a trained image predictor (see the module docstring).

    ``value_range``: the range of the images the predictor was trained on; ``noise_std``: the std
    of the noise on its inputs (:func:`check_value_range`); ``name``: the model's name for
    messages. Other arguments as :class:`~flowrestore.InDIFlow`.
    """

    def __init__(
        self, predictor, *, value_range=(0.0, 1.0), noise_std: float = 0.0, name: str = "", **kw
    ):
        super().__init__(predictor, **kw)
        self.value_range, self.noise_std, self.name = value_range, float(noise_std), name

    def check_state(self, x: Tensor) -> None:
        """Validate the start state and its value range (before anything is evaluated)."""
        super().check_state(x)
        check_value_range(x, self.value_range, name=self.name, noise_std=self.noise_std)


class PredictorDiracSDE(DiracSDE):
    """:class:`~flowrestore.DiracSDE` over a trained image predictor (see the module docstring).

    ``value_range``, ``noise_std`` (at ``t = 1``: ``σ_max``) and ``name`` as
    :class:`PredictorInDIFlow`; other arguments as :class:`~flowrestore.DiracSDE`.
    """

    def __init__(
        self, phi, A, sigma, *, value_range=(0.0, 1.0), noise_std: float = 0.0, name="", **kw
    ):
        super().__init__(phi, A, sigma, **kw)
        self.value_range, self.noise_std, self.name = value_range, float(noise_std), name

    def check_state(self, x: Tensor) -> None:
        """Validate the start state and its value range (before anything is evaluated)."""
        super().check_state(x)
        check_value_range(x, self.value_range, name=self.name, noise_std=self.noise_std)
