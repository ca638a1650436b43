"""Seeded Gaussian noise for stochastic solvers.

A stochastic step asks its :class:`NoiseSource` for standard normal draws shaped like the state.
``GeneratorNoise`` draws the whole batch from one ``torch.Generator`` (fast; a sample's noise then
depends on its position in the batch). ``PerSampleNoise`` gives each sample its own generator
seeded by its own seed, so sample ``i`` restores identically whatever batch it is in.
``BrownianIncrements`` replays a fixed fine path of Brownian increments and sums them over coarser
steps — the shared-path construction used to measure strong order (docs/math.md §6).

Higher strong-order methods for additive noise (SRA1) also need the space-time integral
``ΔZ = ∫_{t0}^{t1} (W_s − W_{t0}) ds`` (Rößler's ``I_(1,0)``);
:meth:`NoiseSource.increment_and_area` returns ``(ΔW, ΔZ)`` jointly. Times run in the grid's
direction: on a decreasing grid (a reverse-time solve from ``t = 1``) ``W`` is a Brownian motion
in the elapsed time ``|t − t_start|`` and ``ΔZ`` is integrated over ``|t1 − t0|``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from flowrestore.errors import ArgumentTypeError, ConfigError, GridError, ShapeError, describe
from flowrestore.grids import check_grid

__all__ = [
    "BrownianIncrements",
    "GeneratorNoise",
    "NoiseSource",
    "PerSampleNoise",
    "SEED_RANGE",
    "TapeNoise",
    "host_rows",
    "rows_index",
]


def rows_index(rows: Sequence[int], device) -> Tensor:
    """A long tensor of batch rows on ``device`` that remembers its values on the host.

    The loop builds the rows it steps on the host; :func:`host_rows` then reads them back without
    copying the device tensor to the host (a synchronisation on a GPU).
    """
    index = torch.tensor(list(rows), dtype=torch.long)
    if torch.device(device).type != "cpu":
        index = index.pin_memory().to(device, non_blocking=True)
    index._host_rows = tuple(rows)  # noqa: SLF001 - a plain attribute on this tensor object
    return index


def _to_device(z: Tensor, device: torch.device) -> Tensor:
    """Host draws onto the state's device: a pinned, non-blocking copy to a GPU (a plain copy
    would wait for the GPU to finish its queued work)."""
    if z.device == device:
        return z
    if z.device.type == "cpu" and device.type == "cuda":
        return z.pin_memory().to(device, non_blocking=True)
    return z.to(device)


def host_rows(index: Tensor) -> list[int]:
    """The rows in ``index`` as Python ints (free for an index made by :func:`rows_index`)."""
    rows = getattr(index, "_host_rows", None)
    return list(rows) if rows is not None else index.tolist()


class NoiseSource:
    """Produces standard normal tensors (and Brownian increments) for stochastic steps."""

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        """A standard normal tensor shaped like ``like`` (``index``: the batch rows it is for)."""
        raise NotImplementedError

    def check_state(self, x: Tensor) -> None:
        """Refuse, before a solve starts, a start state this source cannot serve (default: any
        state is served)."""

    def increment(
        self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None
    ) -> Tensor:
        """A Brownian increment ``W(t1) − W(t0)`` shaped like ``like`` (default: scaled normal)."""
        return self.normal(like, index) * (t1 - t0).abs().sqrt()

    def increment_and_area(
        self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(ΔW, ΔZ)`` with ``ΔZ = ∫ (W_s − W_{t0}) ds`` over the step (default: two normals).

        With ``h = |t1 − t0|``: ``ΔW = sqrt(h) ξ₁`` and ``ΔZ = (h/2)(ΔW + sqrt(h/3) ξ₂)``, the exact
        joint law (``Var ΔZ = h³/3``, ``Cov(ΔW, ΔZ) = h²/2``).
        """
        h = (t1 - t0).abs()
        dw = self.normal(like, index) * h.sqrt()
        dz = 0.5 * h * (dw + (h / 3).sqrt() * self.normal(like, index))
        return dw, dz


class GeneratorNoise(NoiseSource):
    """Draws the batch from one ``torch.Generator`` (``None``: torch's global RNG)."""

    def __init__(self, generator: torch.Generator | None = None):
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        g = self.generator
        if g is None or g.device == like.device:
            return torch.randn(like.shape, generator=g, dtype=like.dtype, device=like.device)
        z = torch.randn(like.shape, generator=g, dtype=like.dtype, device=g.device)
        return _to_device(z, like.device)


