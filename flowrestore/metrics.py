"""Per-sample image metrics: PSNR, SSIM, data consistency, high-frequency energy, feature distances.

All functions take batches ``[B, C, H, W]`` (a single ``[C, H, W]`` image is treated as ``B = 1``)
and return a float64 tensor ``[B]`` on the input's device.

- :func:`psnr`: ``10 log10(data_range² / MSE)``; identical images give ``+inf``. ``data_range``
  defaults to 1 for floating images and to the dtype's maximum for unsigned integer ones (255 for
  ``uint8``, scikit-image's convention: a ``uint8`` image scored against a range of 1 is 48 dB
  off); a signed-integer image must name it.
- :func:`ssim`: ``skimage.metrics.structural_similarity`` per sample (Gaussian-weighted 11×11
  window, σ = 1.5, ``use_sample_covariance=False`` — the Wang et al. 2004 settings; ``channel_axis``
  set for C > 1, so colour SSIM is the mean over channels). The window needs both sides ``>= 11``;
  smaller images raise :class:`~flowrestore.errors.ShapeError`.
- :func:`data_consistency`: ``||y_obs - A(x)||₂`` per sample (Dirac, docs/math.md §3 "Data
consistency").
- :func:`high_frequency_energy`: mean squared response of the 5-point Laplacian (replicate
  boundary), per sample; a perception–distortion probe (MMSE estimates are smoother, so lower than
  sharp images).
- :func:`feature_distance`: an LPIPS-style distance with a *user-supplied* feature network (nothing
  is downloaded): channel-normalised features, squared difference, spatial mean, summed over
  channels, averaged over layers. :func:`register_feature_metric` names such a metric for later use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from flowrestore.errors import ConfigError, ShapeError, describe, finite_number

__all__ = [
    "psnr",
    "ssim",
    "data_consistency",
    "high_frequency_energy",
    "feature_distance",
    "register_feature_metric",
    "get_feature_metric",
    "feature_metric_names",
]


def _batch(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a torch tensor [B, C, H, W], got {describe(x)}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ShapeError(f"{name} must be [B, C, H, W] or [C, H, W], got {describe(x)}")
    return x


def _pair(x, ref):
    x, ref = _batch("x", x), _batch("ref", ref)
    if x.shape != ref.shape:
        raise ShapeError(
            f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    return x, ref


def _range(data_range, ref: torch.Tensor) -> float:
    """``data_range`` checked, or its default from ``ref``'s dtype: 1 for floating (and boolean)
    images, the dtype's maximum for unsigned integers (255 for ``uint8``, scikit-image's
    convention); a signed-integer image has no conventional range and must name one."""
    if data_range is not None:
        return finite_number("data_range", data_range)
    if ref.is_floating_point() or ref.dtype == torch.bool:
        return 1.0
    info = torch.iinfo(ref.dtype)
    if info.min < 0:
        raise ConfigError(
            f"data_range is required for a signed-integer image (no conventional range), got "
            f"ref of dtype {ref.dtype} and data_range=None"
        )
    return float(info.max)


#: the side of skimage's Gaussian window at σ = 1.5 (truncated at 3.5 σ): 2·int(3.5·1.5 + 0.5) + 1
_SSIM_WINDOW = 11


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample ``[B]`` (``+inf`` where x equals ref).

    ``data_range`` defaults to 1 for floating images and to the dtype's maximum for unsigned
    integer ones (255 for ``uint8``, as ``skimage.metrics.peak_signal_noise_ratio`` infers it);
    a signed-integer image must name it."""
    x, ref = _pair(x, ref)
    data_range = _range(data_range, ref)
    mse = (x.double() - ref.double()).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Structural similarity per sample ``[B]`` via ``skimage.metrics.structural_similarity``.

    ``data_range`` defaults as in :func:`psnr` (1 for floating images, 255 for ``uint8``)."""
    from skimage.metrics import structural_similarity

    x, ref = _pair(x, ref)
    data_range = _range(data_range, ref)
    if min(x.shape[-2:]) < _SSIM_WINDOW:
        raise ShapeError(
            f"ssim needs images of at least {_SSIM_WINDOW}×{_SSIM_WINDOW} pixels (its Gaussian "
            f"window, σ = 1.5), got x of shape {tuple(x.shape)}"
        )
    xs = x.detach().double().cpu().numpy()
    rs = ref.detach().double().cpu().numpy()
    out = []
    for a, b in zip(xs, rs, strict=True):
        kw = dict(
            data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        if a.shape[0] == 1:
            out.append(structural_similarity(a[0], b[0], **kw))
        else:
            out.append(structural_similarity(a, b, channel_axis=0, **kw))
    return torch.tensor(np.asarray(out, dtype=np.float64), device=x.device)


def data_consistency(
    y_obs: torch.Tensor, A: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Per-sample Euclidean norm ``||y_obs - A(x)||`` ``[B]``."""
    if not isinstance(y_obs, torch.Tensor) or y_obs.ndim < 1:
        raise ShapeError(f"y_obs must be a tensor [B, ...], got {describe(y_obs)}")
    ax = A(x)
    if not isinstance(ax, torch.Tensor) or ax.shape != y_obs.shape:
        raise ShapeError(
            f"A(x) must have the shape of y_obs {tuple(y_obs.shape)}, got {describe(ax)}"
        )
    # reshape, not flatten(1): a measurement of one number per sample is ``[B]``
    return (y_obs.double() - ax.double()).reshape(y_obs.shape[0], -1).norm(dim=1)


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared 5-point-Laplacian response per sample ``[B]`` (replicate boundary)."""
    x = _batch("x", x).double()
    c = x.shape[1]
    k = _LAPLACIAN.to(x).expand(c, 1, 3, 3)
    lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)
    return lap.square().flatten(1).mean(dim=1)


def _features(feature_net, x):
    f = feature_net(x)
    if isinstance(f, torch.Tensor):
        f = [f]
    f = list(f)
    if not f or not all(isinstance(t, torch.Tensor) and t.ndim >= 2 for t in f):
        raise ShapeError("feature_net must return a tensor [B, C, ...] or a list of them")
    return f


def feature_distance(
    x: torch.Tensor, ref: torch.Tensor, feature_net: Callable[[torch.Tensor], torch.Tensor | list]
) -> torch.Tensor:
    """LPIPS-style distance per sample ``[B]`` with a user-supplied ``feature_net`` (none shipped).

    For each feature map ``[B, C, ...]``: normalise each position's channel vector to unit length,
    take the squared difference, average over positions and sum over channels; then average layers.
    Zero for identical inputs.
    """
    x, ref = _pair(x, ref)
    fx, fr = _features(feature_net, x), _features(feature_net, ref)
    if len(fx) != len(fr):
        raise ShapeError("feature_net returned a different number of layers for x and ref")
    total = 0.0
    for a, b in zip(fx, fr, strict=True):
        # in float64: the 1e-10 guard underflows to 0 in float16, so an all-zero feature vector
        # (a ReLU's, commonly) became 0/0 = NaN
        a, b = a.double(), b.double()
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        d = (a - b).square()
        # [B, C] features (one position, e.g. globally pooled) have no spatial dims to flatten
        total = total + d.reshape(*d.shape[:2], -1).mean(dim=2).sum(dim=1)
    return (total / len(fx)).double()


_FEATURE_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}


def register_feature_metric(
    name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    """Register ``fn(x, ref) -> [B]`` under ``name``.

    Example: ``register_feature_metric("mine", lambda x, r: feature_distance(x, r, net))``.

    Registering an existing name replaces it. Nothing is registered by default: flowrestore ships no
    pretrained feature network.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"register_feature_metric: name must be a non-empty str, got {describe(name)}"
        )
    if not callable(fn):
        raise ConfigError(f"register_feature_metric: fn must be callable, got {describe(fn)}")
    _FEATURE_METRICS[name] = fn


def get_feature_metric(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The metric registered under ``name``."""
    try:
        return _FEATURE_METRICS[name]
    except KeyError:
        raise ConfigError(
            f"no feature metric named {name!r}; registered: {sorted(_FEATURE_METRICS)} "
            "(register one with register_feature_metric)"
        ) from None


def feature_metric_names() -> list[str]:
    """Names of the registered feature metrics."""
    return sorted(_FEATURE_METRICS)
