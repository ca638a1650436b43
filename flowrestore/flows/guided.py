"""Guided restoration on a pretrained generative flow: DPS, DiffPIR and DDRM (docs/math.md §10).

A *model flow* — :class:`~flowrestore.DiffusionFlow`, :class:`~flowrestore.FlowMatchingFlow` or
:class:`~flowrestore.DenoiserFlow`, any residual flow with a clean estimate ``D(x, t)`` — has a
state ``x_t = α_t x_0 + σ_t ε`` (``state_coefficients``: ``(1, t σ_max)`` for the variance-exploding
states of the diffusion and EDM flows, ``(1 − t, t)`` for flow matching). A guided flow adds a
degradation ``A`` (:mod:`flowrestore.degradations`) and a measurement ``y = A x_0 + n``,
``n ~ N(0, σ_y² I)`` — the data part of the inverse problem (deepinv's ``PosteriorDiffusion`` /
``NoisyDataFidelity`` split) — and the method decides how the two are combined:

* :class:`GuidedFlow` holds model, operator, measurement and noise level; it is stepped by the
  discrete stochastic updates :class:`~flowrestore.DPSStep` (Chung et al. 2023, Algorithm 1) and
  :class:`~flowrestore.DDRMStep` (Kawar et al. 2022, eqs. 7–8), which are not discretisations of
  an ODE and so are solvers of their own (``flow_types = (GuidedFlow,)``);
* :class:`DiffPIRFlow` (Zhu et al. 2023, Algorithm 1) is an ODE: the model's probability-flow ODE
  with the clean estimate replaced by the proximal data step
  ``x̂_0 = argmin_x ‖y − A x‖² + ρ_t ‖x − D(x_t, t)‖²``, ``ρ_t = λ σ_y²/σ̃_t²`` (``σ̃ = σ/α`` the
  model's noise level). Euler on it is DiffPIR's update with ``ζ = 0`` (DDIM on ``x̂_0``), so every
  residual-flow solver steps it; :class:`~flowrestore.DiffPIRStep` adds the re-noising ``ζ > 0``.

Every guided flow is integrated in its model's state, from ``t = 1`` (pure noise) to 0, on the
model's default grid; the loop's ``t = 0`` rule applies unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from flowrestore.degradations.base import resident
from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    IncompatibleOperatorError,
    ShapeError,
    describe,
    finite_number,
)
from flowrestore.flows.base import Flow, ResidualFlow, batch_time, bcast, select_rows
from flowrestore.flows.spectral import SpectralForm, nonzero, spectral_form

__all__ = ["DiffPIRFlow", "GuidedFlow", "IncompatibleOperatorError"]


def _coefficients(model):
    """``(coefficients(t) -> (α, σ), input_scale(t) -> k)`` of a model flow: its state is
    ``x_t = α_t x_0 + σ_t ε`` and its network's own input ``x_t / k_t`` (every model flow declares
    both: ``state_coefficients`` and ``input_scale``)."""
    coefficients = getattr(model, "state_coefficients", None)
    scale = getattr(model, "input_scale", None)
    if not (isinstance(model, ResidualFlow) and callable(coefficients) and callable(scale)):
        raise ArgumentTypeError(
            f"model must be a model flow (DiffusionFlow, FlowMatchingFlow or DenoiserFlow: a "
            f"ResidualFlow with state_coefficients(t) and input_scale(t)), got {describe(model)}"
        )
    return coefficients, scale


def _noise_std(value) -> float:
    return finite_number("noise_std", value, allow_zero=True)


class GuidedFlow(Flow):
    """A model flow, a degradation ``A`` and a measurement ``y = A x_0 + n`` (module docstring).

    Args:
        model: a :class:`~flowrestore.DiffusionFlow`, :class:`~flowrestore.FlowMatchingFlow` or
            :class:`~flowrestore.DenoiserFlow` (the prior).
        operator: the degradation, a :mod:`flowrestore.degradations` operator (``A(x)``; DDRM and
            DiffPIR need a closed-form SVD, :func:`~flowrestore.flows.spectral.spectral_form`).
        measurement: ``y`` ``[B, ...]`` (or ``[1, ...]`` for the whole batch).
        noise_std: ``σ_y``, the measurement's noise standard deviation.

    Stepped by :class:`~flowrestore.DPSStep` and :class:`~flowrestore.DDRMStep`. ``denoise`` is the
    model's clean estimate (``output="posterior_mean"`` at an early stop).
    """

    singular_at_zero = True
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)
    suggested_solvers = ("DPSStep", "DDRMStep")
    method = "GuidedFlow"

    def __init__(self, model: ResidualFlow, operator, measurement: Tensor, *, noise_std=0.0):
        self.coefficients, self.input_scale = _coefficients(model)
        if not (callable(operator) or hasattr(operator, "A")):
            raise IncompatibleOperatorError(
                f"operator must be a degradation with A(x) (flowrestore.degradations), got "
                f"{describe(operator)}"
            )
        if not isinstance(measurement, Tensor) or measurement.dim() < 1:
            raise ShapeError(
                f"measurement must be a tensor [B, ...] (or [1, ...]), got {describe(measurement)}"
            )
        # one host read, here and not in the loop: a NaN or inf (e.g. marking the missing pixels
        # of an inpainting measurement) would turn DPS's and DiffPIR's every sample into NaN
        if measurement.device.type != "meta" and not bool(
            torch.isfinite(measurement.detach()).all()
        ):
            raise ConfigError(
                f"measurement must be finite (give 0 where the operator discards a value, e.g. "
                f"the masked pixels of an inpainting measurement), got {describe(measurement)}"
            )
        self.model = model
        self.operator = operator
        self.measurement = measurement
        self.noise_std = _noise_std(noise_std)
        self._spectral: SpectralForm | None = None

    @property
    def network(self):
        """The model flow's network."""
        return self.model.network

    def __getstate__(self):
        """Pickled without the measurement's per-device copies (:meth:`measurement_for`)."""
        state = dict(self.__dict__)
        state.pop("_resident", None)
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.model!r}, {self.operator!r}, "
            f"noise_std={self.noise_std:.4g})"
        )

    def restrict(self, rows: Tensor) -> GuidedFlow:
        """This flow for the batch rows ``rows`` (:meth:`Flow.restrict`): the model's rows (its
        conditioning), for one measurement per sample those measurements, and for an operator
        with per-sample parameters (a mask, kernel or width per sample) those parameters."""
        sub = copy.copy(self)  # without the measurement's device copies (__getstate__)
        sub.model = self.model.restrict(rows)
        if self.measurement.shape[0] != 1:
            sub.measurement = select_rows(self.measurement, rows)
        elif "_resident" in self.__dict__:  # one measurement for all: its copies serve every row
            sub._resident = self._resident
        pick = getattr(self.operator, "select_rows", None)
        if callable(pick):
            operator = pick(rows, self.measurement.dim())
            if operator is not self.operator:
                sub.operator = operator
                sub._spectral = None  # the closed-form SVD of the restricted operator
        return sub

    def check_state(self, x: Tensor) -> None:
        """Validate a start state against the measurement before anything is evaluated: ``y``
        has one row per sample (or one for all) and the shape of ``A x`` for images of ``x``'s
        shape (the operator's own checks — a mask's size, a factor dividing the image — first)."""
        super().check_state(x)
        y = self.measurement
        if y.shape[0] not in (1, x.shape[0]):
            raise ShapeError(
                f"measurement has {y.shape[0]} rows but x_start has {x.shape[0]} (give one "
                f"measurement per sample, or one for all), got measurement {describe(y)} and "
                f"x_start {describe(x)}"
            )
        with torch.no_grad():
            ax = self.apply(x.detach())
        if tuple(ax.shape[1:]) != tuple(y.shape[1:]):
            raise ShapeError(
                f"measurement of shape {tuple(y.shape)} does not match the operator's output: "
                f"{self.operator!r} maps x_start of shape {tuple(x.shape)} to shape "
                f"{tuple(ax.shape)} (give y = A x_0 + n for images of x_start's shape)"
            )

    def spectral(self, method: str) -> SpectralForm:
        """The operator's closed-form SVD (refused with the operator's name if it has none)."""
        if self._spectral is None:
            self._spectral = spectral_form(self.operator, method)
        return self._spectral

    def apply(self, x: Tensor) -> Tensor:
        """``A x``."""
        return self.operator.A(x) if hasattr(self.operator, "A") else self.operator(x)

    def measurement_for(self, like: Tensor) -> Tensor:
        """``y`` in ``like``'s dtype and device, one row per sample of ``like`` (or one for all).

        A measurement on another device (or in another dtype) is copied once per device and dtype
        and kept while it is unchanged, not at every step
        (:func:`~flowrestore.degradations.base.resident`)."""
        y = resident(self, self.measurement, like)
        if y.shape[0] not in (1, like.shape[0]):
            raise ShapeError(
                f"measurement has {y.shape[0]} rows but the batch has {like.shape[0]} (give one "
                "measurement per sample, or one for all)"
            )
        return y

    def residual_norm(self, x0: Tensor, y: Tensor) -> Tensor:
        """``‖y − A x_0‖`` per sample ``[B]``."""
        r = y - self.apply(x0)
        return r.reshape(r.shape[0], -1).norm(dim=1)

    def model_denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The model's clean estimate ``D(x, t)``."""
        return self.model.denoise(t, x)

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The clean estimate the method uses (here the model's)."""
        return self.model_denoise(t, x)

    def to_state(self, x: Tensor, t: float) -> Tensor:
        """The model flow's state (:meth:`Flow.to_state`)."""
        return self.model.to_state(x, t)

    def from_state(self, x: Tensor, t: float) -> Tensor:
        """The model flow's tensor (:meth:`Flow.from_state`)."""
        return self.model.from_state(x, t)

    def default_spacing(self):
        """The model flow's grid."""
        return self.model.default_spacing()

    def time_variable(self):
        """The model flow's time variable (:meth:`Flow.time_variable`)."""
        return self.model.time_variable()

    def preferred_t_min(self, rtol: float) -> float | None:
        """The model flow's stop for error control (:meth:`Flow.preferred_t_min`): the guided
        flow lives in the model's time and lands onto ``t = 0`` the way the model's flow does."""
        return self.model.preferred_t_min(rtol)


class DiffPIRFlow(GuidedFlow, ResidualFlow):
    """DiffPIR as an ODE: the model's flow with ``D`` replaced by the proximal estimate
    ``x̂_0 = argmin_x ‖y − A x‖² + ρ_t ‖x − D‖²``, ``ρ_t = λ σ_y² α_t²/σ_t²`` (Zhu et al. 2023,
    Algorithm 1, eq. 13 with the paper's ``ρ_t = λ σ_n²/σ̄_t²``).

    In the spectral form ``A = U S Vᵀ`` the minimiser is, per coefficient,
    ``x̂ = d + s (ȳ_u − s d)/(s² + ρ)`` with ``d = Vᵀ D`` and ``ȳ_u = Uᵀ y`` — the exact MAP of the
    Gaussian data term around ``D`` (``σ_y = 0``: ``ρ = 0``, exact consistency on the observed
    coefficients). Refuses an operator without a closed-form SVD when built.

    Args: as :class:`GuidedFlow`, plus ``lam``: DiffPIR's ``λ > 0`` (the paper's default 7 for
    its ImageNet/FFHQ tasks; ``λ = 1`` weighs the data term by the measurement's own noise).
    """

    suggested_solvers = ("Euler", "Heun", "DiffPIRStep", "SemiLinearMultistep")

    def __init__(self, model, operator, measurement, *, noise_std=0.0, lam: float = 1.0):
        super().__init__(model, operator, measurement, noise_std=noise_std)
        self.lam = finite_number("lam", lam)  # numpy scalars welcome
        self.spectral("DiffPIR")

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, lam={self.lam:.4g})"

    def rho(self, t: Tensor) -> Tensor:
        """``ρ_t = λ σ_y² α_t²/σ_t²`` (0 at ``α_t = 0``, flow matching's pure-noise end; ``+∞``
        at ``t = 0``, where ``x̂_0 = D``). A noiseless measurement has ``ρ = 0`` at every ``t``,
        ``t = 0`` included (the limit ``t → 0``: exact consistency)."""
        alpha, sigma = self.coefficients(t)
        if self.noise_std == 0:  # not 0 · ∞ = NaN at σ_t = 0
            return torch.zeros_like(alpha * sigma)
        return self.lam * self.noise_std**2 * (alpha / sigma) ** 2

    def prox(self, x0: Tensor, t: Tensor) -> Tensor:
        """``argmin_x ‖y − A x‖² + ρ_t ‖x − x0‖²`` in closed form (class docstring)."""
        form = self.spectral("DiffPIR")
        d = form.to_spectral(x0)
        s = form.singular_values(x0)
        yu = form.project_measurement(self.measurement_for(x0), x0)
        rho = bcast(batch_time(self.rho(t), x0), x0)
        return form.from_spectral(d + s * (yu - s * d) / nonzero(s * s + rho))

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """The proximal estimate ``x̂_0`` around the model's ``D(x, t)``."""
        return self.prox(self.model_denoise(t, x), t)
