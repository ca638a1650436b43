"""BIRD's latent and its optimiser: the latent kept on the sphere of radius ``sqrt(d)`` (the
typical set of ``N(0, I)``), the tangent gradient, the projected Adam step over the latent and the
unknowns, and the one host read per iteration.

BIRD (Chihaoui et al., "Blind Image Restoration via Fast Diffusion Inversion", NeurIPS 2024)
optimises a latent ``z`` whose norm it projects back onto ``sqrt(d)`` after every step
(:mod:`flowrestore.inversion.blind`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, ShapeError, describe

__all__ = ["ProjectedAdam", "check_observation", "project_sphere", "read_iteration", "tangent_"]


def project_sphere(z: Tensor) -> Tensor:
    """``sqrt(d) z / ‖z‖`` per sample of ``z`` ``[B, ...]`` (``d`` = elements per sample), in
    place, whatever ``z``'s memory layout; returns ``z``. A sample that is all zeros has no
    direction and stays zero (:meth:`BlindInversion.run` refuses such a latent)."""
    with torch.no_grad():
        flat = z.reshape(z.shape[0], -1)
        norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True).clamp_min(1e-30)
        flat.mul_(math.sqrt(flat.shape[1]) / norm)
        if flat.data_ptr() != z.data_ptr():  # a non-contiguous z (channels-last, permuted):
            z.copy_(flat.reshape(z.shape))  # reshape copied it, the step above missed z
    return z


def tangent_(g: Tensor, z: Tensor) -> Tensor:
    """Per sample, remove from ``g`` its component along ``z`` in place: ``g − (⟨g,z⟩/‖z‖²) z``."""
    with torch.no_grad():
        gf, zf = g.reshape(g.shape[0], -1), z.reshape(z.shape[0], -1)
        coef = (gf * zf).sum(dim=1, keepdim=True) / zf.square().sum(dim=1, keepdim=True).clamp_min(
            1e-30
        )
        g.copy_((gf - coef * zf).reshape(g.shape))
    return g


def read_iteration(loss: Tensor, g_z: Tensor, g_params=()) -> tuple[bool, float]:
    """Whether the objective and the gradients (the latent's, the unknowns' ``g_params``) are
    finite, and the mean loss: one scalar read (the mean loss, NaN when anything is not finite).
    A non-finite gradient of an unknown would turn it into NaN at the step, unseen until the next
    iteration's objective, or never after the last one."""
    finite = torch.isfinite(loss).all() & torch.isfinite(g_z).all()
    for g in g_params:
        finite = finite & torch.isfinite(g).all()
    value = torch.where(finite, loss.detach().mean(), torch.nan).item()
    return math.isfinite(value), value


def check_observation(y) -> None:
    """Refuse an observation that is not a finite, non-empty float tensor ``[B, ...]`` (one host
    read)."""
    if not isinstance(y, Tensor) or not torch.is_floating_point(y) or y.dim() < 2:
        raise ShapeError(f"y must be a floating-point batch [B, ...], got {describe(y)}")
    if y.numel() == 0:
        raise ShapeError(
            f"y must have at least one image and one value, got shape {tuple(y.shape)}"
        )
    if not bool(torch.isfinite(y).all()):
        raise ConfigError(f"y must be finite, got {describe(y)}")


class ProjectedAdam:
    """Adam over the latent ``z`` and every unknown's value (each its own rate: the Param's
    ``lr``, else ``lr_degradation``), an optional cosine rate schedule over ``cosine_steps``, and
    after each step the projections back onto the valid sets (the sphere, each Param's set)."""

    def __init__(
        self, z: Tensor, values: dict[str, Tensor], unknowns: dict, *, lr_latent: float,
        lr_degradation: float, betas: tuple[float, float], cosine_steps: int | None,
    ):  # fmt: skip
        self.z, self.values, self.unknowns = z, values, unknowns
        groups = [{"params": [z], "lr": lr_latent}]
        for key, (_, _, p) in unknowns.items():
            groups.append({"params": [values[key]], "lr": p.lr or lr_degradation})
        # the fused kernel keeps Adam's step count on the device (the default one reads it)
        fused = z.device.type in ("cpu", "cuda") and z.dtype in (torch.float32, torch.float64)
        self.adam = torch.optim.Adam(groups, betas=betas, fused=fused)
        self.schedule = (
            None
            if cosine_steps is None
            else torch.optim.lr_scheduler.CosineAnnealingLR(self.adam, max(cosine_steps, 1))
        )

    def step(self, g_z: Tensor, g_params: dict[str, Tensor]) -> None:
        """One projected step: the gradients in, Adam's step, then back onto the valid sets."""
        self.z.grad = g_z
        for key, v in self.values.items():
            v.grad = g_params[key]
        self.adam.step()
        if self.schedule is not None:
            self.schedule.step()
        project_sphere(self.z)
        for key, (_, _, p) in self.unknowns.items():
            p.project(self.values[key])
