"""The flows of trained image predictors: InDI's and Dirac's, refusing inputs they cannot take.

A predictor trained on images in ``[0, 1]`` (every shipped one) returns garbage on an image in
``0..255`` — silently: outputs of −1254..1833. :class:`PredictorInDIFlow` and
:class:`PredictorDiracSDE` are :class:`~flowrestore.InDIFlow` and :class:`~flowrestore.DiracSDE`
whose :meth:`check_state` — called once when a solve is planned, before anything is evaluated —
also refuses a start state far outside the predictor's value range (more than half the range
beyond either end; noisy inputs stay well inside). It reads the state's minimum and maximum: one
host read per solve, never inside the step loop (:func:`check_value_range`, in
:mod:`flowrestore.flows.value_range`, where a plain :class:`~flowrestore.InDIFlow` or
:class:`~flowrestore.DiracSDE` over a predictor that declares its range checks it too).
"""

from __future__ import annotations

from torch import Tensor

from flowrestore.flows import InDIFlow
from flowrestore.flows.dirac import DiracSDE
from flowrestore.flows.value_range import check_value_range

__all__ = ["PredictorInDIFlow", "PredictorDiracSDE", "check_value_range"]


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
