"""Dirac's reverse SDE of a stochastic degradation process — what to integrate (DiracDiffusion,
Fabian et al. 2023, §3 and supplement C; docs/math.md §3).

The stochastic degradation process (SDP) is ``y_t = A_t(x_0) + σ_t z``, ``t ∈ [0, 1]``, with a
degradation family ``A_t`` (``A_0 ≈ I``) and a positive, non-decreasing noise schedule ``σ_t``. Its
reverse SDE (paper eq. 6), with the clean-image predictor ``Φ(y, t) ≈ E[x_0 | y_t]`` in place of
``x_0``, is

    ``dy = f(y, t) dt + g(t) dw̄``,
    ``f(y, t) = ∂_t A_t(Φ(y, t)) − (dσ_t²/dt) (s(y, t) + γ_t)``,
    ``s(y, t) = (A_t(Φ(y, t)) − y) / σ_t²``,
    ``g(t) = sqrt(dσ_t²/dt)``  (additive noise: independent of ``y``),

run from ``t = 1`` (the observation) to ``t = 0``; ``s`` is the score of the clean-image
parametrisation (eq. 11) and ``γ_t`` the optional guidance score. ``σ_0 > 0``, so nothing is
singular at 0: the loop may evaluate the drift there, and ``output="posterior_mean"`` returns
``Φ(y_{t_end}, t_end)`` from one extra evaluation at the end time.

This module says only *what* is integrated: the predictor, the family, the schedule, the score, the
estimate of one predictor evaluation (:class:`DiracEstimate`: ``Φ``, guidance, residual), the
continuous drift and diffusion, and the observation. *How* to step is the solvers' business:
Dirac's discrete update (eq. 7, with its incremental-reconstruction options) is
:class:`~flowrestore.DiracStep`; ``EulerMaruyama``, ``SRA1`` and ``Torchsde`` integrate the
continuous drift with the exact ``∂_t A_t``.

**Guidance** (eqs. 16–17; supplement C, eqs. 25–26 with its two step-size rules). The paper's
equations were lost in our text of it; we follow docs/math.md §3, which writes them out from the
prose: with ``guidance=η`` the score becomes ``s + γ_t``,
``γ_t = −η_t ∇_y ½‖ỹ − A_1(Φ(y, t))‖²``, where ``η_t = η / σ_1²`` (``guidance_scaling="std"``,
"standard deviation scaled": ``γ_t = η ∇_y log N(ỹ; A_1(Φ), σ_1²)``) or ``η_t = η / ‖ỹ − A_1(Φ)‖``
per sample (``"error"``, the normalised step). ``η`` may be a callable ``η(t)`` (``t`` ``[B]``). The
guidance enters the score, so it is the flow's: every solver sees it, and a reverse step moves ``y``
along ``−∇‖ỹ − A_1(Φ)‖²``, which decreases the residual (tested). The gradient goes through ``Φ``
by autograd, locally enabled on a detached leaf even though solves run under ``no_grad``.

**The observation ỹ** (guidance and the data-consistency trace ``‖ỹ − A_1(Φ(y_t, t))‖``,
paper fig. 4): ``observation=`` if given, else the solve's start state when the solve starts at
``t = 1`` (:meth:`DiracSDE.for_solve`), else none (and guidance is refused).

**Checks before the loop.** ``σ`` is checked positive, finite and non-decreasing on a CPU probe of
``[0, 1]`` when the flow is built, the family (and a callable guidance's result) against the state
by :meth:`DiracSDE.check_state`.
The copy a solve integrates (:meth:`DiracSDE.for_solve`) evaluates ``σ`` and ``A_t`` on the loop's
times without checking them again — the solve validated every time against ``time_range`` when it
was planned — so a step reads no device value (no host synchronisation; ``torch.compile``
traces it). Called directly, the flow checks the times it is given, like any public call, and
takes a real number ``t`` in the state's dtype and device.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.degradations.families import Family, as_family
from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    FlowRestoreError,
    PredictorOutputError,
    ShapeError,
    describe,
    finite_number,
)
from flowrestore.flows.base import SDE, batch_time, bcast, check_output
from flowrestore.flows.value_range import check_declared_range
from flowrestore.schedules import Schedule, as_schedule, as_time_tensor, check_on_unit_interval

__all__ = ["DiracEstimate", "DiracSDE"]

GUIDANCE_SCALINGS = ("std", "error")
#: options of Dirac's discrete step, not of the SDE (DiracSDE refuses them, naming DiracStep)
STEP_OPTIONS = ("increment", "small_step", "track_consistency")


@dataclass
class DiracEstimate:
    """What a Dirac step needs from one predictor evaluation at ``(t, y)``.

    ``phi``: ``Φ(y, t)``; ``guidance``: the guidance score ``γ_t`` or ``None``; ``residual``:
    ``‖ỹ − A_1(Φ)‖`` per sample ``[B]`` or ``None`` (no observation, or not asked for).
    """

    phi: Tensor
    guidance: Tensor | None
    residual: Tensor | None


def _refuse_step_options(options: dict) -> None:
    moved = {k: v for k, v in options.items() if k in STEP_OPTIONS}
    if moved:
        args = ", ".join(f"{k}={v!r}" for k, v in moved.items())
        raise ConfigError(
            f"DiracSDE({args}): {', '.join(moved)} configure Dirac's discrete step, which is the "
            f"solver's: pass them to fr.DiracStep({args}) (the SDE says what to integrate, the "
            "solver how to step)"
        )
    name = next(iter(options))
    raise ArgumentTypeError(f"DiracSDE() got an unexpected keyword argument {name!r}")


def _check_guidance(guidance, guidance_scaling):
    if guidance_scaling not in GUIDANCE_SCALINGS:
        raise ConfigError(
            f"guidance_scaling must be one of {GUIDANCE_SCALINGS}, got {guidance_scaling!r}"
        )
    if guidance is None or callable(guidance):
        return guidance
    try:  # an int past float's range (10**400) too: a ConfigError, not an OverflowError
        eta = finite_number("guidance", guidance, allow_zero=True)
    except ConfigError:
        raise ConfigError(
            f"guidance must be a number >= 0 or a callable eta(t), got {describe(guidance)}"
        ) from None
    return eta if eta > 0 else None


class DiracSDE(SDE):
    """Dirac's reverse SDE over a clean-image predictor ``Φ`` (see the module docstring).

    Example::

        A = fr.degradations.GaussianBlurFamily(kernel_size=61, width=fr.schedules.Linear(0.3, 3.0))
        sde = fr.DiracSDE(phi, A, sigma=fr.schedules.Geometric(0.01, 0.05))
        sol = fr.solve(sde, fr.DiracStep(), y, steps=50, generator=g, t_end=0.25,
                       output="posterior_mean")
        sol.x, sol.records["data_consistency"]  # Φ(y_0.25, 0.25); ‖y − A_1(Φ(y_t, t))‖ per step

    Args:
        phi: predictor called as ``phi(y, t)``, ``y`` ``[B, ...]``, ``t`` ``[B]``; returns the clean
            estimate, same shape as ``y`` (e.g. ``DiracMixture.dirac_predictor(A=..., sigma=...)``).
        A: the degradation family ``A_t``: a :class:`~flowrestore.degradations.Family` (exact
            ``∂_t A_t``) or any callable ``A(x, t)`` (``t`` ``[B]``; ``∂_t`` by central difference),
            e.g. ``lambda x, t: x`` for pure denoising. It must map images to images of the same
            shape.
        sigma: noise schedule ``σ_t`` (a Schedule such as ``Geometric(0.01, 0.05)``, a callable,
            or a positive number for a constant): positive and non-decreasing on ``[0, 1]``.
        observation: the measurement ``ỹ`` ``[B, ...]`` for guidance and the data-consistency trace;
            default: the solve's start state when the solve starts at ``t = 1``.
        guidance: guidance strength ``η ≥ 0`` or a callable ``η(t)``; ``None``/0 disables guidance.
        guidance_scaling: ``"std"`` (``η_t = η/σ_1²``) or ``"error"`` (``η_t = η/‖ỹ − A_1(Φ)‖``).
        check_outputs: validate shape, dtype and device of every predictor output.

    The discrete step's options (``increment``, ``small_step``, ``track_consistency``) are
    :class:`~flowrestore.DiracStep`'s.
    """

    noise_type = "additive"
    singular_at_zero = False
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)
    suggested_solvers = ("DiracStep", "EulerMaruyama", "SRA1")

    per_sample_fields = ("observation",)

    def __init__(
        self,
        phi: Callable[[Tensor, Tensor], Tensor],
        A,
        sigma,
        *,
        observation: Tensor | None = None,
        guidance: float | Callable | None = None,
        guidance_scaling: str = "std",
        check_outputs: bool = True,
        **options,
    ):
        if options:
            _refuse_step_options(options)
        if not callable(phi):
            raise ArgumentTypeError(f"phi must be callable phi(y, t), got {type(phi).__name__}")
        if not callable(A):
            raise ArgumentTypeError(
                f"A must be a degradation family or a callable A(x, t), got {describe(A)}"
            )
        self.guidance = _check_guidance(guidance, guidance_scaling)
        if observation is not None and not isinstance(observation, Tensor):
            raise ArgumentTypeError(
                f"observation must be a tensor [B, ...], got {describe(observation)}"
            )
        self.phi = phi
        self.family: Family = as_family(A)
        self.sigma: Schedule = as_schedule(sigma, name="sigma")
        check_on_unit_interval(self.sigma, name="sigma", positive=True, nondecreasing=True)
        self.observation = observation
        self.guidance_scaling = guidance_scaling
        self.check_outputs = check_outputs
        #: True on the copy a solve integrates: its times were validated when the solve was planned
        self.times_checked = False

    @property
    def network(self):
        """The predictor ``phi`` (:attr:`Flow.network <flowrestore.flows.Flow.network>`)."""
        return self.phi

    def __repr__(self) -> str:
        return f"DiracSDE(guidance={self.guidance!r}, guidance_scaling={self.guidance_scaling!r})"

    # ----------------------------------------------------------------- validation
    def check_state(self, x: Tensor) -> None:
        """Validate the start state: a floating batch on which ``A_t`` is an image-to-image map
        that keeps its dtype and device (and a callable guidance ``η(t)`` gives a number or one
        value per sample)."""
        super().check_state(x)
        try:
            out = self.family(x[:1], 1.0)
        except FlowRestoreError as exc:
            raise ShapeError(
                f"the degradation family does not fit states of shape {tuple(x.shape)}: {exc}"
            ) from exc
        except (RuntimeError, IndexError, ValueError, TypeError) as exc:
            raise ShapeError(
                f"the degradation family A(x, t) failed on a state of shape "
                f"{tuple(x[:1].shape)}: {exc}"
            ) from exc
        if not isinstance(out, Tensor) or out.shape != x[:1].shape:
            raise ShapeError(
                f"Dirac needs A_t to map images to images of the same shape: A(x, 1) on "
                f"{tuple(x[:1].shape)} returned {describe(out)}"
            )
        if out.dtype != x.dtype or out.device != x.device:
            # else the step's A_t(Φ) would promote the state (a float32 solve returning float64)
            # or round a float64 solve's increments to float32, silently
            raise PredictorOutputError(
                f"Dirac needs A_t to keep the state's dtype and device: A(x, 1) on a state of "
                f"dtype {x.dtype} on {x.device} returned {describe(out)}"
            )
        if self.observation is not None and self.observation.shape != x.shape:
            raise ShapeError(
                f"observation has shape {tuple(self.observation.shape)}, but the "
                f"state has shape {tuple(x.shape)}"
            )
        if callable(self.guidance):  # its result's shape, before any predictor evaluation
            self._eta(torch.ones((), dtype=x.dtype, device=x.device), x)
        if getattr(self, "value_range", None) is None:  # a PredictorDiracSDE checks its own
            check_declared_range(x, self.phi)

    def _time(self, t, like: Tensor | None = None) -> Tensor:
        """``t`` as given inside a solve; on a direct call checked to lie in [0, 1], a real
        number becoming a 0-d tensor in ``like``'s dtype and device (not the default dtype: a
        float64 state's ``σ_t`` would otherwise be computed in float32)."""
        return t if self.times_checked else as_time_tensor(t, like=like)

    # ---------------------------------------------------------------- the pieces
    def denoise(self, t: Tensor, y: Tensor) -> Tensor:
        """``Φ(y, t)``: the predictor's clean-image (posterior-mean) estimate."""
        out = self.phi(y, batch_time(self._time(t, y), y))
        return check_output("phi", out, y) if self.check_outputs else out

    def degrade(self, x: Tensor, t) -> Tensor:
        """``A_t(x)`` (``t`` a float, 0-d or ``[B]`` tensor)."""
        return self.family(x, t, check=not (self.times_checked and isinstance(t, Tensor)))

    def degradation_derivative(self, x: Tensor, t: Tensor) -> Tensor:
        """``∂_t A_t(x)`` (exact for a Family with a Schedule; central difference otherwise)."""
        return self.family.time_derivative(x, t, check=not self.times_checked)

    def sigma2(self, t: Tensor) -> Tensor:
        """``σ_t²`` in ``t``'s dtype and shape."""
        return self.sigma.value(self._time(t)) ** 2

    def variance_derivative(self, t: Tensor) -> Tensor:
        """``dσ_t²/dt = g(t)²``."""
        return self.sigma.variance_slope(self._time(t))

    def score(
        self, t: Tensor, y: Tensor, phi: Tensor | None = None, a_t_phi: Tensor | None = None
    ) -> Tensor:
        """``s(y, t) = (A_t(Φ(y, t)) − y) / σ_t²`` (eq. 11; ``phi``/``a_t_phi`` reuse work)."""
        t = self._time(t, y)
        if a_t_phi is None:
            phi = self.denoise(t, y) if phi is None else phi
            a_t_phi = self.degrade(phi, t)
        return (a_t_phi - y) / bcast(self.sigma2(t), y)

    def guided_score(
        self, t: Tensor, y: Tensor, est: DiracEstimate, a_t_phi: Tensor | None = None
    ) -> Tensor:
        """``s(y, t) + γ_t``: the score with the estimate's guidance (eqs. 11, 16–17)."""
        score = self.score(t, y, est.phi, a_t_phi)
        if est.guidance is not None:
            score = score + est.guidance
        return score

    def diffusion(self, t: Tensor, y: Tensor) -> Tensor:
        """``g(t) = sqrt(dσ_t²/dt)``, broadcastable to the state (0-d or ``[B, 1, ..., 1]``)."""
        t = self._time(t, y)
        return bcast(self.variance_derivative(t).clamp_min(0).sqrt(), y)

    def for_solve(self, x_start: Tensor, t_start: float) -> DiracSDE:
        """The copy a solve from ``(t_start, x_start)`` integrates.

        Its observation is ``x_start`` when none was given and ``t_start = 1``: at ``t = 1`` the
        state *is* the measurement ``ỹ = y_1`` (the SDP's definition). A solve that starts below 1
        without ``observation=`` has no measurement: no data-consistency trace, and guidance is
        refused. A given observation is converted to ``x_start``'s dtype and device once, here.
        The copy trusts the loop's times (validated when the solve was planned).
        """
        if self.guidance is not None and self.observation is None and t_start != 1.0:
            raise ConfigError(
                f"guidance needs the measurement: the solve starts at t={t_start:.6g}, not 1; "
                "pass DiracSDE(..., observation=y)"
            )
        bound = copy.copy(self)
        bound.times_checked = True
        if self.observation is None and t_start == 1.0:
            bound.observation = x_start
        elif self.observation is not None:
            # once, not on every step (a host-to-device copy per step for a CPU measurement);
            # ``to`` keeps the graph, so a differentiable solve still reaches the measurement
            bound.observation = self.observation.to(dtype=x_start.dtype, device=x_start.device)
        return bound

    def observation_rows(self, like: Tensor) -> Tensor | None:
        """The measurement as the state ``like`` (its dtype and device), or ``None``. On a subset
        of the batch the loop has already restricted the flow to its rows (:meth:`restrict`)."""
        if self.observation is None:
            return None
        obs = self.observation.to(dtype=like.dtype, device=like.device)
        if obs.shape != like.shape:
            raise ShapeError(
                f"observation has shape {tuple(obs.shape)}, the state {tuple(like.shape)}"
            )
        return obs

    def _eta(self, t: Tensor, y: Tensor) -> Tensor:
        if callable(self.guidance):
            tt = batch_time(t, y)
            eta = torch.as_tensor(self.guidance(tt), dtype=y.dtype, device=y.device)
            if eta.dim() == 0:
                return eta.expand(y.shape[0])
            if eta.numel() != y.shape[0]:
                raise ShapeError(
                    f"guidance: the callable eta(t) must return a number, a 0-dim tensor or one "
                    f"value per sample [B]=[{y.shape[0]}] (it was given t of shape "
                    f"{tuple(tt.shape)}), got a result of shape {tuple(eta.shape)} for a state of "
                    f"shape {tuple(y.shape)}: {describe(eta)}"
                )
            return eta.reshape(y.shape[0])
        return torch.full((y.shape[0],), self.guidance, dtype=y.dtype, device=y.device)

    def estimate(
        self, t: Tensor, y: Tensor, observation: Tensor | None = None, *, residual: bool = True
    ) -> DiracEstimate:
        """One predictor evaluation: ``Φ``, the guidance score (if enabled) and, with
        ``residual``, the residual norm ``‖ỹ − A_1(Φ)‖`` (needs the observation)."""
        B = y.shape[0]
        t = self._time(t, y)
        if self.guidance is None or observation is None:
            if self.guidance is not None:
                raise ConfigError(
                    "guidance needs the measurement: pass DiracSDE(..., observation=y) or start "
                    "the solve at t = 1 from y"
                )
            phi = self.denoise(t, y)
            res = None
            if observation is not None and residual:
                r = observation - self.degrade(phi, 1.0)
                res = torch.linalg.vector_norm(r.reshape(B, -1), dim=1)
            return DiracEstimate(phi, None, res)
        # solve(differentiable=True) runs with grad enabled (else torch.no_grad): the guidance
        # gradient is then differentiated too, with respect to y, the measurement or parameters
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = y if create and y.requires_grad else y.detach().requires_grad_(True)
            phi = self.denoise(t, leaf)
            r = observation - self.degrade(phi, 1.0)
            sq = r.pow(2).reshape(B, -1).sum(1)
            (grad,) = (
                torch.autograd.grad(0.5 * sq.sum(), leaf, create_graph=create, allow_unused=True)
                if phi.requires_grad
                else (None,)
            )
        if grad is None:  # metadata only: no device read
            raise PredictorOutputError(
                f"guidance={self.guidance!r} needs the gradient of phi(y, t) with respect to y "
                f"by autograd, but phi's output {describe(phi)} is not connected to y (phi runs "
                "under torch.no_grad(), detaches, or does not use y); make phi differentiable "
                "or pass guidance=None"
            )
        # ‖r‖ is not differentiable at r = 0: there the norm, the error-scaled guidance (0, as
        # the gradient is) and their derivatives are 0, not NaN (the double where keeps the
        # backward of sqrt away from 0)
        pos = sq > 0
        norm = torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), 0.0)
        if not create:
            phi, norm = phi.detach(), norm.detach()
        eta = self._eta(t, y)
        if self.guidance_scaling == "std":
            one = torch.ones((), dtype=y.dtype, device=y.device)
            scale = eta / self.sigma2(one)
        else:
            scale = torch.where(pos, eta / torch.where(pos, norm, torch.ones_like(norm)), 0.0)
        guid = -bcast(scale, y) * grad
        return DiracEstimate(phi, guid, norm if residual else None)

    def drift_terms(
        self, t: Tensor, y: Tensor, observation: Tensor | None = None, *, residual: bool = False
    ) -> tuple[Tensor, DiracEstimate]:
        """The continuous drift ``f(y, t) = ∂_t A_t(Φ) − (dσ²/dt)(s + γ)`` and its estimate."""
        t = self._time(t, y)
        est = self.estimate(t, y, observation, residual=residual)
        dA = self.degradation_derivative(est.phi, t)
        return dA - bcast(self.variance_derivative(t), y) * self.guided_score(t, y, est), est

    def drift(self, t: Tensor, y: Tensor) -> Tensor:
        """``f(y, t) = ∂_t A_t(Φ(y, t)) − (dσ_t²/dt)(A_t(Φ(y, t)) − y)/σ_t²`` (plus guidance)."""
        return self.drift_terms(t, y, self.observation_rows(y))[0]
