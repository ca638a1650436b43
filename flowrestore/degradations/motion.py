"""Motion blur by random camera trajectories, the kernels of BlindDPS and BIRD (docs/math.md §5).

A camera shake during the exposure smears each point along the path the camera traced; the blur
kernel is the time the path spends at each position. :func:`motion_kernel` draws such paths the
way the ``motionblur`` generator used by BlindDPS (Chung et al., CVPR 2023) and BIRD (Chihaoui,
Lemkhenter & Favaro, NeurIPS 2024) does, with one ``intensity ∈ [0, 1]`` controlling the path's
length and how much it turns:

1. on a canvas twice the kernel size (diagonal ``L``) a path length ``0.75 L (U(0, 1) + U(0, i²))``
   is filled with steps ``Beta(1, 30) (max(1 − i, 0.01) + ε) L`` (the floor keeps ``i`` near 1
   from needing millions of steps);
2. the first heading is ``U(−θ, θ)`` with ``θ ~ U(0, i π)``; each later turn has magnitude
   ``Triangular(0, i θ, θ)`` and flips sign with probability ``Beta(2, 20)``;
3. the path is centred on its exposure centroid (the reference: its vertices' mean, which shifts
   the image when steps differ), rotated by ``U(0, π)``, shrunk to fit the canvas if it leaves it
   (the reference clips it), rasterised with equal exposure per unit length (bilinear splats every
   quarter pixel), averaged 2×2 down to the kernel size and normalised to sum 1.

:class:`MotionBlur` is :class:`~flowrestore.degradations.Blur` with such a kernel
(``MotionBlur.random(...)``), or any kernel on the simplex; as a blind unknown it is
``BlindOperator(MotionBlur, kernel=Param(init, constraint="simplex"))``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from flowrestore.degradations.blind import value_checks_enabled
from flowrestore.degradations.blur import Blur
from flowrestore.errors import ConfigError, describe

__all__ = ["MotionBlur", "motion_kernel"]

_EPS = 1e-6
#: the smallest step of a path, as a fraction ``(1 − i)`` of ``Beta(1, 30) L``: at ``i = 1`` the
#: step ``Beta(1, 30) ε L`` would need ~10⁷ steps to fill the path (a draw that never ends)
_MIN_STEP_FRACTION = 0.01


def _integer(v) -> bool:
    """An integer, numpy integers included (``bool`` is not one)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _path(rng: np.random.Generator, canvas: int, intensity: float) -> np.ndarray:
    """Complex vertices of one camera path on a ``canvas``-sized square (module docstring)."""
    diag = canvas * math.sqrt(2.0)
    length = 0.75 * diag * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    total = 0.0  # sum(steps), kept as it grows: re-summing the list at each step was O(n²)
    while total < length:
        step = rng.beta(1, 30) * (max(1 - intensity, _MIN_STEP_FRACTION) + _EPS) * diag
        if step < length:
            steps.append(step)
            total += step
    max_angle = rng.uniform(0, intensity * math.pi)
    jitter = rng.beta(2, 20)
    angles = [rng.uniform(-max_angle, max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + _EPS)
        sign = np.sign(angles[-1]) or 1.0
        angles.append(-sign * angle if rng.uniform() < jitter else sign * angle)
    path = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    path = np.concatenate([[0j], path])
    seg = np.abs(np.diff(path))
    path -= ((path[:-1] + path[1:]) / 2 * seg).sum() / max(seg.sum(), _EPS)  # exposure centroid
    path *= np.exp(1j * rng.uniform(0, math.pi))
    reach = max(np.abs(path.real).max(), np.abs(path.imag).max())
    half = (canvas - 2) / 2
    if reach > half:  # keep the whole path on the canvas (the reference generator clips it)
        path *= half / reach
    return path + (canvas - 1) / 2 * (1 + 1j)


def _rasterise(path: np.ndarray, canvas: int) -> np.ndarray:
    """Equal exposure per unit length along the polyline, splatted bilinearly."""
    img = np.zeros((canvas, canvas))
    for a, b in zip(path[:-1], path[1:], strict=True):
        n = max(2, int(math.ceil(abs(b - a) * 4)))
        pts = a + (b - a) * (np.arange(n) + 0.5) / n
        w = abs(b - a) / n
        x, y = pts.real, pts.imag
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0
        for dx, dy, wt in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < canvas) & (yi >= 0) & (yi < canvas)
            np.add.at(img, (yi[ok], xi[ok]), w * wt[ok])
    return img


