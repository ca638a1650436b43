"""Seeded Gaussian noise for stochastic solvers.

A stochastic step asks its :class:`NoiseSource` for standard normal draws shaped like the state.
``GeneratorNoise`` draws the whole batch from one ``torch.Generator`` (fast; a sample's noise then
depends on its position in the batch). ``PerSampleNoise`` gives each sample its own generator
seeded by its own seed, so sample ``i`` restores identically whatever batch it is in.
``BrownianIncrements`` replays a fixed fine path of Brownian increments and sums them over coarser
steps — the shared-path construction used to measure strong order (MATH.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, GridError, ShapeError, describe


class NoiseSource:
    """Produces standard normal tensors (and Brownian increments) for stochastic steps."""

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        """A standard normal tensor shaped like ``like`` (``index``: the batch rows it is for)."""
        raise NotImplementedError

    def increment(self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None) -> Tensor:
        """A Brownian increment ``W(t1) − W(t0)`` shaped like ``like`` (default: scaled normal)."""
        return self.normal(like, index) * (t1 - t0).abs().sqrt()


class GeneratorNoise(NoiseSource):
    """Draws the batch from one ``torch.Generator`` (``None``: torch's global RNG)."""

    def __init__(self, generator: torch.Generator | None = None):
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        g = self.generator
        if g is None or g.device == like.device:
            return torch.randn(like.shape, generator=g, dtype=like.dtype, device=like.device)
        z = torch.randn(like.shape, generator=g, dtype=like.dtype, device=g.device)
        return z.to(like.device)


class PerSampleNoise(NoiseSource):
    """One generator per sample, seeded by that sample's seed: batch-composition invariant.

    Args:
        seeds: one integer seed per sample (sequence or 1-D integer tensor).
        device: where the generators live (default CPU; draws are moved to the state's device).
    """

    def __init__(self, seeds: Sequence[int] | Tensor, *, device: str | torch.device = "cpu"):
        values = seeds.tolist() if isinstance(seeds, Tensor) else list(seeds)
        if not values or not all(isinstance(s, int) for s in values):
            raise ConfigError(f"seeds must be a non-empty sequence of ints, got {describe(seeds)}")
        self.seeds = values
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in values]

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        rows = range(like.shape[0]) if index is None else index.tolist()
        if index is None and like.shape[0] != len(self.generators):
            raise ShapeError(
                f"PerSampleNoise has {len(self.generators)} seeds but the batch has {like.shape[0]} samples"
            )
        draws = [
            torch.randn(like.shape[1:], generator=self.generators[i], dtype=like.dtype,
                        device=self.generators[i].device)
            for i in rows
        ]
        return torch.stack(draws).to(like.device)


class BrownianIncrements(NoiseSource):
    """Replays a fixed Brownian path given by increments on a fine grid.

    ``increment(t0, t1)`` sums the fine increments between two fine-grid points, so solves on any
    coarser sub-grid see the same path. Args: ``fine_grid`` (1-D, monotone, shared by the batch)
    and ``increments`` of shape ``[len(fine_grid) − 1, B, ...]``.
    """

    def __init__(self, fine_grid: Tensor, increments: Tensor):
        if fine_grid.dim() != 1 or increments.shape[0] != fine_grid.shape[0] - 1:
            raise ShapeError(
                f"increments must have shape [len(fine_grid) - 1, B, ...]; got fine_grid "
                f"{describe(fine_grid)} and increments {describe(increments)}"
            )
        self.fine_grid = fine_grid.detach().to(torch.float64).cpu()
        self.cumulative = torch.cat([torch.zeros_like(increments[:1]), increments.cumsum(0)])

    def _position(self, t: Tensor) -> int:
        tv = float(t.reshape(-1)[0])
        k = int(torch.argmin((self.fine_grid - tv).abs()))
        if abs(float(self.fine_grid[k]) - tv) > 1e-9 * max(1.0, abs(tv)):
            raise GridError(f"time {tv} is not a point of the fine Brownian grid")
        return k

    def increment(self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None) -> Tensor:
        w = self.cumulative[self._position(t1)] - self.cumulative[self._position(t0)]
        w = w if index is None else w[index.to(w.device)]
        return w.to(dtype=like.dtype, device=like.device)

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        raise ConfigError("BrownianIncrements only provides increments; use it with an SDE solver")
