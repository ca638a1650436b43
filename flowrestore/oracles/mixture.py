"""Dirac-mixture oracle (docs/math.md §2c for InDI, §4 for Dirac): exact posterior means as
softmaxes.

Prior ``p(x) = Σ_i w_i δ(x - c_i)``, degradation ``y = H x + σ n`` with ``H`` linear (a square
``[D, D]`` matrix on the flattened event, a diagonal given as a vector, or the identity).

- InDI path ``x_t = H_t x + t σ n``, ``H_t = (1 - t) I + t H`` (docs/math.md §2c):
  ``E[x | x_t] = Σ_i softmax_i(log w_i - ||x_t - H_t c_i||² / (2 t² σ²)) c_i``.
- Dirac stochastic degradation process ``y_t = A_t(x_0) + σ_t z`` (docs/math.md §4):
  ``E[x_0 | y_t] = Σ_i softmax_i(log w_i - ||y_t - A_t c_i||² / (2 σ_t²)) c_i``.

The softmax is computed after subtracting each row's smallest squared distance, so it never forms a
ratio of exponentials, stays finite for ``t`` down to ~1e-6 in float32 and float64, and at ``t = 0``
(or ``σ_t = 0``) returns the limit: the nearest centre (ties split by the weights).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch

from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.oracles._common import (
    HALF_DTYPES,
    PosteriorOracle,
    TimeLike,
    as_param,
    check_state,
    count_arg,
    draw_device,
    positive_float,
    time_vector,
    widened,
)
from flowrestore.tensors import repeat_each

__all__ = ["DiracMixture", "DiracPredictor"]


class _Unchecked(functools.partial):
    """``A(x, t, check=False)``: a family already resolved by :func:`_unchecked_family`
    (picklable whenever ``A`` is)."""


def _unchecked_family(A):
    """``A`` as ``(x, t) -> A(x, t)`` that reads no time on the host: a flowrestore family (a
    callable taking ``check``) is called with ``check=False``; an out-of-range time has already
    become NaN (:func:`~flowrestore.oracles._common.time_vector`). Resolved once per
    :class:`DiracPredictor`, not per evaluation (the signature is read on the host)."""
    if isinstance(A, _Unchecked):
        return A
    try:
        takes_check = "check" in inspect.signature(A).parameters
    except (TypeError, ValueError):  # a builtin or an object without a signature
        takes_check = False
    return _Unchecked(A, check=False) if takes_check else A


def _unchecked_schedule(sigma):
    """``sigma`` as ``t -> σ_t`` that reads no time on the host: a flowrestore schedule is
    evaluated by its ``value`` (its unchecked path), any other callable is called."""
    value, slope = getattr(sigma, "value", None), getattr(sigma, "slope", None)
    return value if callable(value) and callable(slope) else sigma


def _softmax_from_sqdist(log_w: torch.Tensor, sqdist: torch.Tensor, scale: torch.Tensor):
    """``softmax(log_w - sqdist / scale)`` over the last axis, exact in the limit ``scale → 0``.

    ``sqdist`` ``[B, K]``, ``scale`` ``[B, 1]`` (``2 t² σ²`` or ``2 σ_t²``, may be 0).
    """
    excess = sqdist - sqdist.min(dim=-1, keepdim=True).values  # >= 0, 0 at the nearest centre
    # ``excess * 0`` keeps a NaN (a NaN time or state) NaN instead of zeroing its penalty
    penalty = torch.where(excess > 0, excess / scale, excess * 0)
    return torch.softmax(log_w - penalty, dim=-1)


class DiracMixture(PosteriorOracle):
    """Mixture of Dirac masses with a linear degradation: exact InDI and Dirac posterior means.

    Args (keyword-only):
        centers: ``[K, *event_shape]`` tensor of the atoms ``c_i``.
        weights: ``[K]`` positive weights (normalised here); default uniform.
        H: ``None`` (identity), a vector of ``D = prod(event_shape)`` entries (or of event
            shape) for a diagonal, or a ``[D, D]`` matrix acting on the flattened event.
        noise_std: measurement noise ``σ > 0`` of ``y = H x + σ n``.

    Parameters are stored as float64 tensors and cast to the input's dtype/device on use. Memory per
    call is ``O(B · K · D)``.
    """

    def __init__(
        self,
        *,
        centers: torch.Tensor,
        weights: torch.Tensor | None = None,
        H: torch.Tensor | None = None,
        noise_std: float,
    ) -> None:
        if not isinstance(centers, torch.Tensor) or centers.dim() < 2:
            raise ShapeError(
                f"centers must be a tensor of shape [K, *event_shape], got {describe(centers)}"
            )
        c = as_param(centers, "centers")
        k = c.shape[0]
        self.event_shape: tuple[int, ...] = tuple(c.shape[1:])
        dim = c[0].numel()
        self.dim: int = dim
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = as_param(weights, "weights")
            if w.shape != (k,):
                raise ShapeError(
                    f"weights must have shape [K] = [{k}] to match centers, "
                    f"got shape {tuple(w.shape)}"
                )
            if not bool((w > 0).all()):
                raise ConfigError(f"weights must all be positive, got {describe(weights)}")
            w = w / w.sum()
        self.noise_std: float = positive_float(noise_std, "noise_std")
        self.centers: torch.Tensor = c
        self.weights: torch.Tensor = w
        flat = c.reshape(k, dim)
        if H is None:
            self.H: torch.Tensor | None = None
            self._diag: torch.Tensor | None = torch.ones(dim, dtype=torch.float64)
            hc = flat.clone()
        else:
            hm = as_param(H, "H")
            if hm.shape == (dim,) or (hm.dim() >= 1 and tuple(hm.shape) == self.event_shape):
                self._diag = hm.reshape(dim)
                hc = flat * self._diag
            elif hm.shape == (dim, dim):
                self._diag = None
                hc = flat @ hm.T
            else:
                raise ShapeError(
                    f"H must be None, a vector of {dim} entries (or of event shape "
                    f"{self.event_shape}) or a [{dim}, {dim}] matrix, got shape {tuple(hm.shape)}"
                )
            self.H = hm
        self._flat = flat
        self._hc = hc  # H c_i, [K, D]

    @property
    def num_components(self) -> int:
        """Number of atoms ``K``."""
        return self.centers.shape[0]

    def apply_H(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the degradation ``H`` to ``x`` of shape ``[B, *event_shape]``."""
        x = check_state(x, self.event_shape, "x")
        flat = x.reshape(x.shape[0], self.dim)
        if self._diag is not None:
            out = flat * self._diag.to(x)
        else:
            out = flat @ self.H.to(x).T
        return out.reshape(x.shape)

    # ------------------------------------------------------------- InDI side
    @widened
    def posterior_weights(self, x_t: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Posterior probabilities ``P(x = c_i | x_t)`` for the InDI path, shape ``[B, K]``."""
        x_t = check_state(x_t, self.event_shape, "x_t")
        b = x_t.shape[0]
        tv = time_vector(t, b, x_t).reshape(b, 1, 1)
        flat = x_t.reshape(b, 1, self.dim)
        c = self._flat.to(x_t).unsqueeze(0)
        hc = self._hc.to(x_t).unsqueeze(0)
        diff = flat - (c + tv * (hc - c))  # x_t - H_t c_i, [B, K, D]
        sqdist = (diff * diff).sum(-1)
        scale = 2 * (tv.reshape(b, 1) * self.noise_std) ** 2
        return _softmax_from_sqdist(self.weights.to(x_t).log(), sqdist, scale)

    @widened
    def posterior_mean(self, x_t: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Exact ``E[x | x_t]`` on the InDI path (docs/math.md §2c); ``t`` scalar or ``[B]``."""
        p = self.posterior_weights(x_t, t)
        return (p @ self._flat.to(p)).reshape(x_t.shape)

    # -------------------------------------------------------------- sampling
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``(x, y, index)``: ``index ~ w`` ``[n]``, ``x = c_index``, ``y = H x + σ n``, on
        ``device`` (``None``: torch's default device), where ``generator`` must live."""
        n = count_arg(n)
        device = draw_device(generator, device)
        w = self.weights.to(dtype=dtype, device=device)
        index = torch.multinomial(w, n, replacement=True, generator=generator)
        x = self.centers.to(dtype=dtype, device=device)[index]
        e = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        return x, self.apply_H(x) + self.noise_std * e, index

    def nearest_center(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Index ``[B]`` of each sample's Euclidean-nearest centre, and that distance ``[B]``."""
        x = check_state(x, self.event_shape, "x")
        diff = x.reshape(x.shape[0], 1, self.dim) - self._flat.to(x).unsqueeze(0)
        dist = torch.linalg.vector_norm(diff, dim=-1)
        d, i = dist.min(dim=-1)
        return i, d

    # ------------------------------------------------------------- Dirac side
    def dirac_posterior_weights(
        self,
        y_t: torch.Tensor,
        t: TimeLike,
        *,
        A: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        sigma: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``P(x_0 = c_i | y_t)`` for the SDP ``y_t = A_t(x_0) + σ_t z`` (docs/math.md §4),
        ``[B, K]``.

        ``A(x, t)`` maps ``x`` ``[M, *event]`` and ``t`` ``[M]`` to ``[M, *obs]`` (``obs`` = the
        shape of ``y_t``'s events); ``sigma(t)`` maps ``t`` ``[B]`` to ``σ_t`` (``[B]`` or
        a scalar). Neither reads ``t`` on the host when it is a flowrestore family (called with
        ``check=False``) or schedule (evaluated by ``value``): a time outside ``[0, 1]`` makes
        that sample's weights NaN, as for every oracle.
        """
        if not isinstance(y_t, torch.Tensor) or not y_t.is_floating_point() or y_t.dim() < 2:
            raise ShapeError(
                f"y_t must be a floating tensor of shape [B, *obs], got {describe(y_t)}"
            )
        if not callable(A):
            raise ConfigError(f"A must be a callable A(x, t), got {describe(A)}")
        if not callable(sigma):
            raise ConfigError(f"sigma must be a callable sigma(t), got {describe(sigma)}")
        b, k = y_t.shape[0], self.num_components
        tv = time_vector(t, b, y_t)
        c = self.centers.to(y_t)
        cc = c.unsqueeze(0).expand(b, *c.shape).reshape(b * k, *self.event_shape)
        ac = _unchecked_family(A)(cc, repeat_each(tv, k))
        if (
            not isinstance(ac, torch.Tensor)
            or ac.shape[0] != b * k
            or tuple(ac.shape[1:]) != tuple(y_t.shape[1:])
        ):
            raise ShapeError(
                f"A(x, t) must return shape [{b * k}, *{tuple(y_t.shape[1:])}] for {b * k} inputs, "
                f"got {describe(ac)}"
            )
        # ``A`` runs in the caller's dtype; the distances and the softmax in at least float32 (a
        # half-precision squared distance overflows at 65504: NaN weights, as the InDI side avoids)
        wide = torch.float32 if y_t.dtype in HALF_DTYPES else y_t.dtype
        diff = y_t.unsqueeze(1).to(wide) - ac.reshape(b, k, *y_t.shape[1:]).to(wide)
        sqdist = (diff * diff).reshape(b, k, -1).sum(-1)
        sig = _unchecked_schedule(sigma)(tv)
        sig = torch.as_tensor(sig, dtype=wide, device=y_t.device)
        if sig.dim() == 0:
            sig = sig.expand(b)
        if sig.shape != (b,):
            raise ShapeError(f"sigma(t) must return a scalar or shape [{b}], got {describe(sig)}")
        scale = 2 * (sig**2).reshape(b, 1)
        log_w = self.weights.to(device=y_t.device, dtype=wide).log()
        return _softmax_from_sqdist(log_w, sqdist, scale).to(y_t.dtype)

    def dirac_posterior_mean(
        self,
        y_t: torch.Tensor,
        t: TimeLike,
        *,
        A: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        sigma: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Exact ``Φ(y_t, t) = E[x_0 | y_t]`` for the SDP (docs/math.md §4),
        ``[B, *event_shape]``."""
        p = self.dirac_posterior_weights(y_t, t, A=A, sigma=sigma)
        return (p @ self._flat.to(p)).reshape(y_t.shape[0], *self.event_shape)

    def dirac_predictor(
        self,
        *,
        A: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        sigma: Callable[[torch.Tensor], torch.Tensor],
    ) -> Callable[[torch.Tensor, TimeLike], torch.Tensor]:
        """The exact Dirac predictor ``Φ(y_t, t)`` as a two-argument callable, for ``DiracSDE``
        (a :class:`DiracPredictor`: picklable whenever ``A`` and ``sigma`` are)."""
        return DiracPredictor(self, A, sigma)

    @widened
    def denoising_posterior_weights(
        self, y: torch.Tensor, *, variance: float | torch.Tensor
    ) -> torch.Tensor:
        """Landing frequencies ``∝ w_i exp(-||y - c_i||² / (2 variance))``, ``[B, K]``
        (docs/math.md §4).

        For pure denoising (``A_t = I``) the reverse SDE started at a fixed ``y`` lands on
        ``c_i`` with this probability, where ``variance`` is the variance of the noise between
        ``y`` and the clean atom. For the SDP ``y_t = x_0 + σ_t z`` (the marginals that
        :meth:`dirac_posterior_mean` assumes) that is ``σ_1²``: the component posterior given
        ``y_1`` is ``∝ w_i N(y_1; c_i, σ_1²)`` (docs/math.md §4; ``σ_1² − σ_0²`` would be the
        variance added after a noiseless ``y_0 = x_0``: the two differ by ``σ_0²``, negligible
        for ``σ_0 ≪ σ_1``; tests/oracles checks ``σ_1²`` by simulation with ``σ_0 =
        0.4``, where the two differ clearly). ``variance``: positive scalar or ``[B]``.
        """
        y = check_state(y, self.event_shape, "y")
        b = y.shape[0]
        if isinstance(variance, torch.Tensor) and variance.dim() > 0:
            if variance.shape != (b,):
                raise ShapeError(
                    f"variance must be a scalar or shape [{b}], got {describe(variance)}"
                )
            if not bool((variance > 0).all()):
                raise ConfigError(f"variance must be positive, got {describe(variance)}")
            v = variance.to(y).reshape(b, 1)
        else:
            v = torch.full(
                (b, 1), positive_float(variance, "variance"), dtype=y.dtype, device=y.device
            )
        diff = y.reshape(b, 1, self.dim) - self._flat.to(y).unsqueeze(0)
        sqdist = (diff * diff).sum(-1)
        return _softmax_from_sqdist(self.weights.to(y).log(), sqdist, 2 * v)

    def __repr__(self) -> str:
        kind = (
            "identity" if self.H is None else ("diagonal" if self._diag is not None else "matrix")
        )
        return (
            f"DiracMixture(K={self.num_components}, event_shape={self.event_shape}, H={kind}, "
            f"noise_std={self.noise_std})"
        )


class DiracPredictor:
    """``Φ(y_t, t) = E[x_0 | y_t]`` of a :class:`DiracMixture` under the SDP with degradation
    family ``A`` and noise schedule ``sigma`` (:meth:`DiracMixture.dirac_predictor`).

    A module-level class rather than a closure, so a ``DiracSDE`` built on it pickles (and
    deep-copies) like any other flow.
    """

    def __init__(self, mixture: DiracMixture, A, sigma):
        self.mixture = mixture
        self.A = A
        self.sigma = sigma
        # resolved once: every evaluation then calls them without inspecting them again
        self._A, self._sigma = _unchecked_family(A), _unchecked_schedule(sigma)

    def __call__(self, y_t: torch.Tensor, t: TimeLike) -> torch.Tensor:
        return self.mixture.dirac_posterior_mean(y_t, t, A=self._A, sigma=self._sigma)

    def __repr__(self) -> str:
        return f"DiracPredictor({self.mixture!r}, A={self.A!r}, sigma={self.sigma!r})"
