"""InDI's residual flow ``dx/dt = (x − F(x, t)) / t`` from ``t = 1`` to ``t = 0``.

InDI (Delbracio & Milanfar 2023, §3 "InDI as a Residual Flow ODE"): ``F`` is a clean-image
predictor (ideally ``E[x | x_t]`` for ``x_t = (1 − t) x + t y``), and this small-step limit of the
InDI sampler transports the degraded image ``y`` at ``t = 1`` to a clean one at ``t = 0``.
Semi-linear form ``dx/dt = x/t − F/t`` (:class:`~flowrestore.flows.base.ResidualFlow`); the drift
is ``0/0`` at ``t = 0`` for an exact predictor and unbounded for a learned one that does not tend
to ``x`` there, so the loop never evaluates it at 0 (docs/math.md §1, "The endpoint").

A predictor with ``predicts_velocity = True`` and a method ``velocity(x, t)`` (e.g.
``training.UNet(velocity=True)``: ``F = x − t·v``) gives the drift ``v`` directly: bounded by
construction, and without the cancellation of ``(x − F)/t`` at small ``t``.

A conditioned predictor (a class label, a text embedding, a per-image noise level) takes its
per-sample inputs through ``cond=``: ``InDIFlow(F, cond={"label": labels})`` calls
``F(x, t, label=labels[rows])`` with the rows being stepped (a tensor ``cond`` is passed as a third
positional argument).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor

from flowrestore.errors import ArgumentTypeError, ShapeError, describe
from flowrestore.flows.base import ResidualFlow, batch_time, call_user, check_cond
from flowrestore.flows.declared import DeclaredGrids
from flowrestore.flows.value_range import check_declared_range
from flowrestore.grids import FittedGrids, Spacing

__all__ = ["InDIFlow"]


class InDIFlow(DeclaredGrids, ResidualFlow):
    """The InDI residual flow over a clean-image predictor.

    Args:
        predictor: any callable or ``nn.Module``, called as ``predictor(x, t)`` with ``x`` of
            shape ``[B, ...]`` and ``t`` a tensor of shape ``[B]`` (per-sample time, state dtype).
        observation: the degraded batch ``y`` (used by the naive and Cold-Diffusion samplers);
            default: the solve's start state when the solve starts at ``t = 1`` (``x_1 = y``).
        cond: per-sample conditioning passed to every call: a dict of tensors (keyword
            arguments ``predictor(x, t, **cond)``) or one tensor (``predictor(x, t, cond)``),
            each with a leading batch dimension (or 0-d); the loop passes the rows it steps.
        check_outputs: validate shape, dtype and device of every predictor output and refuse a
            predictor that modifies ``x`` in place (metadata only: no host synchronisation).
        grids: grids fitted to this predictor for one solver (:class:`~flowrestore.FittedGrids`,
            e.g. from :func:`~flowrestore.integrate.fit_grids`): ``steps=N``
            with that solver runs on them. A shipped predictor's flow carries its own
            (:func:`flowrestore.pretrained.flow_for`).
        spacings: grid spacings declared for this predictor per solver class, e.g.
            ``{fr.DataIPNDM: fr.StartRefined(rho=3, closing_pair=False)}``: ``steps=N`` with a
            solver of exactly that class lays that spacing (after its fitted ``grids``; an
            explicit ``spacing=`` or ``grid=`` still wins), with the loop's landing rules
            (:mod:`flowrestore.integrate.endpoint`) unless it is
            :class:`~flowrestore.grids.Unrefined`. Any other solver gets the loop's default.
            A trained restoration predictor changes fastest near the degraded end ``t = 1``,
            where a start-refined grid's steps are smallest; a shipped predictor declares the
            grid chosen on its validation crops (:func:`flowrestore.pretrained.flow_for`).
    """

    per_sample_fields = ("observation", "cond")

    def __init__(
        self,
        predictor: Callable[..., Tensor],
        *,
        observation: Tensor | None = None,
        cond: Tensor | dict[str, Tensor] | None = None,
        check_outputs: bool = True,
        grids: FittedGrids | None = None,
        spacings: dict[type, Spacing] | None = None,
    ):
        if not callable(predictor):
            raise ArgumentTypeError(
                f"predictor must be callable predictor(x, t), got {type(predictor).__name__}"
            )
        if observation is not None and not isinstance(observation, Tensor):
            raise ArgumentTypeError(
                f"observation must be a tensor [B, ...], got {describe(observation)}"
            )
        if not isinstance(check_outputs, bool):
            raise ArgumentTypeError(f"check_outputs must be a bool, got {describe(check_outputs)}")
        check_cond(cond, None)
        self._declare_grids(grids, spacings)
        self.predictor = predictor
        self.observation = observation
        self.cond = cond
        self.check_outputs = check_outputs
        self._velocity = (
            predictor.velocity if getattr(predictor, "predicts_velocity", False) else None
        )

    @property
    def network(self):
        """The predictor ``predictor`` (:attr:`Flow.network <flowrestore.flows.Flow.network>`)."""
        return self.predictor

    def __repr__(self) -> str:
        return f"InDIFlow({type(self.predictor).__name__})"

    def check_state(self, x: Tensor) -> None:
        """Validate the start state and, if given, that the observation has its shape; a
        predictor that declares its ``value_range`` (a shipped one) refuses a state far outside
        it (:mod:`flowrestore.flows.value_range`)."""
        super().check_state(x)
        if self.observation is not None and self.observation.shape != x.shape:
            raise ShapeError(
                f"observation has shape {tuple(self.observation.shape)}, but the start state "
                f"has shape {tuple(x.shape)}"
            )
        y = self.observation
        if y is not None and (y.dtype != x.dtype or y.device != x.device):
            # a float64 y would promote the samplers' states; another device fails mid-solve
            raise ArgumentTypeError(
                f"observation has dtype {y.dtype} on {y.device}, but the start state has dtype "
                f"{x.dtype} on {x.device}: pass observation=y.to(x_start)"
            )
        if getattr(self, "value_range", None) is None:  # a PredictorInDIFlow checks its own
            check_declared_range(x, self.predictor)

    def for_solve(self, x_start: Tensor, t_start: float) -> InDIFlow:
        """A copy whose observation is ``x_start`` when none was given and ``t_start = 1``."""
        if self.observation is not None or t_start != 1.0:
            return self
        bound = copy.copy(self)
        bound.observation = x_start
        return bound

    def predict(self, t: Tensor, x: Tensor) -> Tensor:
        """``F(x, t)``, the predictor's clean-image estimate."""
        return call_user(
            "predictor",
            self.predictor,
            x,
            (x, batch_time(t, x)),
            self.cond,
            check=self.check_outputs,
        )

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        """Clean-image estimate ``F(x, t)`` (the Euler step from ``t`` onto 0)."""
        return self.predict(t, x)

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        """``(x − F(x, t)) / t``, or the predictor's own velocity ``v(x, t)`` if it has one."""
        if self._velocity is None:
            return super().velocity(t, x)
        return call_user(
            "predictor.velocity",
            self._velocity,
            x,
            (x, batch_time(t, x)),
            self.cond,
            check=self.check_outputs,
        )