#: the seeds ``torch.Generator.manual_seed`` accepts (a signed or an unsigned 64-bit int)
SEED_RANGE = (-(2**63), 2**64 - 1)


class PerSampleNoise(NoiseSource):
    """One generator per sample, seeded by that sample's seed: batch-composition invariant.

    Args:
        seeds: one integer seed per sample (sequence or 1-D integer tensor).
        device: where the generators live (default CPU; draws are moved to the state's device).

    The generators are created on the first draw, so a deterministic solve with ``seeds=`` never
    builds one (``torch.compile`` cannot trace generator objects).
    """

    def __init__(self, seeds: Sequence[int] | Tensor, *, device: str | torch.device = "cpu"):
        if isinstance(seeds, Tensor):
            values = seeds.tolist() if seeds.dim() == 1 else None
        elif hasattr(seeds, "__len__") and not isinstance(seeds, (str, bytes)):
            values = list(seeds)  # a list, a tuple, a 1-D numpy array, ...
        else:
            values = None
        if (
            not values
            or isinstance(values[0], list)
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in values)
        ):
            raise ConfigError(
                f"seeds must be a non-empty sequence of ints, one per sample, got {describe(seeds)}"
            )
        lo, hi = SEED_RANGE
        for i, s in enumerate(values):
            if not lo <= s <= hi:
                raise ConfigError(
                    "seeds must fit in 64 bits (from -2**63 to 2**64 - 1, what "
                    f"torch.Generator.manual_seed accepts), got seeds[{i}]={describe(s)}"
                )
        self.seeds = [int(s) for s in values]
        try:  # a bad name would otherwise fail at the first draw, inside a solve's steps
            torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(
                f"device must be a torch.device or a device name, got {describe(device)}"
            ) from exc
        self.device = device
        self._generators: list[torch.Generator] | None = None

    def check_state(self, x: Tensor) -> None:
        """One seed per sample: a batch of another size is refused before the solve starts (it
        failed at the first draw, inside the steps)."""
        if x.dim() == 0 or x.shape[0] != len(self.seeds):
            raise ShapeError(
                f"noise: this PerSampleNoise has {len(self.seeds)} seeds, one per sample, but the "
                f"solve's state has shape {tuple(x.shape)}"
            )

    @property
    def generators(self) -> list[torch.Generator]:
        """One ``torch.Generator`` per sample, seeded by its seed (created on first use)."""
        if self._generators is None:
            self._generators = [
                torch.Generator(device=self.device).manual_seed(s) for s in self.seeds
            ]
        return self._generators

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        rows = range(like.shape[0]) if index is None else host_rows(index)
        if index is None and like.shape[0] != len(self.generators):
            raise ShapeError(
                f"PerSampleNoise has {len(self.generators)} seeds but the batch has "
                f"{like.shape[0]} samples"
            )
        draws = [
            torch.randn(
                like.shape[1:],
                generator=self.generators[i],
                dtype=like.dtype,
                device=self.generators[i].device,
            )
            for i in rows
        ]
        return _to_device(torch.stack(draws), like.device)


