"""The line printed before a long job: expected time and peak memory.

Work is pixels × evaluations; above :data:`ESTIMATE_ABOVE` (about 10 s on one CPU core) the run
measures the model's seconds per megapixel and evaluation on its largest tile and prints the
total, with a peak-memory estimate from the tiles' activation memory
(:func:`flowrestore.tiling.activation_bytes_per_pixel`) and the images held at once.
"""

from __future__ import annotations

import os
import resource
import sys

__all__ = ["ESTIMATE_ABOVE", "estimate", "duration"]

#: Work (pixels x evaluations) above which an estimate is printed: about 10 s on one CPU core.
ESTIMATE_ABOVE = 4e6


def _rss_bytes() -> int:
    """The process's resident set now (Linux), else its peak so far (``ru_maxrss``: bytes on
    macOS, KiB elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        unit = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit


def duration(seconds: float) -> str:
    """``seconds`` in words: ``42 s``, ``7 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(jobs, settings, log, *, groups=None) -> None:
    """Log the expected time and peak memory of ``jobs`` when the work is above the threshold
    (``groups``: the batches the jobs run in, :func:`~.planning.batches`; default one by one)."""
    from flowrestore.tiling import (
        activation_bytes_per_pixel,
        count_evaluations,
        seconds_per_megapixel,
    )

    s = settings
    nfe = count_evaluations(s.flow, s.solver, s.steps, output=s.output)
    work = sum(j.plan.processed_pixels for j in jobs) * nfe
    if work < ESTIMATE_ABOVE:
        return
    biggest = max(jobs, key=lambda j: j.plan.tile_shape[0] * j.plan.tile_shape[1])
    rate = seconds_per_megapixel(s.flow, biggest.plan.tile_shape)
    seconds = work / 1e6 * rate
    th, tw = biggest.plan.tile_shape
    bpp = activation_bytes_per_pixel(s.model)
    groups = [[j] for j in jobs] if groups is None else groups
    held = max(sum(j.size[0] * j.size[1] for j in g) for g in groups)  # images of one batch
    image_bytes = held * (2 * 12 + 6 + 6)  # y, sum, decoded, quantised
    at_once = max(  # pixels on the device at once: a batch of tiles or of whole images
        sum(j.plan.tile_shape[0] * j.plan.tile_shape[1] * j.plan.batch for j in g) for g in groups
    )
    peak = _rss_bytes() + image_bytes + at_once * (bpp + 8 * 12)
    mpx = sum(j.size[0] * j.size[1] for j in jobs) / 1e6
    tiles = sum(j.plan.count for j in jobs)
    log(
        f"estimate: {len(jobs)} image(s), {mpx:.1f} Mpx out, {tiles} tile(s) up to {th}x{tw}, "
        f"{nfe} evaluations each: about {duration(seconds)} on {s.device} "
        f"({rate:.2f} s per Mpx and evaluation, measured now); peak memory about "
        f"{peak / 2**20:.0f} MB"
    )
