"""Tiled restoration: restore an image of any size in bounded memory.

The image is cut into overlapping tiles; each tile is restored by its own solve (the whole
trajectory, ``steps`` steps) and the tiles are blended back with a smooth window whose weights sum
to exactly 1 at every pixel. Only one batch of tiles is on the device at a time, so peak memory is
set by the tile size and batch, not by the image::

    import flowrestore as fr
    from flowrestore.pretrained import flow_for
    from flowrestore.tiling import restore_tiled

    F = fr.pretrained("indi-deblur")
    x = restore_tiled(flow_for(F), fr.Heun(), y, steps=10)     # y: [3, H, W], any H and W

How the tiles are chosen (:func:`plan_tiles`):

* tile origins are multiples of the model's down-sampling factor (4 for the shipped U-Net), so a
  tile sees the same pixel grid as the whole image and a pixel far from the tile's edges gets the
  same value as in a whole-image run;
* the overlap is the model's receptive-field radius (:func:`receptive_radius`, measured from the
  gradient of one output pixel; for a Dirac flow, of ``Φ + A_1(Φ)``, so the blur's reach is
  included), rounded up to that factor: 48 px for the shipped InDI predictors,
  52 px for ``dirac-deblur``; origins also align to a super-resolution family's block size;
* the tile side and the number of tiles per batch come from a memory budget and an estimate of the
  predictor's activation memory per pixel (:func:`activation_bytes_per_pixel`); tiles are then
  shrunk so that they cover each axis evenly (no nearly-empty last tile).

Blending window (:func:`axis_weights`): in each overlap the incoming tile's weight is 0 over the
first quarter, rises as ``sin²`` over the middle half and is 1 over the last quarter; the outgoing
tile's weight is the complement. Pixels within a quarter-overlap of a tile edge therefore never
contribute. What this guarantees, for one evaluation of a predictor of receptive-field radius
``r`` (one Euler step): the tiled result equals the whole-image result up to float rounding at
every pixel that only one tile covers (its receptive field lies inside that tile), and everywhere
when the overlap is at least ``4 r - 2`` (every pixel that contributes is then at least ``r``
from its tile's edges). With the default overlap (``r``, rounded up) a pixel inside an overlap
is exact only as far as the predictor ignores inputs between a quarter overlap and ``r`` away —
true of no plain convolution, nearly true of the shipped U-Net, whose dependence fades towards the
edge of its receptive field (one Euler step: 1e-5 where a tile's weight is 1). A solve of several
steps lets edge effects travel further, and the difference is then a small, measured tolerance
(README, "Restore photos with the shipped predictors"; tests/test_tiling.py).
Stochastic solvers give each tile its own noise seed (:func:`tile_seed`: the first tile ``seed``
itself, every other one a hash of ``seed`` and the tile's index, so no two tiles of one run or of
runs with different seeds share noise), so their tiled result is a different sample, not the same
one.
"""

from __future__ import annotations

import hashlib
import itertools
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from flowrestore.degradations.families import InpaintingFamily
from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.tiling.plan import (
    MAX_TILE,
    TilePlan,
    _positive_int,
    axis_spans,
    axis_weights,
    default_budget,
    plan_tiles,
)
from flowrestore.tiling.probe import (
    _network,
    _step_family,
    activation_bytes_per_pixel,
    declared_channels,
    degradation_multiple,
    model_device,
    network_channels,
    network_multiple,
    receptive_radius,
    seconds_per_megapixel,
)

__all__ = [
    "MAX_TILE",
    "TilePlan",
    "plan_tiles",
    "axis_spans",
    "axis_weights",
    "receptive_radius",
    "network_multiple",
    "degradation_multiple",
    "network_channels",
    "activation_bytes_per_pixel",
    "default_budget",
    "restore_tiled",
    "count_evaluations",
    "seconds_per_megapixel",
    "tile_seed",
]


