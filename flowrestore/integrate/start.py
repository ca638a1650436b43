"""The clean estimate at a pure-noise start, measured on warm-up inputs (issue 16).

A diffusion or flow-matching solve starts from pure noise, where the model's clean estimate is
the data's mean whatever the input (flowrestore/solvers/adams.py, "The analytic first step";
Zhou et al. 2024, "Fast ODE-based sampling for diffusion models in around 5 steps"). Its mean
over a few warm-up noises is what :class:`~flowrestore.IPNDM`, :class:`~flowrestore.DataIPNDM`,
:class:`~flowrestore.SemiLinearMultistep`, :class:`~flowrestore.UniPC` and
:func:`~flowrestore.integrate.fit_weights` take as ``start_estimate`` to skip the first
evaluation of every later solve: one evaluation of the warm-up batch, once. The model's own
estimate, not the training set's mean: the solve approximates the model's ODE, whose start is
the model's estimate (on the trained DDPMs of ``benchmarks/analytic_start.py`` the training
set's mean image is 0.36–1.08 away from it, relative, and the solves given it trail the
evaluated ones by up to 2.2× from 7 evaluations on).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrestore.errors import (
    ArgumentTypeError,
    ConfigError,
    IncompatibleSolverError,
    NonFiniteError,
    describe,
)
from flowrestore.flows.base import Flow

__all__ = ["estimate_start"]


def estimate_start(flow: Flow, x_warmup: Tensor) -> Tensor:
    """The model's clean estimate at ``flow``'s start, averaged over the warm-up noises.

    Args:
        flow: a flow whose start is pure noise (its time a noise level: a diffusion, EDM or
            flow-matching model; :class:`~flowrestore.flows.base.TimeVariable` ``reciprocal`` or
            ``log_snr``), with a default span.
        x_warmup: a batch of at least 2 start noises in the flow's input units (as given to
            :func:`~flowrestore.solve`); not the ones you score.

    Returns:
        ``[1, *event]``: pass it as ``start_estimate=`` (module docstring). One evaluation of
        the batch, without gradients.
    """
    if not isinstance(flow, Flow):
        raise ArgumentTypeError(f"flow must be a flowrestore Flow, got {describe(flow)}")
    declared = flow.time_variable()
    if not (declared.reciprocal or declared.log_snr) or flow.default_span is None:
        raise IncompatibleSolverError(
            f"{type(flow).__name__} does not start from pure noise (its time is not a noise "
            "level, or it has no default span): its clean estimate at the start depends on the "
            "input, and no single estimate stands for it"
        )
    if not isinstance(x_warmup, Tensor) or x_warmup.ndim < 2 or x_warmup.shape[0] < 2:
        raise ConfigError(
            f"x_warmup must be a batch of at least 2 noises [B, ...], got {describe(x_warmup)}"
        )
    flow.check_state(x_warmup)
    finite = torch.isfinite(x_warmup.detach()).reshape(x_warmup.shape[0], -1).all(1)
    if not bool(finite.all()):  # refused before the evaluation, naming the samples
        bad = (~finite).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"x_warmup is non-finite (NaN/inf) for samples {bad[:10]}: estimate on finite noises"
        )
    t0 = float(flow.default_span[0])
    with torch.no_grad():
        state = flow.to_state(x_warmup, t0)
        t = torch.tensor(t0, dtype=state.dtype, device=state.device)
        mean = flow.denoise(t, state).mean(0, keepdim=True)
    if not bool(torch.isfinite(mean).all()):
        raise NonFiniteError(f"the model's estimate at the start is not finite: {describe(mean)}")
    return mean
