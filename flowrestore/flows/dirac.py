"""Dirac's reverse SDE of a stochastic degradation process (DiracDiffusion, Fabian et al. 2023,
eqs. 7–17).

The stochastic degradation process (SDP) is ``y_t = A_t(x_0) + σ_t z``, ``t ∈ [0, 1]``, with a
degradation family ``A_t`` (``A_0 ≈ I``) and a positive, non-decreasing noise schedule ``σ_t``. Its
reverse SDE, with the clean-image predictor ``Φ(y, t) ≈ E[x_0 | y_t]`` in place of ``x_0``, is

    ``dy = f(y, t) dt + g(t) dw̄``,
    ``f(y, t) = ∂_t A_t(Φ(y, t)) − (dσ_t²/dt) s(y, t)``,  ``s(y, t) = (A_t(Φ(y, t)) − y) / σ_t²``,
    ``g(t) = sqrt(dσ_t²/dt)``  (additive noise: independent of ``y``),

run from ``t = 1`` (the observation) to ``t = 0``. ``σ_0 > 0``, so nothing is singular at 0: the
loop may evaluate the drift there, and ``output="posterior_mean"`` returns ``Φ(y_{t_end}, t_end)``
from one extra evaluation at the end time (the last iterate is available as ``output="last"``).

**The discrete step** (:meth:`DiracSDE.reverse_step`, run by the solver
:class:`~flowrestore.DiracStep`) is the paper's eq. 7. Generic SDE solvers (``EulerMaruyama``,
``SRA1``, ``Torchsde``) integrate the continuous drift instead.

**Incremental reconstruction** (eq. 13 and supplement G). The discrete Dirac step replaces
``−Δt ∂_t A_t(x_0)`` by an estimate ``R̂`` of
``A_{t−Δt}(x_0) − A_t(x_0)`` built from ``Φ = Φ(y_t, t)``; ``increment=`` selects it:

* ``"look_ahead"`` (default, eq. 13/30): ``R̂ = A_{t−Δt}(Φ) − A_t(Φ)``;
* ``"small_look_ahead"`` (eq. 31–32): ``R̂ = (Δt/δ)(A_{t−δ}(Φ) − A_t(Φ))``;
* ``"look_back"`` (eq. 33–34): ``R̂ = A_t(Φ) − A_{t+Δt}(Φ)``;
* ``"small_look_back"`` (eq. 35–36): ``R̂ = (Δt/δ)(A_t(Φ) − A_{t+δ}(Φ))``;
* ``"tangent"``: ``R̂ = −Δt ∂_t A_t(Φ)`` (the continuous drift's term: plain Euler–Maruyama).

``δ = min(small_step, Δt)``. Nothing is evaluated outside ``[0, 1]``: where a look-back probe
``t + Δt`` or ``t + δ`` exceeds 1 (always on the first step from ``t = 1``) the probe is reflected
to ``t − Δt`` / ``t − δ``, i.e. that step uses the look-ahead counterpart. The paper's equations for
these estimates were lost in our text extraction; the forms above follow its prose ("first-order
Taylor expansion", "predict the incremental reconstruction based on the most recent change").

**Guidance** (eqs. 16–17, supplement C). With ``guidance=η`` the score becomes
``s + γ_t``, ``γ_t = −η_t ∇_y ½‖ỹ − A_1(Φ(y, t))‖²``, where ``η_t = η / σ_1²``
(``guidance_scaling="std"``: ``γ_t = η ∇_y log N(ỹ; A_1(Φ), σ_1²)``, eq. 17) or
``η_t = η / ‖ỹ − A_1(Φ)‖`` per sample (``"error"``, the DPS-style normalised step). ``η`` may be a
callable ``η(t)`` (``t`` ``[B]``). The guidance enters the score, so a reverse step moves ``y`` by
``(σ_t² − σ_{t−Δt}²) γ_t`` — along ``−∇‖ỹ − A_1(Φ)‖²``, which decreases the residual (tested); it is
the same term in the continuous drift, so every SDE solver sees it. The gradient goes through ``Φ``
by autograd, locally enabled on a detached leaf even though solves run under ``no_grad``.

**The observation ỹ** (guidance and the data-consistency trace ``‖ỹ − A_1(Φ(y_t, t))‖``,
paper fig. 4): ``observation=`` if given, else the solve's start state when the solve starts at
``t = 1`` (``fr.solve(sde, solver, y, ...)`` with ``y`` the measurement:
:meth:`DiracSDE.for_solve`),
else none (and guidance is refused). :class:`~flowrestore.DiracStep` records the trace per step as
``Solution.records["data_consistency"]`` (``[steps, B]``, evaluated at each step's start, no extra
predictor evaluation).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.degradations.families import Family, as_family
from flowrestore.errors import ConfigError, FlowRestoreError, ShapeError, describe
from flowrestore.flows.base import SDE, batch_time, bcast, check_output
from flowrestore.schedules import Constant, Schedule

__all__ = ["DiracEstimate", "DiracSDE"]

INCREMENTS = ("look_ahead", "small_look_ahead", "look_back", "small_look_back", "tangent")
GUIDANCE_SCALINGS = ("std", "error")


@dataclass
class DiracEstimate:
    """What a Dirac step needs from one predictor evaluation at ``(t, y)``.

    ``phi``: ``Φ(y, t)``; ``guidance``: the guidance score ``γ_t`` or ``None``; ``residual``:
    ``‖ỹ − A_1(Φ)‖`` per sample ``[B]`` or ``None`` without an observation.
    """

    phi: Tensor
    guidance: Tensor | None
    residual: Tensor | None


class _Sigma:
    """``σ_t`` and ``dσ_t²/dt`` from a Schedule (exact) or a callable (central difference)."""

    def __init__(self, sigma, fd_step: float = 1e-4):
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            sigma = Constant(float(sigma))
        if not callable(sigma):
            raise ConfigError(
                "sigma must be a Schedule, a callable t -> σ_t or a positive "
                f"number, got {describe(sigma)}"
            )
        self.fn, self.h = sigma, fd_step
        grid = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
        try:
            v = self.value(grid)
            dv = self.variance_derivative(grid)
        except FlowRestoreError:
            raise
        except Exception as exc:  # a user callable that fails on a [101] float64 tensor
            raise ConfigError(f"sigma(t) must accept a tensor of times, got error: {exc}") from exc
        if not bool(torch.isfinite(v).all()) or not bool((v > 0).all()):
            k = int(torch.nonzero(~(torch.isfinite(v) & (v > 0)))[0])
            raise ConfigError(
                f"sigma must be positive and finite on [0, 1]; "
                f"sigma({grid[k]:.3g}) = {float(v[k])!r}"
            )
        tol = 1e-9 * float(v.max()) ** 2
        if not bool((dv >= -tol).all()):
            k = int(torch.nonzero(dv < -tol)[0])
            raise ConfigError(
                f"sigma must be non-decreasing on [0, 1] (dσ²/dt is the squared diffusion); "
                f"dσ²/dt({grid[k]:.3g}) = {float(dv[k]):.3g}"
            )

    def value(self, t: Tensor) -> Tensor:
        v = self.fn(t)
        v = torch.as_tensor(v, dtype=t.dtype, device=t.device)
        return v.expand(t.shape) if v.dim() == 0 else v.to(t.dtype)

    def variance_derivative(self, t: Tensor) -> Tensor:
        if isinstance(self.fn, Schedule):
            return self.fn.variance_derivative(t).to(t.dtype)
        t64 = t.detach().double()
        lo, hi = (t64 - self.h).clamp_min(0), (t64 + self.h).clamp_max(1)
        d = (self.value(hi) ** 2 - self.value(lo) ** 2) / (hi - lo)
        return d.to(t.dtype)


def _family_time(t: Tensor):
    """A family's time: a float for a 0-d CPU time (the cached-kernel fast path), else ``t``."""
    if t.dim() == 0 and t.device.type == "cpu" and not t.requires_grad:
        return float(t)
    return t