def restore_tiled(
    flow,
    solver,
    y: Tensor,
    *,
    steps: int,
    plan: TilePlan | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int | None = None,
    memory_budget: int | None = None,
    model=None,
    device=None,
    seed: int = 0,
    output: str = "last",
    on_step: Callable[[int], None] | None = None,
    **solve_kwargs,
) -> Tensor:
    """Restore one image ``y`` (``[C, H, W]`` or ``[1, C, H, W]``) tile by tile; same shape back.

    ``flow``/``solver``/``steps``/``output`` and ``solve_kwargs`` go to :func:`flowrestore.solve`
    for each batch of tiles. The tiling is ``plan``, else :func:`plan_tiles` with ``tile``,
    ``overlap``, ``batch``, ``memory_budget`` and ``model`` (default: the flow itself, whose
    network is measured through its clean estimate, a Dirac flow's with its blur, ``Φ + A_1(Φ)``);
    ``plan`` and those four are exclusive.
    ``y`` may stay on the CPU while tiles run on ``device`` (default: the model's device); the
    result is on ``y``'s device, float32. Stochastic solvers get one seed per tile
    (:func:`tile_seed` of ``seed``, below 2**63, and the tile index); ``seeds=``, ``noise=`` and
    ``generator=`` are refused (they would be shared by the batches of tiles), as is
    ``on_failure='return'`` (a failed tile would be blended in).
    A non-finite ``y`` is refused before any tile runs (unless ``check_finite=False``), as is a
    Dirac flow whose family is position-dependent (an ``InpaintingFamily``: its hole is centred
    on the image) on more than one tile. ``on_step(k)`` is called after every solver step with
    the number ``k`` of tiles that advanced (for progress bars: the total is
    ``plan.count * steps``); with
    ``compile=`` (tiles share one shape: compiled once) it is called once per batch of tiles.
    """
    from flowrestore.integrate import solve

    single = y.ndim == 3
    if single:
        y = y.unsqueeze(0)
    if y.ndim != 4 or y.shape[0] != 1:
        raise ShapeError(f"restore_tiled: y must be [C, H, W] or [1, C, H, W], got {describe(y)}")
    channels = declared_channels(flow)
    if channels is not None and y.shape[1] != channels:
        raise ShapeError(
            f"restore_tiled: the model takes {channels}-channel images, y must be "
            f"[{channels}, H, W] or [1, {channels}, H, W], got {describe(y)}"
        )
    steps = _positive_int("steps", steps)
    _check_tiled_arguments(plan, seed, on_step, solve_kwargs, tile, overlap, batch, memory_budget)
    if solve_kwargs.get("check_finite", True) and not bool(torch.isfinite(y).all()):
        # refused before any tile runs (a solve would refuse it only at the tile that holds it)
        raise ShapeError(f"restore_tiled: y has non-finite values, got {describe(y)}")
    if model is None:
        model = flow
    if device is None:
        net = _network(model)
        device = model_device(model) if net is not None else y.device
    h, w = y.shape[-2:]
    if plan is None:
        plan = plan_tiles(
            h,
            w,
            model=model,
            tile=tile,
            overlap=overlap,
            batch=batch,
            memory_budget=memory_budget,
            device=device,
        )
    elif (plan.height, plan.width) != (h, w):
        raise ShapeError(f"plan is for {plan.height}x{plan.width}, y is {h}x{w}")
    if plan.count > 1 and isinstance(_step_family(flow), InpaintingFamily):
        # its hole is centred on the image it is given: each tile would get a hole of its own
        raise ConfigError(
            f"restore_tiled: {type(flow).__name__}'s InpaintingFamily places its hole relative "
            f"to the whole image; a tile would get its own hole. Pass tile=0 (one tile), got a "
            f"plan of {plan.count} tiles"
        )
    seed = int(seed)
    row_w, col_w = plan.weights()
    out = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
    for group in _tiles_by_shape(plan):
        for start in range(0, len(group), plan.batch):
            chunk = group[start : start + plan.batch]
            x = torch.cat([y[..., t:b, c:r] for _, _, _, t, b, c, r in chunk]).to(device)
            x = x.to(torch.float32) if not x.is_floating_point() else x
            x = x.contiguous(memory_format=torch.channels_last)  # 20-30 % faster convs on CPU
            kw = _tile_solve_kwargs(solve_kwargs, [tile_seed(seed, k) for k, *_ in chunk])
            progress = on_step is not None and not kw.get("compile")
            if progress:  # compiled steps take no per-step callback: counted after the solve
                kw["callback"] = _step_counter(on_step, len(chunk))
            res = solve(flow, solver, x, steps=steps, output=output, **kw).x.to(out.device)
            if on_step is not None and not progress:
                on_step(len(chunk) * steps)
            for (_, i, j, t, b, c, r), tile_out in zip(chunk, res, strict=True):
                win = (row_w[i][:, None] * col_w[j][None, :]).to(out.device, torch.float32)
                out[0, :, t:b, c:r].add_(tile_out.float() * win)
            del x, res
    return out[0] if single else out


#: Tile seeds (``seed=`` and the hashed ones) lie in ``[0, 2**63)``.
_TILE_SEED_BOUND = 2**63


