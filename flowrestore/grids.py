"""Time grids: construction and validation.

A grid is a 1-D tensor of strictly monotone times; its order sets the direction of integration.
Restoration flows run from ``t = 1`` to ``0``. Spacings (which one ``steps=N`` uses:
:func:`flowrestore.integrate.endpoint.default_spacing`):

* :class:`Uniform` — ``t_k = t0 + (k/N)(t1 − t0)`` (an ``ODEFlow``'s default);
* :class:`Power` — ``t_k = t1 + (t0 − t1)(1 − k/N)^ρ``: steps shrink toward ``t1`` (for restoration
  flows, toward 0, where the predictor changes fastest). With ``ρ ≥ p/2`` the ``O(h_last²)``
  error of the final denoising step of an order-``p`` method is ``O(N^{-p})`` — the whole solve
  keeps order ``p``;
* :class:`StartRefined` — ``t_k = t1 + (t0 − t1)(1 − (k/N)^ρ)``: steps shrink toward the *start*
  (the degraded end ``t = 1``, where a learned restoration flow changes fastest), with an optional
  closing pair for multistep extrapolation onto ``t1`` (:class:`~flowrestore.InDIFlow`'s default);
* :class:`NoiseLevels` — uniform in the index of a diffusion model's trained noise levels, warped
  by ``ρ``: DDIM's quadratic timesteps for ``ρ = 2`` (Song et al. 2021, §D.2; a diffusion flow's);
* :class:`EndRefined` — a spacing with its last steps refined as ``(1 − k/N)^ρ`` (the loop's rule);
* :class:`EulerMatchedEnd` — a spacing end-refined so that its last positive point is no coarser
  than Euler's on the same spacing at the same number of evaluations (Midpoint's, on a declared
  grid);
* :class:`Unrefined` — a spacing laid exactly as given: the loop adds no end refinement on it
  (a shipped InDI predictor's declaration for its Runge–Kutta solvers);
* :class:`Fitted` — a grid shape fitted to a problem (:func:`flowrestore.integrate.fit_grid`);
* :class:`FittedGrids` — fitted grids per step count for one solver, declared by a flow (a shipped
  model's few-NFE schedules), over the spacing the solver would otherwise use.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowrestore.errors import ConfigError, GridError, describe


def _check_exponent(spacing, name: str = "rho") -> None:
    """Refuse an exponent that is not a finite real number ``>= 1`` (``ConfigError`` naming
    it); a numpy or 0-d tensor number is stored as a Python ``float`` (it was refused with "must
    be a finite number >= 1, got 2")."""
    value = getattr(spacing, name)
    if isinstance(value, Tensor) and value.dim() == 0 and value.dtype.is_floating_point:
        value = float(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 1
    ):
        raise ConfigError(f"{name} must be a finite number >= 1, got {describe(value)}")
    if type(getattr(spacing, name)) not in (int, float):
        object.__setattr__(spacing, name, float(value))


def _int_at_least(spacing, name: str, low: int) -> None:
    """Refuse a field that is not an integer ``>= low`` (``ConfigError`` naming it); a numpy
    integer is stored as a Python ``int`` (it was refused with "must be an int >= 3, got 5")."""
    value = getattr(spacing, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {describe(value)}")
    object.__setattr__(spacing, name, int(value))


class Spacing:
    """How ``steps`` intervals are laid between two times."""

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        """A float64 CPU grid of ``steps + 1`` points from ``t0`` to ``t1``."""
        raise NotImplementedError

    @property
    def end_exponent(self) -> float:
        """``e``: the last interval shrinks like ``N^{−e}`` (default 1, a smooth spacing's)."""
        return 1.0

    def shape_for(self, steps: int, t0: float, t1: float) -> Spacing:
        """The spacing whose shape this one lays at ``steps`` from ``t0`` to ``t1`` (itself; one
        whose law depends on ``steps``, :class:`Shifted` with ``end_shift``, answers the law of
        that ``steps``): :class:`EndRefined` reads this shape, not the one at its resolution."""
        return self


@dataclass(frozen=True)
class Uniform(Spacing):
    """Equal steps."""

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)


@dataclass(frozen=True)
class Power(Spacing):
    """Steps shrinking toward the end: ``t_k = t1 + (t0 − t1)(1 − k/N)^rho``."""

    rho: float = 2.0

    def __post_init__(self):
        _check_exponent(self)

    @property
    def end_exponent(self) -> float:
        """``ρ``: the last interval is ``(t0 − t1) N^{−ρ}``."""
        return float(self.rho)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        grid = t1 + (t0 - t1) * u**self.rho
        grid[0], grid[-1] = t0, t1
        return grid


@dataclass(frozen=True)
class StartRefined(Spacing):
    """Steps shrinking toward the start: ``t_k = t1 + (t0 − t1)(1 − (k/M)^rho)``.

    With ``closing_pair=True`` and at least ``min_pair_steps`` steps, the last of ``M = steps − 1``
    intervals is split at the point whose squared distance to ``t1`` is half that of its left
    end (``t1 + (t_{M−1} − t1)/√2``): two close nodes just above the end, which a multistep
    solver's extrapolation onto ``t1`` (in ``(t − t1)²``) uses as value and slope.
    """

    rho: float = 2.0
    closing_pair: bool = True
    min_pair_steps: int = 5

    def __post_init__(self):
        _check_exponent(self)
        if not isinstance(self.closing_pair, bool):
            raise ConfigError(f"closing_pair must be a bool, got {describe(self.closing_pair)}")
        _int_at_least(self, "min_pair_steps", 3)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        pair = self.closing_pair and steps >= self.min_pair_steps
        m = steps - 1 if pair else steps
        u = torch.linspace(0.0, 1.0, m + 1, dtype=torch.float64)
        grid = t1 + (t0 - t1) * (1 - u**self.rho)
        if pair:
            grid = torch.cat([grid[:-1], (t1 + (grid[-2] - t1) / 2**0.5).reshape(1), grid[-1:]])
        grid[0], grid[-1] = t0, t1
        return grid


@dataclass(frozen=True, repr=False)
class NoiseLevels(Spacing):
    """Steps uniform in the index of a table of noise levels, warped by ``rho``.

    ``levels``: increasing times ``τ_1 < … < τ_T`` of table entries ``j = 1 … T`` (a diffusion
    model's ``σ_k/σ_max``, ``k = j − 1``); ``τ_0 = 0``. The table is a map ``τ(u)``, ``u = j/T`` at
    entry ``j``, geometric between entries (linear in ``log τ``, as a diffusion model's continuous
    timesteps interpolate the log-SNR) and linear from 0 to ``τ_1``. ``N`` steps are uniform in
    ``u^{1/ρ}``: on the full span the timesteps ``T (1 − k/N)^ρ − 1`` (DDIM's trailing ones for
    ``ρ = 1``, quadratic for 2). The first step ends near the data's scale whatever ``σ_max`` is
    (cosine: ``≈ 2·10⁴``); the last point shrinks like ``N^{−ρ}``.
    """

    levels: tuple[float, ...]
    rho: float = 2.0

    def __post_init__(self):
        lv = tuple(float(v) for v in self.levels)
        object.__setattr__(self, "levels", lv)
        if len(lv) < 2 or not all(math.isfinite(v) and v > 0 for v in lv):
            raise ConfigError(
                f"levels must be at least 2 finite positive times, got {describe(self.levels)}"
            )
        if any(b <= a for a, b in zip(lv, lv[1:], strict=False)):
            raise ConfigError(f"levels must increase strictly, got {describe(self.levels)}")
        object.__setattr__(self, "_log", tuple(math.log(v) for v in lv))
        _check_exponent(self)

    def __repr__(self) -> str:
        return f"NoiseLevels({len(self.levels)} levels up to {self.levels[-1]:.4g}, rho={self.rho})"

    @property
    def end_exponent(self) -> float:
        """``ρ`` (once ``N^ρ > T`` the last point lies on the table's linear first segment)."""
        return float(self.rho)

    def _time(self, u: float) -> float:
        lv, lg, n = self.levels, self._log, len(self.levels)
        x = min(max(u, 0.0), 1.0) * n  # entry j (levels[j - 1]) sits at x = j
        if x < 1.0:
            return lv[0] * x
        j = min(int(x), n - 1)
        return math.exp(lg[j - 1] + (x - j) * (lg[j] - lg[j - 1])) if x < n else lv[-1]

    def _index(self, t: float) -> float:
        lv, lg, n = self.levels, self._log, len(self.levels)
        if t < lv[0]:
            return max(t, 0.0) / (lv[0] * n)
        if t >= lv[-1]:
            return 1.0
        lo, hi = 0, n - 1  # lv[lo] <= t < lv[hi]; pure Python: a compiled solve plans it too
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if lv[mid] <= t else (lo, mid)
        return (lo + 1 + (math.log(t) - lg[lo]) / (lg[hi] - lg[lo])) / n

    def time_of(self, u):
        """``τ(u)`` (class docstring) for an array of ``u`` in ``[0, 1]``."""
        return np.reshape([self._time(float(v)) for v in np.ravel(u)], np.shape(u))

    def index_of(self, t):
        """The inverse ``u(τ)`` for an array of times (clipped to the table's range)."""
        return np.reshape([self._index(float(v)) for v in np.ravel(t)], np.shape(t))

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        if min(t0, t1) >= self.levels[-1]:
            # a span wholly above the table (a part-way solve of a model whose σ_max is far above
            # the table's top): every index is 1 there, so the points collided; uniform in log τ
            a, b = math.log(t0), math.log(t1)
            pts = [math.exp(a + (b - a) * k / steps) for k in range(steps + 1)]
            pts[0], pts[-1] = t0, t1
            return torch.tensor(pts, dtype=torch.float64)
        r = 1.0 / self.rho
        w0, w1 = self._index(t0) ** r, self._index(t1) ** r
        # a convex combination: never below 0 by round-off (a negative base to a fractional ρ is
        # complex) when the span starts inside the table (w0 < 1)
        w = [w0 * (1 - k / steps) + w1 * (k / steps) for k in range(steps + 1)]
        pts = [self._time(v**self.rho) for v in w]
        pts[0], pts[-1] = t0, t1
        return torch.tensor(pts, dtype=torch.float64)


@dataclass(frozen=True)
class EndRefined(Spacing):
    """``base``'s shape read at ``u_k = (1 − k/N)^ρ`` instead of ``1 − k/N`` (sampled with
    ``resolution`` steps, interpolated linearly; inside the last sampled interval along the
    base's end law ``u^e``): the last positive point is ``O(N^{−eρ})`` for a base of end
    exponent ``e``. The loop applies it to an order-``p`` method landing by the
    denoising step with ``ρ = p/(2e)`` (:mod:`flowrestore.integrate.endpoint`)."""

    base: Spacing
    rho: float = 2.0
    resolution: int = 1024

    def __post_init__(self):
        if not isinstance(self.base, Spacing):
            raise ConfigError(f"base must be a Spacing, got {describe(self.base)}")
        _check_exponent(self)
        _int_at_least(self, "resolution", 2)

    @property
    def end_exponent(self) -> float:
        """The base's, times ``ρ``."""
        return self.base.end_exponent * float(self.rho)

    def shape_for(self, steps: int, t0: float, t1: float) -> Spacing:
        """This refinement of the base's law at ``steps`` (an outer :class:`EndRefined` reads the
        base's law at the solve's ``N``, not at its own resolution)."""
        shape = self.base.shape_for(steps, t0, t1)
        return self if shape is self.base else EndRefined(shape, self.rho, self.resolution)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        shape = self.base.shape_for(steps, t0, t1)  # the base's law at this N
        fine = shape(self.resolution, t0, t1).numpy()
        u = np.linspace(1.0, 0.0, self.resolution + 1)  # 1 at t0, 0 at t1
        want = np.linspace(1.0, 0.0, steps + 1) ** self.rho
        at = np.interp(want, u[::-1], fine[::-1])
        # inside the base's last fine interval (u < 1/resolution: many steps, a large ρ) follow
        # its end law u^e instead of a straight line, which would make the end exponent ρ, not
        # e·ρ; e = 0 is a deliberate floor (EDM's σ_min) and stays as sampled
        e, u1 = shape.end_exponent, 1.0 / self.resolution
        inner = (want > 0) & (want < u1)
        if e > 0 and inner.any():
            at[inner] = t1 + (fine[-2] - t1) * (want[inner] / u1) ** e
        grid = torch.from_numpy(at)
        grid[0], grid[-1] = t0, t1
        return grid


@dataclass(frozen=True)
class EulerMatchedEnd(Spacing):
    """``base`` end-refined so that its last positive point is no coarser than Euler's on ``base``
    at the same number of evaluations.

    A solver with ``stages`` evaluations per step takes ``E = stages·N`` of them in ``N`` steps
    (``stages·N − (stages − 1)`` when it ``lands`` on a singular end by the one-evaluation
    denoising step); Euler with ``E`` steps on ``base`` stops at base's point ``u = 1/E``. This lays
    ``EndRefined(base, ρ_N)`` with ``ρ_N = max(rho_min, ln E / ln N)``, whose last positive point
    is base's ``u = N^{−ρ_N} ≤ 1/E``. On a prior far below the data's scale all of a
    probability-flow ODE's change happens below that point, and the solve's error is set by it
    (issue 16: Midpoint at 1.4× Euler's error on diffusion, flow-matching and EDM models of such a
    prior, ahead of it once the ends match).
    """

    base: Spacing
    stages: int
    landing: bool = False
    rho_min: float = 1.0

    def __post_init__(self):
        if not isinstance(self.base, Spacing):
            raise ConfigError(f"base must be a Spacing, got {describe(self.base)}")
        _int_at_least(self, "stages", 1)
        _check_exponent(self, "rho_min")

    @property
    def end_exponent(self) -> float:
        """The base's times ``ρ_N``, which tends to ``rho_min`` as ``N`` grows."""
        return self.base.end_exponent * float(self.rho_min)

    def shape_for(self, steps: int, t0: float, t1: float) -> Spacing:
        """The law laid at ``steps``: ``EndRefined(base, ρ_N)`` (an outer :class:`EndRefined`
        reads it with this ``N``'s ``ρ_N``, not its resolution's)."""
        return EndRefined(self.base.shape_for(steps, t0, t1), rho=self.rho(steps))

    def rho(self, steps: int) -> float:
        """``ρ_N`` (class docstring)."""
        if steps < 2:
            return float(self.rho_min)
        evals = self.stages * steps - (self.stages - 1 if self.landing else 0)
        return max(float(self.rho_min), math.log(evals) / math.log(steps))

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        return EndRefined(self.base, rho=self.rho(steps))(steps, t0, t1)


@dataclass(frozen=True)
class Unrefined(Spacing):
    """``base`` laid exactly as it is: where a flow declares it for a solver, the loop applies
    none of its end rules on it (no :class:`EndRefined` for a solver landing by the denoising
    step, no :class:`EulerMatchedEnd`; :mod:`flowrestore.integrate.endpoint`).

    Those rules refine a grid's end for exact models, whose landing error ``O(t_stop²)`` decides
    a few-step solve. A learned restoration predictor changes fastest at the *start* (the
    degraded end ``t = 1``), and an end refinement takes its points from there: on the shipped
    ``indi-sr4``, Heun, RK4 and Midpoint on ``EndRefined(StartRefined(rho=3))`` were up to 6 dB
    behind Euler at equal evaluations (issue 16).
    """

    base: Spacing

    def __post_init__(self):
        if not isinstance(self.base, Spacing) or isinstance(self.base, Unrefined):
            raise ConfigError(f"base must be a Spacing (not Unrefined), got {describe(self.base)}")

    @property
    def end_exponent(self) -> float:
        """The base's."""
        return self.base.end_exponent

    def shape_for(self, steps: int, t0: float, t1: float) -> Spacing:
        """The base's shape at ``steps``."""
        return self.base.shape_for(steps, t0, t1)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        return self.base(steps, t0, t1)


def make_grid(steps: int, t0: float, t1: float, spacing: Spacing | None = None) -> Tensor:
    """Grid of ``steps`` intervals from ``t0`` to ``t1`` (float64, CPU)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ConfigError(f"steps must be a positive int, got {describe(steps)}")
    steps = int(steps)  # a numpy integer (solve's steps= takes one) was refused as "got 5"
    for name, value in (("t0", t0), ("t1", t1)):
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        real = real or (
            isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point()
        )
        if not real:  # float("a") raised a bare ValueError
            raise ConfigError(f"{name} must be a real number, got {describe(value)}")
        if not math.isfinite(float(value)):  # NoiseLevels: "cannot convert float NaN to integer"
            raise ConfigError(f"{name} must be a finite time, got {describe(value)}")
    spacing = Uniform() if spacing is None else spacing
    if not isinstance(spacing, Spacing):
        raise ConfigError(
            f"spacing must be a flowrestore Spacing (Uniform, Power), got {describe(spacing)}"
        )
    t0, t1 = float(t0), float(t1)
    grid = spacing(steps, t0, t1)
    if torch.compiler.is_compiling():  # a traced whole solve: checked when it ran eagerly
        return grid
    name = f"the grid {spacing!r} laid for steps={steps} from {t0:g} to {t1:g}"
    grid = check_grid(grid, direction=-1 if t1 < t0 else 1, name=name)
    tol = 1e-9 * max(1.0, abs(t0), abs(t1))
    if grid.numel() != steps + 1:
        raise GridError(f"{name} has {grid.numel()} points, not steps + 1 = {steps + 1}")
    if abs(float(grid[0]) - t0) > tol or abs(float(grid[-1]) - t1) > tol:
        raise GridError(
            f"{name} must start at {t0:g} and end at {t1:g}, got {describe(grid)}; for a span "
            "the spacing does not cover, pass another spacing= or an explicit grid="
        )
    return grid


def check_grid(
    grid: Tensor,
    *,
    time_range: tuple[float, float] | None = None,
    direction: int | None = None,
    name: str = "grid",
) -> Tensor:
    """Validate a user grid and return it as a float64 CPU tensor.

    Raises :class:`GridError` if it is not a 1-D tensor of ≥ 2 finite, strictly monotone times, if
    it leaves ``time_range``, or if ``direction`` (−1 decreasing, +1 increasing) is violated.
    """
    if not isinstance(grid, Tensor):
        try:
            grid = torch.as_tensor(grid, dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise GridError(f"{name} must be a 1-D tensor of times, got {describe(grid)}") from exc
    if grid.is_complex() or grid.dtype == torch.bool:
        raise GridError(f"{name} must hold real times, got {describe(grid)}")
    if grid.requires_grad:  # detaching it would drop the gradient the caller asked for
        raise GridError(
            f"{name} requires grad, got {describe(grid)}: the times are laid on the host and no "
            f"gradient flows to them; pass {name}.detach()"
        )
    g = grid.detach().to("cpu", torch.float64)
    if g.dim() != 1 or g.numel() < 2:
        raise GridError(f"{name} must be a 1-D tensor of at least 2 times, got {describe(grid)}")
    if not torch.isfinite(g).all():
        raise GridError(f"{name} must be finite, got {describe(grid)}")
    d = g.diff()
    if not ((d > 0).all() or (d < 0).all()):
        k = (
            int(torch.nonzero(torch.sign(d) != torch.sign(d[0]))[0])
            if (d != 0).all()
            else int(torch.nonzero(d == 0)[0])
        )
        raise GridError(
            f"{name} must be strictly monotone; it breaks between index {k} ({g[k].item():.6g}) "
            f"and {k + 1} ({g[k + 1].item():.6g})"
        )
    if direction is not None and int(torch.sign(d[0])) != direction:
        want = "decreasing (from 1 toward 0)" if direction < 0 else "increasing"
        raise GridError(
            f"{name} runs in the wrong direction: it must be {want}, got {describe(grid)}"
        )
    if time_range is not None:
        lo, hi = time_range
        if g.min() < lo or g.max() > hi:
            raise GridError(
                f"{name} must lie in [{lo}, {hi}], got values from {g.min().item():.6g} "
                f"to {g.max().item():.6g}"
            )
    return g


def span_of(value, name: str = "t_span") -> tuple[float, float]:
    """``value`` as two different finite times ``(t0, t1)``, else a :class:`ConfigError`."""
    try:
        if isinstance(value, str):
            raise TypeError
        span = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        span = ()
    if len(span) != 2 or not all(math.isfinite(v) for v in span) or span[0] == span[1]:
        raise ConfigError(f"{name} must be two different finite times, got {describe(value)}")
    return span


@dataclass(frozen=True)
class Fitted(Spacing):
    """A grid shape fitted to a problem (see :func:`fit_grid`), reusable at any number of steps.

    ``times`` are the normalised times ``τ_0 = 1 > τ_1 > … > τ_M = 0`` of an ``M``-step grid; a
    grid of ``steps`` intervals is ``t1 + (t0 − t1) τ(k/steps)`` with ``τ(u)`` the piecewise-linear
    interpolation of ``(k/M, τ_k)`` (exactly the fitted grid when ``steps == M``). This is the
    idea of "Align Your Steps" (Sabour et al., 2024) for diffusion samplers: pick the step times
    that minimise the error of a given solver on calibration samples of the problem at hand.
    """

    times: tuple[float, ...]

    def __post_init__(self):
        try:
            t = tuple(float(v) for v in self.times)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"times must be a sequence of numbers, got {describe(self.times)}"
            ) from exc
        object.__setattr__(self, "times", t)
        if (
            len(t) < 2
            or t[0] != 1.0
            or t[-1] != 0.0
            or not all(b < a for a, b in zip(t, t[1:], strict=False))
        ):
            raise ConfigError(
                "times must decrease strictly from 1.0 to 0.0 (normalised), "
                f"got {describe(self.times)}"
            )

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        m = len(self.times) - 1
        if steps == m:
            tau = torch.tensor(self.times, dtype=torch.float64)
        else:
            u = np.linspace(0.0, 1.0, steps + 1)
            tau = torch.from_numpy(np.interp(u, np.linspace(0.0, 1.0, m + 1), self.times))
        grid = t1 + (t0 - t1) * tau
        grid[0], grid[-1] = t0, t1
        return grid


@dataclass(frozen=True, kw_only=True)
class FittedGrids:
    """Grids fitted for one solver at a few step counts: a model's few-NFE schedules (GITS,
    Chen et al. 2024; :func:`flowrestore.integrate.fit_grid`), declared by its flow.

    ``solver`` is the ``repr`` of the solver the grids were fitted for (a grid fitted for one
    solver says nothing about another's errors); ``times`` maps a step count ``N`` to the
    normalised times ``1 = τ_0 > … > τ_N = 0`` of its grid (:class:`Fitted`; a dict, or pairs).
    ``steps=N`` with that solver runs on the fitted grid; any other solver, or a step count not
    in ``times``, gets the spacing it would get without them (:meth:`over`). ``t_span`` is the
    span the grids were fitted on (default ``(1.0, 0.0)``, InDI's whole solve): a solve over
    another span (``t_end=0.3``, a start part-way) gets the fallback too, since a grid fitted for
    one span says nothing about a sub-span.
    """

    solver: str
    times: tuple[tuple[int, tuple[float, ...]], ...]
    t_span: tuple[float, float] = (1.0, 0.0)

    def __post_init__(self):
        if not isinstance(self.solver, str) or not self.solver:
            raise ConfigError(f"solver must be a solver's repr, got {describe(self.solver)}")
        object.__setattr__(self, "t_span", span_of(self.t_span))
        bad = ConfigError(
            "times must map step counts to normalised grids ({N: [1.0, ..., 0.0]} or pairs), "
            f"got {describe(self.times)}"
        )
        if isinstance(self.times, dict):
            items = list(self.times.items())
        elif isinstance(self.times, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in self.times
        ):
            items = list(self.times)
        else:
            raise bad
        table = {}
        for n, tau in items:
            steps = _step_count(n)
            if steps is None or isinstance(tau, (str, bytes)) or not hasattr(tau, "__iter__"):
                raise ConfigError(
                    f"times[{n!r}] must be a grid for a whole number of steps, got {describe(tau)}"
                )
            if steps in table:
                raise ConfigError(f"times holds {steps} steps twice ({describe(self.times)})")
            fitted = Fitted(tuple(tau))
            if steps < 1 or len(fitted.times) != steps + 1:
                raise ConfigError(
                    f"times[{n}] must hold {steps + 1} normalised times for {steps} steps, got "
                    f"{len(fitted.times)}"
                )
            table[steps] = fitted.times
        if not table:
            raise ConfigError("times must hold at least one fitted grid, got none")
        object.__setattr__(self, "times", tuple(sorted(table.items())))

    def to_dict(self) -> dict:
        """A JSON-ready record: ``{"solver", "times": {"N": [...]}, "t_span": [t0, t1]}``."""
        return {
            "solver": self.solver,
            "times": {str(n): list(tau) for n, tau in self.times},
            "t_span": list(self.t_span),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FittedGrids:
        """The grids :meth:`to_dict` recorded (other keys, e.g. a fit's report, are ignored)."""
        if not isinstance(data, dict) or "solver" not in data or "times" not in data:
            raise ConfigError(
                f"a FittedGrids record needs 'solver' and 'times', got {describe(data)}"
            )
        return cls(
            solver=data["solver"],
            times=data["times"],
            t_span=data.get("t_span", (1.0, 0.0)),
        )

    def steps(self) -> tuple[int, ...]:
        """The step counts with a fitted grid."""
        return tuple(n for n, _ in self.times)

    def applies_to(self, solver) -> bool:
        """Whether the grids were fitted for ``solver`` (the same ``repr``)."""
        return repr(solver) == self.solver

    def over(self, spacing: Spacing | None) -> Spacing:
        """A spacing laying the fitted grid at its step counts and ``spacing`` (``None``: uniform)
        at any other."""
        return _FittedOr(self.times, spacing or Uniform(), self.t_span)


def _step_count(n) -> int | None:
    """A step count from a record's key: an int, or a string of one (JSON keys); else ``None``."""
    if isinstance(n, bool):
        return None
    if isinstance(n, numbers.Integral):  # numpy integers too (a fit's np.int64 keys)
        return int(n)
    if isinstance(n, str) and n.strip().isdigit():
        return int(n)
    return None


@dataclass(frozen=True)
class _FittedOr(Spacing):
    """:meth:`FittedGrids.over`: the fitted grid where one exists for these steps and span,
    else ``fallback``."""

    table: tuple[tuple[int, tuple[float, ...]], ...]
    fallback: Spacing
    t_span: tuple[float, float] = (1.0, 0.0)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        times = dict(self.table).get(steps)
        same_span = all(
            math.isclose(t, f, rel_tol=1e-12, abs_tol=1e-12)
            for t, f in zip((t0, t1), self.t_span, strict=True)
        )
        if times is not None and same_span:
            return Fitted(times)(steps, t0, t1)
        return self.fallback(steps, t0, t1)

    @property
    def end_exponent(self) -> float:
        """The fallback's (the fitted grids are exact: no refinement rule applies to them)."""
        return self.fallback.end_exponent

    def __repr__(self) -> str:
        return f"FittedGrids(steps={[n for n, _ in self.table]}, else {self.fallback!r})"


@dataclass(frozen=True)
class Karras(Spacing):
    """EDM's spacing (Karras et al. 2022, eq. 5) in ``t = σ/σ_max``:
    ``t_k = (t_0^{1/ρ} + (k/N)(t_end^{1/ρ} − t_0^{1/ρ}))^ρ``.

    With ``t_min > 0`` (``σ_min/σ_max``) and a solve to ``t = 0``, the first ``N − 1`` steps go
    from ``t_0`` to ``t_min`` and the last lands on 0 (EDM's grid; its last positive point does not
    shrink with ``N``, so no solver converges past the landing error ``O(t_min²)``).
    ``t_min = 0`` (default) is the same formula down to 0: ``t_k = t_0 (1 − k/N)^ρ``.
    """

    rho: float = 7.0
    t_min: float = 0.0

    def __post_init__(self):
        _check_exponent(self)
        value = self.t_min
        if isinstance(value, Tensor) and value.dim() == 0 and value.dtype.is_floating_point:
            value = float(value)
        # numbers.Real: a numpy float32 σ_min/σ_max (a model's table) was refused as "got 0.002"
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not 0 <= float(value) < 1
        ):
            raise ConfigError(f"t_min must be a number in [0, 1), got {describe(self.t_min)}")
        object.__setattr__(self, "t_min", float(value))

    @property
    def end_exponent(self) -> float:
        """``ρ`` down to 0; ``0`` with ``t_min > 0`` (a floor: the loop's end rule leaves it)."""
        return 0.0 if self.t_min > 0 else float(self.rho)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        if min(t0, t1) < 0:  # the grid was complex, refused as "must hold real times, got ..."
            raise GridError(
                "the Karras spacing lays real times only for t = σ/σ_max >= 0 (t^(1/ρ) of a "
                f"negative t is complex), got a span from {t0:g} to {t1:g}"
            )
        inner = self.t_min > 0 and t1 < self.t_min < t0 and steps >= 2
        n, end = (steps - 1, self.t_min) if inner else (steps, t1)
        u = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        r = 1.0 / self.rho
        grid = (t0**r + u * (end**r - t0**r)) ** self.rho
        if inner:
            grid = torch.cat([grid, torch.tensor([t1], dtype=torch.float64)])
        grid[0], grid[-1] = t0, t1
        return grid


@dataclass(frozen=True)
class Shifted(Spacing):
    """A grid in the shifted time of flow-matching models (SD3, Esser et al. 2024, eq. 23):
    ``σ = s u / (1 + (s − 1) u)`` applied to the base grid
    ``u_k = u_end + (u_0 − u_end)(1 − k/N)^ρ`` (``u`` the unshifted time).

    ``shift = 1, rho = 1`` is uniform in ``σ``; ``shift = s`` spends more steps at high noise, as
    ``FlowMatchEulerDiscreteScheduler(shift=s)`` does. ``rho > 1`` shrinks the last steps: near
    ``σ = 0`` the map is ``σ ≈ s u``, so the last positive point is ``≈ s N^{−ρ}`` and the loop's
    landing step (error ``O(σ²)``) keeps an order-``p`` solver at its order for ``ρ ≥ p/2``.

    ``end_shift = e`` (default ``None``: ``s``) moves that point, on a span ending at ``σ = 0``,
    to where the shift ``e`` maps the plain law's last unshifted time ``w = u_0 N^{−ρ}``:
    ``e w/(1 + (e − 1) w) ≈ e u_0 N^{−ρ}`` (``u_0`` the unshifted start). It lays
    ``(1 − k/N)^{ρ_N}`` with ``ρ_N = ln(u_0/u_{N−1})/ln N ≥ 1`` (``u_{N−1}``: that point
    unshifted), so ``ρ_N → ρ`` as ``N`` grows (``≈ ρ + ln(s/e)/ln N``): the shift keeps placing
    the high-noise steps while the end is refined as a smaller shift's; ``e = s`` is the plain
    grid. :class:`~flowrestore.FlowMatchingFlow`'s default takes ``e = √s`` (its docstring says
    why).
    """

    shift: float = 1.0
    rho: float = 1.0
    end_shift: float | None = None

    def __post_init__(self):
        for name, low in (("shift", 0.0), ("rho", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{name} must be a number, got {describe(value)}")
            if type(value) not in (int, float):  # numpy: stored as a Python float
                object.__setattr__(self, name, value := float(value))
            ok = value > low if name == "shift" else value >= low
            if not ok or value != value or value == float("inf"):
                cmp = ">" if name == "shift" else ">="
                raise ConfigError(
                    f"{name} must be a finite number {cmp} {low:g}, got {describe(value)}"
                )
        e = self.end_shift
        if e is not None and (
            isinstance(e, bool) or not isinstance(e, numbers.Real) or not 0 < e < float("inf")
        ):
            raise ConfigError(f"end_shift must be None or a finite number > 0, got {describe(e)}")
        if e is not None and type(e) not in (int, float):
            object.__setattr__(self, "end_shift", float(e))

    def rho_at(self, steps: int, t0: float, t1: float) -> float:
        """The exponent laid for ``steps`` from ``t0`` to ``t1``: ``rho``, or with ``end_shift``
        on a span ending at 0 the ``ρ_N`` that puts the last positive point where the shift ``e``
        maps the plain law's ``u_0 N^{−ρ}`` (class docstring; host arithmetic, no tensors)."""
        if self.end_shift is None or t1 != 0.0 or steps < 2 or t0 <= 0.0:
            return float(self.rho)
        s, e = self.shift, self.end_shift
        u0 = t0 / (s - (s - 1) * t0)  # unshifted start
        w = u0 * steps ** (-float(self.rho))  # the plain law's last unshifted time
        target = min(e * w / (1 + (e - 1) * w), t0)  # ... mapped by the shift e
        u_last = target / (s - (s - 1) * target)
        return max(1.0, math.log(u0 / u_last) / math.log(steps))

    def shape_for(self, steps: int, t0: float, t1: float) -> Spacing:
        """The plain shifted law with ``ρ_N`` (:meth:`rho_at`) when ``end_shift`` moves the end."""
        return self if self.end_shift is None else Shifted(self.shift, self.rho_at(steps, t0, t1))

    def unshift(self, sigma: Tensor) -> Tensor:
        """The unshifted time ``u = σ / (s − (s − 1) σ)`` (inverse of the shift)."""
        return sigma / (self.shift - (self.shift - 1) * sigma)

    @property
    def end_exponent(self) -> float:
        """``ρ``: near ``σ = 0`` the last positive point is ``≈ s u_0 N^{−ρ}``."""
        return float(self.rho)

    def __call__(self, steps: int, t0: float, t1: float) -> Tensor:
        ends = self.unshift(torch.tensor([t0, t1], dtype=torch.float64))
        w = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64) ** self.rho_at(steps, t0, t1)
        u = ends[1] + (ends[0] - ends[1]) * w
        s = self.shift
        grid = s * u / (1 + (s - 1) * u)
        grid[0], grid[-1] = t0, t1
        return grid
