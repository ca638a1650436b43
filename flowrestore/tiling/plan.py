"""How an image is cut into tiles and how the tiles are blended back (:mod:`flowrestore.tiling`).

:func:`axis_spans` lays overlapping spans on one axis (origins on the network's grid, equal sizes,
exact coverage); :func:`axis_weights` gives each span a window — ``sin²`` ramps over the middle half
of each overlap — normalised so that the windows sum to exactly 1; :func:`plan_tiles` chooses tile
side, overlap and batch from the network (:mod:`.probe`) and a memory budget.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.tiling.probe import (
    activation_bytes_per_pixel,
    ceil_to,
    degradation_multiple,
    floor_to,
    model_device,
    network_multiple,
    receptive_radius,
)

__all__ = ["MAX_TILE", "TilePlan", "plan_tiles", "axis_spans", "axis_weights", "default_budget"]

#: Largest default tile side: on CPU larger tiles run slower per pixel (cache), on CUDA faster.
MAX_TILE = {"cpu": 512, "cuda": 1024}


def _positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as a Python int, or a :class:`ConfigError` naming ``name`` unless it is an
    integer ``>= minimum`` (numpy integers welcome, as :func:`flowrestore.solve` takes them; a
    ``bool`` is not a size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {describe(value)}")
    return int(value)


def axis_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Tiles ``[(start, stop), ...]`` covering ``range(length)`` with at least ``overlap`` shared.

    Starts are multiples of ``multiple``; no span is longer than ``tile``; all spans but the last
    have one size (chosen so the tiles spread evenly) and the last, which ends at ``length``, is
    at most that size. One tile if ``length <= tile``.
    """
    length = _positive_int("length", length)
    multiple = _positive_int("multiple", multiple)
    overlap = _positive_int("overlap", overlap, 0)
    tile = _positive_int("tile", tile)
    if tile >= length:
        return [(0, length)]
    if tile < 2 * overlap + multiple:
        raise ConfigError(
            f"tile must be >= 2 * overlap + {multiple} (overlap={overlap}), got {describe(tile)}"
        )
    if floor_to(tile, multiple) < overlap + multiple:
        # starts a multiple apart on tiles of the rounded-down side cannot share `overlap`
        raise ConfigError(
            f"tile rounded down to a multiple of {multiple} ({floor_to(tile, multiple)}) must be "
            f">= overlap + {multiple} (overlap={overlap}), got tile={describe(tile)}"
        )
    tile = floor_to(tile, multiple)
    n = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, ceil_to((length + (n - 1) * overlap) / n, multiple))
    while True:
        # the last start rounds up, so the last span is never longer than the others; the loop
        # ends: at size = tile and n large enough every gap is at most tile - overlap, rounded
        last = ceil_to(length - size, multiple)
        starts = [floor_to(i * last / (n - 1), multiple) for i in range(n)]
        spans = [(s, s + size) for s in starts[:-1]] + [(starts[-1], length)]
        # a start rounded down onto its successor's (a coarse multiple, e.g. 32 with a tile of
        # 64 or 128 on an axis just over one tile) repeats a tile the next one contains: drop it
        spans = [
            a for a, b in zip(spans, [*spans[1:], None], strict=True) if b is None or b[0] > a[0]
        ]
        if all(a[1] - b[0] >= overlap for a, b in zip(spans, spans[1:], strict=False)):
            return spans
        if size + multiple <= tile:
            size += multiple
        else:
            n, size = n + 1, min(tile, ceil_to((length + n * overlap) / (n + 1), multiple))


def axis_weights(spans: list[tuple[int, int]], length: int) -> list[Tensor]:
    """1-D blending weights (float64), one per span, that sum to 1 at every position.

    In the overlap of two neighbouring spans the incoming span's weight is 0 over the first
    quarter, ``sin²`` over the middle half and 1 over the last quarter; the outgoing span's
    weight is the complement. Weights are normalised by their sum, so rounding cannot break the
    partition of unity, also where three spans meet.
    """
    raw = []
    for i, (a, b) in enumerate(spans):
        w = torch.ones(b - a, dtype=torch.float64)
        pos = torch.arange(a, b, dtype=torch.float64) + 0.5
        if i > 0 and spans[i - 1][1] > a:  # rising edge over [a, end of previous span)
            w = w * _ramp((pos - a) / (spans[i - 1][1] - a))
        if i + 1 < len(spans) and spans[i + 1][0] < b:  # falling edge over [next start, b)
            nxt = spans[i + 1][0]
            w = w * (1 - _ramp((pos - nxt) / (b - nxt)))
        raw.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for (a, b), w in zip(spans, raw, strict=True):
        total[a:b] += w
    if bool((total <= 0).any()):
        raise ShapeError(f"spans {spans} leave positions of range({length}) without weight")
    return [w / total[a:b] for (a, b), w in zip(spans, raw, strict=True)]


def _ramp(u: Tensor) -> Tensor:
    """0 on u <= 1/4, sin² rising over (1/4, 3/4), 1 on u >= 3/4."""
    v = ((u - 0.25) * 2).clamp(0, 1)
    return torch.sin(v * (math.pi / 2)) ** 2