class DiracSDE(SDE):
    """Dirac's reverse SDE over a clean-image predictor ``Φ`` (see the module docstring).

    Example::

        A = fr.degradations.GaussianBlurFamily(kernel_size=61, width=fr.schedules.Linear(0.3, 3.0))
        sde = fr.DiracSDE(phi, A, sigma=fr.schedules.Geometric(0.01, 0.05))
        sol = fr.solve(sde, fr.EulerMaruyama(), y, steps=50, generator=g, t_end=0.25,
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
        increment: incremental-reconstruction estimate of the discrete step, one of
            ``"look_ahead"`` (default), ``"small_look_ahead"``, ``"look_back"``,
            ``"small_look_back"``, ``"tangent"``.
        small_step: ``δ`` of the small look-ahead/look-back estimates (capped at the step size).
        guidance: guidance strength ``η ≥ 0`` or a callable ``η(t)``; ``None``/0 disables guidance.
        guidance_scaling: ``"std"`` (``η_t = η/σ_1²``) or ``"error"`` (``η_t = η/‖ỹ − A_1(Φ)‖``).
        track_consistency: record ``‖ỹ − A_1(Φ(y_t, t))‖`` per step when an observation is known.
        check_outputs: validate shape, dtype and device of every predictor output.
    """

    noise_type = "additive"
    singular_at_zero = False
    default_span = (1.0, 0.0)
    time_range = (0.0, 1.0)
    suggested_solvers = ("DiracStep", "EulerMaruyama", "SRA1")

    def __init__(
        self,
        phi: Callable[[Tensor, Tensor], Tensor],
        A,
        sigma,
        *,
        observation: Tensor | None = None,
        increment: str = "look_ahead",
        small_step: float = 1e-3,
        guidance: float | Callable | None = None,
        guidance_scaling: str = "std",
        track_consistency: bool = True,
        check_outputs: bool = True,
    ):
        if not callable(phi):
            raise TypeError(f"phi must be callable phi(y, t), got {type(phi).__name__}")
        if not callable(A):
            raise TypeError(
                f"A must be a degradation family or a callable A(x, t), got {describe(A)}"
            )
        if increment not in INCREMENTS:
            raise ConfigError(f"increment must be one of {INCREMENTS}, got {increment!r}")
        if (
            isinstance(small_step, bool)
            or not isinstance(small_step, (int, float))
            or not 0 < small_step <= 1
        ):
            raise ConfigError(f"small_step must be a number in (0, 1], got {describe(small_step)}")
        if guidance_scaling not in GUIDANCE_SCALINGS:
            raise ConfigError(
                f"guidance_scaling must be one of {GUIDANCE_SCALINGS}, got {guidance_scaling!r}"
            )
        if guidance is not None and not callable(guidance):
            if (
                isinstance(guidance, bool)
                or not isinstance(guidance, (int, float))
                or not math.isfinite(guidance)
                or guidance < 0
            ):
                raise ConfigError(
                    f"guidance must be a number >= 0 or a callable eta(t), got {describe(guidance)}"
                )
            guidance = float(guidance) if guidance > 0 else None
        if observation is not None and not isinstance(observation, Tensor):
            raise TypeError(f"observation must be a tensor [B, ...], got {describe(observation)}")
        self.phi = phi
        self.family: Family = as_family(A)
        self.sigma = _Sigma(sigma)
        self.observation = observation
        self.increment = increment
        self.small_step = float(small_step)
        self.guidance = guidance
        self.guidance_scaling = guidance_scaling
        self.track_consistency = bool(track_consistency)
        self.check_outputs = check_outputs

    @property
    def network(self):
        """The predictor ``phi`` (:attr:`Flow.network <flowrestore.flows.Flow.network>`)."""
        return self.phi

    def __repr__(self) -> str:
        return (
            f"DiracSDE(increment={self.increment!r}, guidance={self.guidance!r}, "
            f"guidance_scaling={self.guidance_scaling!r})"
        )

    # ----------------------------------------------------------------- validation
    def check_state(self, x: Tensor) -> None:
        """Validate the start state: a floating batch on which ``A_t`` is an image-to-image map."""
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
        if self.observation is not None and self.observation.shape != x.shape:
            raise ShapeError(
                f"observation has shape {tuple(self.observation.shape)}, but the "
                f"state has shape {tuple(x.shape)}"
            )

    # ---------------------------------------------------------------- the pieces
    def denoise(self, t: Tensor, y: Tensor) -> Tensor:
        """``Φ(y, t)``: the predictor's clean-image (posterior-mean) estimate."""
        out = self.phi(y, batch_time(t, y))
        return check_output("phi", out, y) if self.check_outputs else out

    def degrade(self, x: Tensor, t) -> Tensor:
        """``A_t(x)`` (``t`` a float, 0-d or ``[B]`` tensor)."""
        return self.family(x, _family_time(t) if isinstance(t, Tensor) else t)

    def sigma2(self, t: Tensor) -> Tensor:
        """``σ_t²`` in ``t``'s dtype and shape."""
        return self.sigma.value(t) ** 2

    def variance_derivative(self, t: Tensor) -> Tensor:
        """``dσ_t²/dt = g(t)²``."""
        return self.sigma.variance_derivative(t)

    def score(
        self, t: Tensor, y: Tensor, phi: Tensor | None = None, a_t_phi: Tensor | None = None
    ) -> Tensor:
        """``s(y, t) = (A_t(Φ(y, t)) − y) / σ_t²`` (eq. 11; ``phi``/``a_t_phi`` reuse work)."""
        if a_t_phi is None:
            phi = self.denoise(t, y) if phi is None else phi
            a_t_phi = self.degrade(phi, t)
        return (a_t_phi - y) / bcast(self.sigma2(t), y)

    def diffusion(self, t: Tensor, y: Tensor) -> Tensor:
        """``g(t) = sqrt(dσ_t²/dt)``, broadcastable to the state (0-d or ``[B, 1, ..., 1]``)."""
        return bcast(self.variance_derivative(t).clamp_min(0).sqrt(), y)

    def for_solve(self, x_start: Tensor, t_start: float) -> DiracSDE:
        """A copy whose observation is ``x_start`` when none was given and ``t_start = 1``.

        At ``t = 1`` the state *is* the measurement ``ỹ = y_1`` (the SDP's definition). A solve
        that starts below 1 without ``observation=`` has no measurement: no data-consistency
        trace, and guidance is refused.
        """
        if self.observation is not None or t_start != 1.0:
            if self.guidance is not None and self.observation is None:
                raise ConfigError(
                    f"guidance needs the measurement: the solve starts at t={t_start:.6g}, not 1; "
                    "pass DiracSDE(..., observation=y)"
                )
            return self
        bound = copy.copy(self)
        bound.observation = x_start
        return bound

    def observation_rows(self, like: Tensor, index: Tensor | None = None) -> Tensor | None:
        """The measurement for the rows being stepped (``index``; ``None``: all), or ``None``."""
        if self.observation is None:
            return None
        obs = self.observation.to(dtype=like.dtype, device=like.device)
        obs = obs if index is None else obs[index.to(obs.device)]
        if obs.shape != like.shape:
            raise ShapeError(
                f"observation has shape {tuple(obs.shape)}, the state {tuple(like.shape)}"
            )
        return obs

    def _eta(self, t: Tensor, y: Tensor) -> Tensor:
        if callable(self.guidance):
            eta = torch.as_tensor(self.guidance(batch_time(t, y)), dtype=y.dtype, device=y.device)
            return eta.expand(y.shape[0]) if eta.dim() == 0 else eta.reshape(y.shape[0])
        return torch.full((y.shape[0],), self.guidance, dtype=y.dtype, device=y.device)

    def estimate(self, t: Tensor, y: Tensor, observation: Tensor | None = None) -> DiracEstimate:
        """One predictor evaluation: ``Φ``, the guidance score (if enabled), the residual norm."""
        B = y.shape[0]
        if self.guidance is None or observation is None:
            if self.guidance is not None:
                raise ConfigError(
                    "guidance needs the measurement: pass DiracSDE(..., observation=y) or start "
                    "the solve at t = 1 from y"
                )
            phi = self.denoise(t, y)
            res = None
            if observation is not None and self.track_consistency:
                r = observation - self.degrade(phi, 1.0)
                res = torch.linalg.vector_norm(r.reshape(B, -1), dim=1)
            return DiracEstimate(phi, None, res)
        create = torch.is_grad_enabled() and y.requires_grad
        with torch.enable_grad():
            leaf = y if create else y.detach().requires_grad_(True)
            phi = self.denoise(t, leaf)
            r = observation - self.degrade(phi, 1.0)
            sq = r.pow(2).reshape(B, -1).sum(1)
            (grad,) = torch.autograd.grad(0.5 * sq.sum(), leaf, create_graph=create)
        norm = sq.sqrt()
        if not create:
            phi, norm = phi.detach(), norm.detach()
        eta = self._eta(t, y)
        if self.guidance_scaling == "std":
            one = torch.ones((), dtype=y.dtype, device=y.device)
            scale = eta / self.sigma2(one)
        else:
            scale = eta / norm.clamp_min(torch.finfo(y.dtype).tiny)
        guid = -bcast(scale, y) * grad
        return DiracEstimate(phi, guid, norm if self.track_consistency else None)

    def drift_terms(
        self, t: Tensor, y: Tensor, observation: Tensor | None = None
    ) -> tuple[Tensor, DiracEstimate]:
        """The continuous drift ``f(y, t) = ∂_t A_t(Φ) − (dσ²/dt)(s + γ)`` and its estimate."""
        est = self.estimate(t, y, observation)
        score = self.score(t, y, est.phi)
        if est.guidance is not None:
            score = score + est.guidance
        dA = self.family.time_derivative(est.phi, _family_time(t))
        return dA - bcast(self.variance_derivative(t), y) * score, est

    def drift(self, t: Tensor, y: Tensor) -> Tensor:
        """``f(y, t) = ∂_t A_t(Φ(y, t)) − (dσ_t²/dt)(A_t(Φ(y, t)) − y)/σ_t²`` (plus guidance)."""
        return self.drift_terms(t, y, self.observation_rows(y))[0]

    def reverse_step(
        self, t: Tensor, y: Tensor, h: Tensor, z: Tensor, observation: Tensor | None = None
    ) -> tuple[Tensor, DiracEstimate]:
        """Dirac's discrete reverse step (paper eq. 7) from ``t`` to ``s = t + h`` (``h < 0``).

        ``y_s = y_t + R̂ − (σ_s² − σ_t²)(s_θ(y_t, t) + γ_t) + sqrt(σ_t² − σ_s²) z`` with ``R̂`` the
        configured incremental reconstruction (eq. 13), ``s_θ`` the score of eq. 11 and ``γ_t``
        the guidance score (eq. 16–17). One predictor evaluation; returns the new state and the
        estimate (``Φ``, guidance, residual norm).
        """
        s = (t + h).clamp(0.0, 1.0)
        est = self.estimate(t, y, observation)
        a_t_phi = self.degrade(est.phi, t)
        score = self.score(t, y, est.phi, a_t_phi)
        if est.guidance is not None:
            score = score + est.guidance
        r_hat = self.incremental_reconstruction(t, h, est.phi, a_t_phi)
        dvar = self.sigma2(s) - self.sigma2(t)
        y_next = y + r_hat - bcast(dvar, y) * score + bcast(dvar.abs().sqrt(), y) * z
        return y_next, est

    def incremental_reconstruction(
        self, t: Tensor, h: Tensor, phi: Tensor, a_t_phi: Tensor | None = None
    ) -> Tensor:
        """``R̂ ≈ A_{t+h}(x_0) − A_t(x_0)`` from ``Φ`` by the configured estimate (``h < 0``)."""
        a_t_phi = self.degrade(phi, t) if a_t_phi is None else a_t_phi
        if self.increment == "look_ahead":
            return self.degrade(phi, (t + h).clamp(0.0, 1.0)) - a_t_phi
        if self.increment == "tangent":
            return bcast(h, phi) * self.family.time_derivative(phi, _family_time(t))
        sign = torch.sign(h)
        delta = h.abs().clamp(max=self.small_step)
        if self.increment == "small_look_ahead":
            p = t + sign * delta
        elif self.increment == "look_back":
            p = t - h
        else:  # small_look_back
            p = t - sign * delta
        p = torch.where((p < 0) | (p > 1), 2 * t - p, p).clamp(0.0, 1.0)
        ratio = h / (p - t)
        return bcast(ratio, phi) * (self.degrade(phi, p) - a_t_phi)
