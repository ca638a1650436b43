"""Shared problems for the Dirac tests: closed-form priors, families, statistics helpers."""

from __future__ import annotations

import torch

import flowrestore as fr


def binomial_z(freq: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """(observed − target) / binomial standard error, per category."""
    se = (target * (1 - target) / n).sqrt()
    return (freq - target) / se


def landing_frequencies(oracle, x: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose nearest centre is ``c_i``."""
    idx, _ = oracle.nearest_center(x)
    return torch.bincount(idx, minlength=oracle.num_components).to(torch.float64) / x.shape[0]


def tiled_family(family, k: int):
    """``A(x, t)`` for the oracle: it is only ever called on the ``K`` centres tiled ``B`` times
    with one shared time, so apply the family to the first ``K`` rows once and tile the result
    (exact, and ``B`` times cheaper than blurring every copy)."""

    def A(x, t):
        t0 = float(t.reshape(-1)[0])
        if not bool((t == t0).all()):  # pragma: no cover - the solves here use shared times
            return family(x, t)
        return family(x[:k], t0).repeat(x.shape[0] // k, *([1] * (x.dim() - 1)))

    return A


class GaussianDirac:
    """Gaussian prior ``x ~ N(m, s²)`` per coordinate, ``A_t = a_t I`` with ``a_t = 1 − c t``,
    ``y_t = a_t x + σ_t z``. The exact predictor is linear in ``y``:
    ``Φ(y, t) = m + s² a_t (y − a_t m) / (a_t² s² + σ_t²)``."""

    def __init__(self, m, s, c: float, sigma):
        self.m = torch.as_tensor(m, dtype=torch.float64)
        self.s = torch.as_tensor(s, dtype=torch.float64)
        self.c, self.sigma = c, sigma

    def a(self, t):
        return 1 - self.c * t

    def family(self):
        c = self.c
        return fr.degradations.DiagonalFamily(
            a=lambda t: 1 - c * t, derivative=lambda t: -c + 0 * t
        )

    def phi(self, y, t):
        tt = t.reshape(-1, *([1] * (y.dim() - 1)))
        a, v = self.a(tt), self.sigma(t).reshape(tt.shape) ** 2
        m, s2 = self.m.to(y), self.s.to(y) ** 2
        return m + s2 * a * (y - a * m) / (a * a * s2 + v)

    def marginal(self, t: float):
        """Mean and variance of ``y_t``."""
        a = self.a(t)
        v = float(self.sigma(torch.tensor(t, dtype=torch.float64))) ** 2
        return a * self.m, a * a * self.s**2 + v

    def eq7_moments(self, grid: torch.Tensor, mean, var):
        """Exact mean and variance after Dirac's eq. 7 look-ahead steps on ``grid`` (affine map)."""
        m, s2 = self.m, self.s**2
        for t, u in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            at, au = self.a(t), self.a(u)
            vt = float(self.sigma(torch.tensor(t, dtype=torch.float64))) ** 2
            vu = float(self.sigma(torch.tensor(u, dtype=torch.float64))) ** 2
            k = s2 * at / (at * at * s2 + vt)  # Φ = m + k (y − a_t m)
            phi_slope, phi_icpt = k, m - k * at * m
            # y_u = y + (a_u − a_t) Φ − (v_u − v_t)(a_t Φ − y)/v_t + sqrt(v_t − v_u) z
            slope = 1 + (au - at) * phi_slope - (vu - vt) * (at * phi_slope - 1) / vt
            icpt = (au - at) * phi_icpt - (vu - vt) * at * phi_icpt / vt
            mean = slope * mean + icpt
            var = slope**2 * var + (vt - vu)
        return mean, var


def mixture_2d(noise_std: float = 0.5):
    """docs/math.md §2c/§4: centres (±1, ±1), weights (0.1, 0.2, 0.3, 0.4)."""
    centers = torch.tensor(
        [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64
    )
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    return centers, weights
