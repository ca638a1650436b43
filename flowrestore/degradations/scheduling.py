"""Degradation scheduling: Dirac supplement B, Algorithm 2 (greedy min-max severity selection).

Given images ``x`` and an operator factory ``p ↦ A_p`` (e.g. blur width ↦ Gaussian blur), the
distance between two severities is the data-dependent dissimilarity ``d(p_i, p_j) = mean_x
d(A_{p_i}(x), A_{p_j}(x))``. The paper picks ``N`` interpolating severities so that the largest
distance between consecutive ones is (greedily) minimised: start from the two ends ``{p_min,
p_max}`` and repeatedly split the interval with the largest ``d`` by adding a new severity inside
it; the maximum distance is then non-increasing over iterations. Finally the chosen severities are
placed at equally spaced times ``t_k = k / (N - 1)`` and linearly interpolated, giving the schedule
``t ↦ p`` (the reference code's ``blur_schedule.txt`` has exactly this form: equally spaced ``t``
and the selected widths; that repository ships the schedule, not the scheduler, so the details
below are ours).

What the paper leaves open, and what this implementation does:

- **Candidates.** Severities are picked from a finite candidate set (as in the paper's "select a set
  of degradations from the set of candidates"): by default ``16 (N - 1) + 1`` equally spaced values
  in ``[p_min, p_max]``, or the sequence given as ``candidates``.
- **Where to split.** Inside the chosen interval ``(i, j)`` the new severity ``k`` minimises
  ``max(d(i, k), d(k, j))`` (the min-max objective restricted to that interval). It is found by
  bisection for the crossing of ``d(i, ·)`` (increasing) and ``d(·, j)`` (decreasing), so only
  ``O(log n)`` candidates are degraded per split; for a non-monotone dissimilarity it returns a
  local crossing.
- **Ties** between intervals go to the one with the smaller severity; intervals without interior
  candidates are not split.

``dissimilarity`` is ``"mse"`` (mean squared error per image), ``"psnr"`` (``-PSNR`` in dB with peak
``data_range``; only the ordering of distances matters to the algorithm) or a callable ``d(a, b)``
on two batches returning a scalar or per-image values (averaged), e.g. LPIPS as in the paper.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence

import torch

from flowrestore.errors import ConfigError, ShapeError, describe, finite_number
from flowrestore.schedules import PiecewiseLinear

__all__ = ["schedule_degradation"]


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).reshape(a.shape[0], -1).mean(dim=1)


def _make_dissimilarity(dissimilarity, data_range: float) -> Callable:
    if dissimilarity == "mse":
        return _mse
    if dissimilarity == "psnr":

        def neg_psnr(a, b):
            mse = _mse(a, b).clamp_min(1e-20 * data_range**2)
            return -10 * torch.log10(data_range**2 / mse)

        return neg_psnr
    if callable(dissimilarity) and not isinstance(dissimilarity, str):
        return dissimilarity
    raise ConfigError(
        f"dissimilarity must be 'mse', 'psnr' or a callable d(a, b), got {describe(dissimilarity)}"
    )


def _number(v) -> float:
    """``v`` as a float if it is a real number (numpy scalars and 0-dim real tensors too), else
    ``TypeError``: a bool, a string (``float("1")`` would parse it) or a complex is not one."""
    if isinstance(v, torch.Tensor):
        if v.dim() != 0 or v.dtype == torch.bool or v.is_complex():
            raise TypeError(v)
        return float(v)
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    raise TypeError(v)


def _candidates(params_range, candidates, budget) -> list[float]:
    try:
        if isinstance(params_range, str):
            raise TypeError(params_range)
        p_min, p_max = (_number(v) for v in params_range)
    except (TypeError, ValueError):
        raise ConfigError(
            f"params_range must be a pair (p_min, p_max) of numbers, got {describe(params_range)}"
        ) from None
    if not (math.isfinite(p_min) and math.isfinite(p_max)) or p_min == p_max:
        raise ConfigError(
            f"params_range must be two different finite numbers, got {describe(params_range)}"
        )
    if candidates is None:
        candidates = 16 * (budget - 1) + 1
    if isinstance(candidates, numbers.Integral) and not isinstance(candidates, bool):
        if candidates < budget:
            raise ConfigError(f"candidates must be >= budget={budget}, got {describe(candidates)}")
        return torch.linspace(p_min, p_max, int(candidates), dtype=torch.float64).tolist()
    try:
        if isinstance(candidates, str):
            raise TypeError(candidates)
        c = [_number(v) for v in candidates]
    except (TypeError, ValueError):
        raise ConfigError(
            f"candidates must be an int or a sequence of numbers, got {describe(candidates)}"
        ) from None
    # the ends are the range's within the candidates' precision (a float32 torch.linspace(0.3,
    # ...) starts at 0.30000001): snapped to it
    eps = 2.0**-52
    if isinstance(candidates, torch.Tensor) and candidates.is_floating_point():
        eps = torch.finfo(candidates.dtype).eps
    tol = 4 * eps * max(abs(p_min), abs(p_max))
    if c and abs(c[0] - p_min) <= tol and abs(c[-1] - p_max) <= tol:
        c[0], c[-1] = p_min, p_max
    steps = [b - a for a, b in zip(c, c[1:], strict=False)]
    sign = 1 if p_max > p_min else -1
    if len(c) < budget or c[0] != p_min or c[-1] != p_max or any(s * sign <= 0 for s in steps):
        raise ConfigError(
            f"candidates must have >= budget={budget} values, run strictly monotonically from "
            f"p_min={p_min} to p_max={p_max}, got {describe(candidates)}"
        )
    return c


def schedule_degradation(
    images: torch.Tensor,
    family_of_param: Callable,
    *,
    params_range: tuple[float, float],
    budget: int,
    dissimilarity: str | Callable = "mse",
    candidates: int | Sequence[float] | None = None,
    data_range: float = 1.0,
    return_details: bool = False,
):
    """Greedy min-max degradation schedule (Dirac Algorithm 2) → :class:`PiecewiseLinear` ``t ↦ p``.

    ``family_of_param(p)`` returns an operator (callable on ``images`` [B, C, H, W]) for the
    parameter ``p``; ``budget`` (>= 2) severities are chosen including ``p_min`` (t = 0) and
    ``p_max`` (t = 1). With ``return_details=True`` also returns a dict with the chosen ``params``
    and the history ``max_dissimilarity`` (the largest consecutive distance after each split,
    non-increasing).
    """
    _check_schedule_args(images, family_of_param, budget, data_range)
    budget = int(budget)
    dist_fn = _make_dissimilarity(dissimilarity, float(data_range))
    cands = _candidates(params_range, candidates, budget)
    ladder = _Ladder(images, family_of_param, cands, dist_fn)
    d, split = ladder.d, ladder.split

    with torch.no_grad():
        chosen = [0, len(cands) - 1]
        history = [d(0, len(cands) - 1)]
        while len(chosen) < budget:
            pairs = [(a, b) for a, b in zip(chosen, chosen[1:], strict=False) if b - a > 1]
            if not pairs:  # pragma: no cover - excluded by the candidate count check
                raise ConfigError(f"ran out of candidates before reaching budget={budget}")
            i, j = max(pairs, key=lambda p: (d(*p), -p[0]))
            chosen = sorted([*chosen, split(i, j)])
            history.append(max(d(a, b) for a, b in zip(chosen, chosen[1:], strict=False)))
    params = [cands[k] for k in chosen]
    schedule = PiecewiseLinear(
        torch.linspace(0, 1, budget, dtype=torch.float64), torch.tensor(params, dtype=torch.float64)
    )
    if return_details:
        return schedule, {"params": params, "max_dissimilarity": history}
    return schedule


def _check_schedule_args(images, family_of_param, budget, data_range) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() < 2 or images.shape[0] < 1:
        raise ConfigError(
            f"images must be a non-empty batch tensor [B, ...], got {describe(images)}"
        )
    if not callable(family_of_param):
        raise ConfigError(
            f"family_of_param must be callable p -> operator, got {describe(family_of_param)}"
        )
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 2:
        raise ConfigError(
            f"budget must be an int >= 2 (it counts both ends), got {describe(budget)}"
        )
    finite_number("data_range", data_range)


def _check_takes_images(op, p) -> None:
    """Refuse (:class:`ConfigError`) an operator that cannot be called on the images alone — a
    family ``A(x, t)`` (e.g. a GaussianBlurFamily) returned for ``p`` failed with an untyped
    TypeError about a missing ``t``."""
    try:
        sig = inspect.signature(op)
    except (TypeError, ValueError):  # no signature to read (a builtin): taken on trust
        return
    try:
        sig.bind(None)
    except TypeError:
        raise ConfigError(
            f"family_of_param({p!r}) must return an operator callable on the images alone, "
            f"A(images); got {describe(op)}, which needs more arguments (a family A(x, t) is "
            f"not an operator: return e.g. GaussianBlur(p))"
        ) from None


class _Ladder:
    """The images degraded at each candidate severity and their dissimilarities, each computed
    once, and Algorithm 2's split of an interval."""

    def __init__(self, images, family_of_param, cands, dist_fn):
        self.images, self.family, self.cands, self.dist_fn = images, family_of_param, cands, dist_fn
        self.degraded: dict[int, torch.Tensor] = {}
        self.dists: dict[tuple[int, int], float] = {}
        self.shape: tuple[float, tuple[int, ...]] | None = None  # (p, shape) of the first

    def image(self, k: int) -> torch.Tensor:
        if k not in self.degraded:
            p = self.cands[k]
            op = self.family(p)
            if not callable(op):
                raise ConfigError(
                    f"family_of_param({p!r}) must return an operator (a callable on images), "
                    f"got {describe(op)}"
                )
            _check_takes_images(op, p)
            out = op(self.images)
            b = self.images.shape[0]
            if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != b:
                raise ShapeError(
                    f"family_of_param({p!r})(images) must return a batch of {b} degraded images "
                    f"[{b}, ...], got {describe(out)}"
                )
            if self.shape is None:
                self.shape = (p, tuple(out.shape))
            elif tuple(out.shape) != self.shape[1]:
                raise ShapeError(
                    f"the degraded images must have one shape for the dissimilarity to compare "
                    f"them: p={self.shape[0]!r} gave {self.shape[1]}, p={p!r} gave "
                    f"{tuple(out.shape)}"
                )
            self.degraded[k] = out
        return self.degraded[k]

    def d(self, i: int, j: int) -> float:
        if (i, j) not in self.dists:
            v = self.dist_fn(self.image(i), self.image(j))
            v = float(torch.as_tensor(v).double().mean())
            if not math.isfinite(v):
                raise ConfigError(
                    f"dissimilarity returned a non-finite value {v} between p={self.cands[i]} "
                    f"and p={self.cands[j]}"
                )
            self.dists[(i, j)] = v
        return self.dists[(i, j)]

    def split(self, i: int, j: int) -> int:
        d = self.d
        lo, hi = i + 1, j - 1  # find the first k with d(i, k) >= d(k, j)
        while lo < hi:
            mid = (lo + hi) // 2
            if d(i, mid) >= d(mid, j):
                hi = mid
            else:
                lo = mid + 1
        best = lo
        if lo - 1 > i and max(d(i, lo - 1), d(lo - 1, j)) < max(d(i, lo), d(lo, j)):
            best = lo - 1
        return best