@dataclass(frozen=True)
class TilePlan:
    """How an image of ``height`` × ``width`` is cut: spans per axis, tiles per batch."""

    height: int
    width: int
    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]
    overlap: int
    batch: int

    def __post_init__(self):
        """A plan built by hand is checked as :func:`plan_tiles` builds one: positive sizes and
        batch, and per axis spans ``(start, stop)`` inside it, in order, covering it, no gaps."""
        for field, minimum in (("height", 1), ("width", 1), ("overlap", 0), ("batch", 1)):
            # stored as Python ints (a numpy integer in a repr, a cache key or a config)
            object.__setattr__(self, field, _positive_int(field, getattr(self, field), minimum))
        for name, spans, length in (
            ("rows", self.rows, self.height),
            ("cols", self.cols, self.width),
        ):
            ok = isinstance(spans, tuple) and len(spans) > 0
            ok = ok and all(
                isinstance(s, tuple)
                and len(s) == 2
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in s)
                and 0 <= s[0] < s[1] <= length
                for s in spans
            )
            ok = ok and spans[0][0] == 0 and spans[-1][1] == length
            ok = ok and all(a[0] < b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False))
            if not ok:
                raise ConfigError(
                    f"TilePlan: {name} must be a tuple of (start, stop) int pairs covering "
                    f"range({length}) in order, without gaps, got {describe(spans)}"
                )
            object.__setattr__(self, name, tuple((int(a), int(b)) for a, b in spans))

    @property
    def tiles(self) -> list[tuple[int, int, int, int]]:
        """``(top, bottom, left, right)`` of every tile, row by row."""
        return [(t, b, left, r) for t, b in self.rows for left, r in self.cols]

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.rows) * len(self.cols)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """The largest tile ``(height, width)``."""
        return (max(b - t for t, b in self.rows), max(r - c for c, r in self.cols))

    @property
    def processed_pixels(self) -> int:
        """Pixels the predictor sees per evaluation, overlaps counted once per tile."""
        return sum(b - t for t, b in self.rows) * sum(r - c for c, r in self.cols)

    def weights(self) -> tuple[list[Tensor], list[Tensor]]:
        """Per-row-span and per-column-span 1-D weights; a tile's window is their outer product."""
        return axis_weights(list(self.rows), self.height), axis_weights(list(self.cols), self.width)


def default_budget(device) -> int:
    """Default activation-memory budget in bytes: 512 MiB on CPU, half the free memory on CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 2)
    return 512 * 2**20


def plan_tiles(
    height: int,
    width: int,
    *,
    model=None,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int | None = None,
    memory_budget: int | None = None,
    multiple: int | None = None,
    device=None,
) -> TilePlan:
    """Cut a ``height`` × ``width`` image into tiles for ``model`` (see the module docstring).

    ``model`` is a flow (its network is measured through it) or a predictor ``model(x, t)``.
    ``tile`` (side, px), ``overlap`` (px) and ``batch`` (tiles per solve) default to values derived
    from ``model`` and ``memory_budget`` (bytes of activations; :func:`default_budget`): the
    default side is the largest multiple of ``multiple`` whose one tile fits the budget (at most
    :data:`MAX_TILE` for the device), but never below ``2 * overlap + 4 * multiple`` — a budget
    smaller than that one tile still gets it, one tile per batch. ``tile=0``
    means one tile: the whole image, as is a ``tile`` at least as large as both sides (then
    nothing is measured: no ``model`` or ``overlap`` is needed). ``multiple`` is the alignment of
    tile origins (default: the least common multiple of :func:`network_multiple` and the block
    size of the flow's degradation, :func:`~flowrestore.tiling.probe.degradation_multiple`).
    """
    height = _positive_int("height", height)
    width = _positive_int("width", width)
    if tile is not None:
        tile = _positive_int("tile", tile, 0)  # 0: one tile (a bool is not a size)
    if overlap is not None:
        overlap = _positive_int("overlap", overlap, 0)
    if tile is not None and tile >= max(height, width) and overlap is None:
        overlap = 0  # one tile: no overlap to measure
    if device is None:
        device = model_device(model) if model is not None else torch.device("cpu")
    device = torch.device(device)
    if multiple is None:  # the network's grid and a degradation's blocks
        multiple = (
            math.lcm(network_multiple(model), degradation_multiple(model))
            if model is not None
            else 1
        )
    multiple = _positive_int("multiple", multiple)
    if memory_budget is None:
        memory_budget = default_budget(device)
    memory_budget = _positive_int("memory_budget", memory_budget)
    bpp = activation_bytes_per_pixel(model)
    fits = floor_to(math.sqrt(memory_budget / bpp), multiple)
    cap = min(MAX_TILE.get(device.type, MAX_TILE["cpu"]), fits)
    if tile == 0 or (tile is None and max(height, width) <= cap):  # one tile: the whole image
        tile, overlap = max(height, width), 0
    if overlap is None:
        if model is None:
            raise ConfigError("plan_tiles: pass model= or overlap=")
        overlap = ceil_to(receptive_radius(model, multiple=multiple, device=device), multiple)
    overlap = _positive_int("overlap", overlap, 0)
    if tile is None:
        tile = max(cap, 2 * overlap + 4 * multiple)
    tile = _positive_int("tile", tile)
    rows = axis_spans(height, tile, overlap, multiple)
    cols = axis_spans(width, tile, overlap, multiple)
    if batch is None:
        th = max(b - t for t, b in rows)
        tw = max(r - c for c, r in cols)
        batch = max(1, min(len(rows) * len(cols), memory_budget // (th * tw * bpp)))
        if device.type == "cpu":
            batch = min(batch, 4)
    batch = _positive_int("batch", batch)
    return TilePlan(height, width, tuple(rows), tuple(cols), overlap, batch)