class BrownianIncrements(NoiseSource):
    """Replays a fixed Brownian path given by increments on a fine grid.

    ``increment(t0, t1)`` sums the fine increments between two fine-grid points, so solves on any
    coarser sub-grid see the same path. Args: ``fine_grid`` (1-D, strictly monotone, shared by
    the batch: every sample is at the same time when it is asked) and ``increments`` of shape
    ``[len(fine_grid) − 1, B, ...]``; optionally ``areas``, the fine space-time integrals ``ΔZ_k``
    (same shape), which :meth:`increment_and_area` sums consistently: over the fine steps ``k``
    between ``a`` and ``b``, ``ΔZ = Σ_k [(W_k − W_a) h_k + ΔZ_k]``, in either direction (a solve
    from 1 to 0 may replay a path drawn on an increasing fine grid).
    :meth:`sample` draws both with their exact joint law. Each call reads its times on the host
    (a synchronisation when they live on a GPU): this is the path of a convergence study.
    """

    def __init__(self, fine_grid: Tensor, increments: Tensor, areas: Tensor | None = None):
        for name, value in (("increments", increments), ("areas", areas)):
            if value is not None and not (isinstance(value, Tensor) and value.is_floating_point()):
                raise ArgumentTypeError(
                    f"{name} must be a floating-point tensor [len(fine_grid) - 1, B, ...], "
                    f"got {describe(value)}"
                )
        # a fine grid that turns back (or repeats a time) is no path in time: its "increments"
        # would be summed over overlapping or empty spans
        fine_grid = check_grid(fine_grid, name="fine_grid")
        if increments.dim() < 2 or increments.shape[0] != fine_grid.shape[0] - 1:
            raise ShapeError(
                f"increments must have shape [len(fine_grid) - 1, B, ...]; got fine_grid "
                f"{describe(fine_grid)} and increments {describe(increments)}"
            )
        if areas is not None and areas.shape != increments.shape:
            raise ShapeError(
                f"areas must have the shape of increments {tuple(increments.shape)}, "
                f"got {describe(areas)}"
            )
        self.fine_grid = fine_grid.detach().to(torch.float64).cpu()
        self.cumulative = torch.cat([torch.zeros_like(increments[:1]), increments.cumsum(0)])
        self.area_cumulative = None
        if areas is not None:
            hk = self.fine_grid.diff().abs().to(increments.dtype)
            hk = hk.reshape(-1, *([1] * (increments.dim() - 1))).to(increments.device)
            terms = self.cumulative[:-1] * hk + areas  # W_k h_k + ΔZ_k
            self.area_cumulative = torch.cat([torch.zeros_like(terms[:1]), terms.cumsum(0)])

    @classmethod
    def sample(
        cls,
        fine_grid: Tensor,
        shape: Sequence[int],
        *,
        areas: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> BrownianIncrements:
        """Draw a path on ``fine_grid`` for states of ``shape`` ``[B, ...]`` (areas by default)."""
        g = fine_grid.detach().to(torch.float64).cpu()
        h = g.diff().abs().reshape(-1, *([1] * len(shape))).to(dtype)
        dw = torch.randn((g.numel() - 1, *shape), generator=generator, dtype=dtype) * h.sqrt()
        dz = None
        if areas:
            xi = torch.randn((g.numel() - 1, *shape), generator=generator, dtype=dtype)
            dz = 0.5 * h * (dw + (h / 3).sqrt() * xi)
        return cls(g, dw, dz)

    def check_state(self, x: Tensor) -> None:
        """The path was drawn for states of one shape ``[B, ...]``: another batch size would
        broadcast one sample's path over every sample (or fail inside the step)."""
        if tuple(self.cumulative.shape[1:]) != tuple(x.shape):
            raise ShapeError(
                f"noise: this BrownianIncrements path was drawn for states of shape "
                f"{tuple(self.cumulative.shape[1:])}, the solve's state has shape "
                f"{tuple(x.shape)}; draw it with BrownianIncrements.sample(grid, x.shape)"
            )

    def _served(self, w: Tensor, like: Tensor) -> Tensor:
        if w.shape != like.shape:
            raise ShapeError(
                f"noise: this BrownianIncrements path gives increments of shape "
                f"{tuple(w.shape)} for a state of shape {tuple(like.shape)}"
            )
        return w.to(dtype=like.dtype, device=like.device)

    def _position(self, t: Tensor) -> int:
        times = t.detach().reshape(-1).tolist()  # one read of the host (as float(t[0]) was)
        tv = times[0]
        if any(v != tv for v in times):  # it replayed sample 0's time for every sample
            raise GridError(
                "noise: a BrownianIncrements path is replayed at one time shared by the batch, "
                f"but the samples are at different times (from {min(times)} to {max(times)})"
            )
        k = int(torch.argmin((self.fine_grid - tv).abs()))
        # a solve's times are in its state's dtype: a float32 state's 0.1 is 0.10000000149
        eps = torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0
        if abs(float(self.fine_grid[k]) - tv) > max(1e-9, 4 * eps) * max(1.0, abs(tv)):
            raise GridError(f"time {tv} is not a point of the fine Brownian grid")
        return k

    def increment(
        self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None
    ) -> Tensor:
        w = self.cumulative[self._position(t1)] - self.cumulative[self._position(t0)]
        w = w if index is None else w[index.to(w.device)]
        return self._served(w, like)

    def increment_and_area(
        self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(ΔW, ΔZ)`` between two fine-grid points, summed from the fine path."""
        if self.area_cumulative is None:
            raise ConfigError(
                "this BrownianIncrements has no space-time areas; build it with "
                "areas= or BrownianIncrements.sample(..., areas=True)"
            )
        a, b = self._position(t0), self._position(t1)
        span = abs(float(self.fine_grid[b]) - float(self.fine_grid[a]))
        w = self.cumulative[b] - self.cumulative[a]
        # ∫ W over the fine steps between a and b (each term W_k h_k + ΔZ_k is one step's
        # integral, h_k > 0) is A_b − A_a walked forwards and A_a − A_b walked backwards (a
        # solve from 1 to 0 on an increasing fine grid), which got A_b − A_a too
        area = self.area_cumulative[b] - self.area_cumulative[a]
        z = (area if b >= a else -area) - self.cumulative[a] * span
        if index is not None:
            w, z = w[index.to(w.device)], z[index.to(z.device)]
        return self._served(w, like), self._served(z, like)

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        raise ConfigError("BrownianIncrements only provides increments; use it with an SDE solver")


#: the draws a step can ask of a :class:`NoiseSource` (``Solver.noise_draws`` names them)
NOISE_DRAWS = ("normal", "increment", "increment_and_area")


class TapeNoise(NoiseSource):
    """Noise drawn before the steps run, handed out in the order the steps ask for it.

    ``torch.compile`` cannot create or use a ``torch.Generator`` inside a compiled region, so a
    compiled stochastic solve (``fr.solve(..., compile=True)``) draws every step's noise from the
    solve's own source first, in the order the eager loop would (:meth:`record`), and the compiled
    steps read this tape: the same numbers as the eager solve, for any source (``generator=``,
    ``seeds=``, ``BrownianIncrements``). A step that asks for a draw it did not declare
    (``Solver.noise_draws``) is refused instead of silently shifting the tape.
    """

    def __init__(self, draws: list[tuple[str, tuple[Tensor, ...]]]):
        self.draws = draws
        self.i = 0
        #: set instead of raising inside a compiled region (an exception cannot leave one);
        #: the caller raises it after the compiled call (:meth:`check`)
        self.mismatch: str | None = None

    @classmethod
    def record(cls, source: NoiseSource, calls, like: Tensor) -> TapeNoise:
        """Draw ``calls`` (``(kind, t0, t1)`` per draw, in order) from ``source`` for states
        like ``like`` (the whole batch)."""
        draws = []
        for kind, t0, t1 in calls:
            if kind == "normal":
                draws.append((kind, (source.normal(like, None),)))
            elif kind == "increment":
                draws.append((kind, (source.increment(t0, t1, like, None),)))
            elif kind == "increment_and_area":
                draws.append((kind, tuple(source.increment_and_area(t0, t1, like, None))))
            else:
                raise ConfigError(f"unknown noise draw {kind!r}; expected one of {NOISE_DRAWS}")
        return cls(draws)

    def _take(self, kind: str, like: Tensor, n: int = 1) -> tuple[Tensor, ...]:
        if self.i >= len(self.draws) or self.draws[self.i][0] != kind:
            got = self.draws[self.i][0] if self.i < len(self.draws) else "nothing left"
            message = (
                f"a step asked for noise draw {self.i + 1} as {kind!r}, but the solver declared "
                f"{got!r}: its noise_draws() does not match what its step draws"
            )
            if not torch.compiler.is_compiling():
                raise ConfigError(message)
            self.mismatch = self.mismatch or message
            return tuple(torch.zeros_like(like) for _ in range(n))
        out = self.draws[self.i][1]
        self.i += 1
        return out

    def check(self) -> None:
        """Raise if the steps asked for other draws than recorded, or fewer."""
        if self.mismatch is not None:
            raise ConfigError(self.mismatch)
        if self.i != len(self.draws):
            raise ConfigError(
                f"the solver's noise_draws() declared {len(self.draws)} draws, its steps took "
                f"{self.i}: the declaration does not match what its step draws"
            )

    def normal(self, like: Tensor, index: Tensor | None = None) -> Tensor:
        return self._take("normal", like)[0]

    def increment(
        self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None
    ) -> Tensor:
        return self._take("increment", like)[0]

    def increment_and_area(
        self, t0: Tensor, t1: Tensor, like: Tensor, index: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        dw, dz = self._take("increment_and_area", like, 2)
        return dw, dz