def motion_kernel(
    size: int = 15,
    intensity: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random camera-shake kernels ``[size, size]`` (or ``[batch, size, size]``), each summing to 1.

    ``size`` odd ≥ 3; ``intensity`` in ``[0, 1]`` (longer, more curved paths as it grows);
    ``generator`` makes the draw reproducible.
    """
    if not _integer(size) or size < 3 or size % 2 == 0:
        raise ConfigError(f"size must be an odd int >= 3, got {describe(size)}")
    if isinstance(intensity, bool) or not isinstance(intensity, numbers.Real):
        raise ConfigError(f"intensity must be a number in [0, 1], got {describe(intensity)}")
    if not 0 <= intensity <= 1:
        raise ConfigError(f"intensity must be a number in [0, 1], got {describe(intensity)}")
    if batch is not None and (not _integer(batch) or batch < 1):
        raise ConfigError(f"batch must be a positive int or None, got {describe(batch)}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        # an integer dtype would round every weight (each < 1) to 0
        raise ConfigError(f"dtype must be a floating-point torch.dtype, got {describe(dtype)}")
    size = int(size)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    kernels = []
    for _ in range(1 if batch is None else int(batch)):
        # drawn on the generator's device (a CUDA generator cannot drive a CPU draw)
        device = "cpu" if generator is None else generator.device
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
        rng = np.random.default_rng(seed)
        img = _rasterise(_path(rng, 2 * size, float(intensity)), 2 * size)
        k = img.reshape(size, 2, size, 2).sum(axis=(1, 3))
        kernels.append(torch.from_numpy(k / k.sum()))
    out = torch.stack(kernels).to(dtype)
    return out[0] if batch is None else out


def _check_simplex(kernel: torch.Tensor) -> None:
    """Refuse (:class:`ConfigError`) a kernel ``[k, k]`` / ``[B, k, k]`` with a negative entry or
    a sum (per kernel) further from 1 than the round-off of its dtype."""
    k = kernel.detach().to(torch.float64)
    eps = torch.finfo(kernel.dtype).eps if kernel.is_floating_point() else 0.0
    tol = max(1e-4, 8 * eps)
    sums = k.sum(dim=(-2, -1))
    if bool((k < 0).any()) or bool(((sums - 1).abs() > tol).any()):
        raise ConfigError(
            f"a MotionBlur kernel must lie on the simplex (entries >= 0, each kernel summing to "
            f"1), got sums {describe(sums)} and smallest entry {float(k.min()):.3g}: normalise it "
            f"(kernel / kernel.sum()), or use Blur for an arbitrary kernel; got {describe(kernel)}"
        )


class MotionBlur(Blur):
    """Blur by a camera-shake kernel ``[k, k]`` (or per-sample ``[B, k, k]``) on the simplex.

    ``MotionBlur(kernel)`` uses a given kernel (e.g. a blind :class:`Param` with
    ``constraint="simplex"``); :meth:`random` draws one per image with :func:`motion_kernel`.
    The adjoint is exact (:class:`~flowrestore.degradations.Blur`). A kernel off the simplex (a
    negative entry, or a sum other than 1 beyond round-off) is refused; use :class:`Blur` for an
    arbitrary kernel.
    """

    def __init__(self, kernel: torch.Tensor, *, padding: str = "reflect"):
        super().__init__(kernel, padding=padding)
        if value_checks_enabled():  # a host read, skipped where BIRD's simplex Param holds it
            _check_simplex(self.kernel)

    @classmethod
    def random(
        cls,
        size: int = 15,
        intensity: float = 0.5,
        *,
        generator: torch.Generator | None = None,
        batch: int | None = None,
        padding: str = "reflect",
        dtype: torch.dtype = torch.float32,
    ) -> MotionBlur:
        """A motion blur with kernels from :func:`motion_kernel` (one per image with ``batch``)."""
        kernel = motion_kernel(size, intensity, generator=generator, batch=batch, dtype=dtype)
        return cls(kernel, padding=padding)

    def __repr__(self) -> str:
        return f"MotionBlur(kernel={describe(self.kernel)}, padding={self.padding!r})"