def tile_seed(seed: int, k: int) -> int:
    """The noise seed of tile ``k`` (row by row, from 0) of a tiled solve with ``seed``.

    Tile 0 draws from ``seed`` itself, so a one-tile restore is the plain solve with
    ``seeds=[seed]``; tile ``k >= 1`` from the first 63 bits of SHA-256 of ``seed`` and ``k``.
    Tiles of one run, and tiles of runs with different seeds, thus get unrelated seeds (an
    arithmetic progression ``seed + c·k`` would give run ``seed + c``'s tile ``k`` the noise of
    run ``seed``'s tile ``k + 1``), and a tile's seed depends on neither the batch it runs in nor
    the tiles around it.
    """
    for name, value, bound in (("seed", seed, _TILE_SEED_BOUND), ("k", k, None)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < 0
            or (bound is not None and value >= bound)
        ):
            raise ConfigError(
                f"tile_seed: {name} must be an int >= 0{'' if bound is None else ' below 2**63'}, "
                f"got {describe(value)}"
            )
    if k == 0:
        return int(seed)
    digest = hashlib.sha256(f"flowrestore-tile:{int(seed)}:{int(k)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _check_tiled_arguments(plan, seed, on_step, solve_kwargs, tile, overlap, batch, budget):
    """Refuse, before any work, what :func:`restore_tiled` would otherwise ignore or misuse."""
    given = [
        name
        for name, value in (
            ("tile", tile),
            ("overlap", overlap),
            ("batch", batch),
            ("memory_budget", budget),
        )
        if value is not None
    ]
    if plan is not None and given:
        raise ConfigError(
            f"restore_tiled: pass plan= or {'/'.join(given)}=, not both (the plan fixes them)"
        )
    if plan is not None and not isinstance(plan, TilePlan):
        raise ConfigError(f"restore_tiled: plan must be a TilePlan, got {describe(plan)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"restore_tiled: seed must be an int >= 0, got {describe(seed)}")
    if seed >= _TILE_SEED_BOUND:
        raise ConfigError(
            "restore_tiled: seed must be below 2**63 (tile 0 draws from seed itself, the others "
            "from hashed seeds below 2**63: every tile's seed is a signed 64-bit int), got "
            f"{describe(seed)}"
        )
    per_batch = sorted({"seeds", "noise", "generator"} & set(solve_kwargs))
    if per_batch:
        # one seed per tile from seed=: a tile's noise does not depend on the other tiles, on
        # the batch it runs in or on the order of the tiles
        raise ConfigError(
            f"restore_tiled: {'/'.join(per_batch)}= would be shared by the batches of tiles; "
            "pass seed= (each tile gets its own seed from it)"
        )
    if solve_kwargs.get("on_failure", "raise") != "raise":
        # the result is one blended image: a failed tile's partial state would be blended in
        raise ConfigError(
            "restore_tiled: on_failure must be 'raise' (a failed tile cannot be returned apart "
            f"from the blended image), got {describe(solve_kwargs['on_failure'])}"
        )
    if on_step is not None and solve_kwargs.get("callback") is not None:
        raise ConfigError("restore_tiled: pass on_step= or callback=, not both")


def _tiles_by_shape(plan: TilePlan) -> list[list[tuple]]:
    """The tiles ``(k, i, j, top, bottom, left, right)`` grouped by shape (one shape: one batch)."""
    by_shape: dict[tuple[int, int], list] = {}
    for k, (i, j) in enumerate(itertools.product(range(len(plan.rows)), range(len(plan.cols)))):
        (t, b), (c, r) = plan.rows[i], plan.cols[j]
        by_shape.setdefault((b - t, r - c), []).append((k, i, j, t, b, c, r))
    return list(by_shape.values())


def _tile_solve_kwargs(solve_kwargs: dict, seeds: list[int]) -> dict:
    """The solve's arguments for one batch of tiles: one seed per tile (``restore_tiled`` refuses
    ``generator=``, ``seeds=`` and ``noise=``)."""
    return {**solve_kwargs, "seeds": seeds}


def _step_counter(on_step: Callable[[int], None], n: int):
    def callback(step, t, state):
        on_step(n)

    return callback


def count_evaluations(
    flow, solver, steps: int, *, channels: int | None = None, **solve_kwargs
) -> int:
    """Predictor evaluations per sample of a solve with these settings (a 16×16 trial solve with
    ``channels`` channels, default: the network's, :func:`network_channels`)."""
    from flowrestore.integrate import solve

    if channels is None:
        channels = network_channels(flow)
    device = model_device(flow) if flow.network is not None else torch.device("cpu")
    x = torch.rand(1, channels, 16, 16, generator=torch.Generator().manual_seed(0)).to(device)
    return int(solve(flow, solver, x, steps=steps, seeds=[0], **solve_kwargs).stats.nfe.max())
