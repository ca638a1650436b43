"""What tiling needs to know about a network: its receptive field, alignment, memory and speed.

A flow is measured through its clean estimate :meth:`~flowrestore.flows.Flow.denoise` (so any
network it wraps works, a diffusers U-Net's output object included); a bare predictor through
``model(x, t)``. :func:`receptive_radius` reads the support of an input gradient;
:func:`network_multiple` the down-sampling factor tile origins align to;
:func:`activation_bytes_per_pixel` and :func:`seconds_per_megapixel` feed the plan and the
estimate printed before a long job.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, describe
from flowrestore.flows import Flow

__all__ = [
    "receptive_radius",
    "network_multiple",
    "degradation_multiple",
    "network_channels",
    "activation_bytes_per_pixel",
    "seconds_per_megapixel",
    "model_device",
    "GLOBAL_FLOOR_FACTOR",
    "UNKNOWN_BYTES_PER_PIXEL",
]

#: Fallback activation estimate for predictors whose architecture is unknown (bytes per pixel).
UNKNOWN_BYTES_PER_PIXEL = 4096


def ceil_to(x: float, m: int) -> int:
    """``x`` rounded up to a multiple of ``m``."""
    return int(math.ceil(x / m) * m)


def floor_to(x: float, m: int) -> int:
    """``x`` rounded down to a multiple of ``m``."""
    return int(math.floor(x / m) * m)


_RADIUS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe_input(shape: tuple[int, ...], device) -> Tensor:
    """A uniform random probe image from its own seeded generator: probing draws nothing from
    torch's global random stream (a caller's later draws do not depend on whether a probe ran)
    and gives the same probe every time."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)


def _network(model):
    """The network of a flow (:attr:`Flow.network`), or ``model`` itself."""
    return model.network if isinstance(model, Flow) else model


def _step_family(model):
    """The degradation family a flow's steps apply to its clean estimate (a Dirac flow's
    ``A_t``), or None."""
    if isinstance(model, Flow) and callable(getattr(model, "degrade", None)):
        return getattr(model, "family", None)
    return None


def _evaluator(model):
    """``f(x, t)``: a flow's clean estimate ``flow.denoise(t, x)`` (any network's convention: a
    diffusers model returns an object with ``.sample``) — for a flow whose steps degrade that
    estimate (Dirac: ``A_t(Φ(y, t))``), ``Φ + A_1(Φ)`` at ``t = 1``, so that the blur's reach
    adds to the network's — or a predictor ``model(x, t)``."""
    if _step_family(model) is not None:

        def degraded(x, t):
            phi = model.denoise(t, x)
            # Φ + A_1(Φ): the gradient's support is the union of both reaches, also where A_1
            # passes no gradient (a JPEG round trip)
            return phi + model.degrade(phi, t)

        return degraded
    if isinstance(model, Flow):
        return lambda x, t: model.denoise(t, x)
    return model


@contextlib.contextmanager
def _buffers_kept(model):
    """Put the network's buffers back when the block ends (after any backward pass): a probe
    runs the network as it is (train or eval mode), and a BatchNorm in train mode would
    otherwise keep the probe's statistics as its running mean and variance."""
    net = _network(model)
    buffers = list(net.buffers()) if isinstance(net, torch.nn.Module) else []
    saved = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, before in zip(buffers, saved, strict=True):
                b.copy_(before)


def network_multiple(model) -> int:
    """The size tile origins are aligned to: the network's ``multiple`` attribute (the shipped
    U-Net: 4), or for a diffusers U-Net (``config.block_out_channels``) its down-sampling factor
    ``2 ** (levels − 1)``; else 1."""
    net = _network(model)
    m = getattr(net, "multiple", None)
    if isinstance(m, int) and not isinstance(m, bool) and m >= 1:
        return m
    channels = getattr(getattr(net, "config", None), "get", lambda k, d=None: d)(
        "block_out_channels"
    )
    if isinstance(channels, (list, tuple)) and channels:
        return 2 ** (len(channels) - 1)
    return 1


def degradation_multiple(model) -> int:
    """The block size a flow's steps degrade on: the ``factor`` of a Dirac flow's family
    (``DownsampleFamily``) or of its operator (the ``sr4`` task's blend of ``DownUp``); else 1.
    Tile origins align to it too, so a tile's blocks are the whole image's."""
    family = _step_family(model)
    for part in (family, getattr(family, "operator", None)):
        f = getattr(part, "factor", None)
        if isinstance(f, int) and not isinstance(f, bool) and f >= 1:
            return f
    return 1


def network_channels(model) -> int:
    """The number of image channels the network takes: ``config["in_channels"]`` of the shipped
    U-Net (a trainer checkpoint's ``--channels``), or a diffusers model's ``config.in_channels``;
    else 3."""
    c = declared_channels(model)
    return 3 if c is None else c


def declared_channels(model) -> int | None:
    """The channel count the network declares (see :func:`network_channels`), or None."""
    cfg = getattr(_network(model), "config", None)
    c = cfg.get("in_channels") if hasattr(cfg, "get") else getattr(cfg, "in_channels", None)
    return c if isinstance(c, int) and not isinstance(c, bool) and c >= 1 else None


#: A network whose every output depends on every input (normalisation over the whole image, as
#: in diffusers' GroupNorm U-Nets): that dependence is spread evenly over the image, so its level
#: is the gradient's median; the effective receptive field is the connected region around the
#: probed block where the gradient stands this many times above it.
GLOBAL_FLOOR_FACTOR = 10.0


def _effective_support(g: Tensor) -> Tensor:
    """Where ``g`` stands :data:`GLOBAL_FLOOR_FACTOR` times above its median, connected to its
    largest value (isolated spikes, e.g. at the zero-padded borders, are not part of it)."""
    from scipy import ndimage

    above = (g > GLOBAL_FLOOR_FACTOR * g.median()).numpy()
    labels, _ = ndimage.label(above)
    peak = divmod(int(g.argmax()), g.shape[-1])
    return torch.from_numpy(labels == labels[peak])


def receptive_radius(model, *, channels: int | None = None, multiple: int = 4, device=None) -> int:
    """Receptive-field radius (pixels) of a flow's clean estimate (or of ``model(x, t)``),
    measured from its input gradient.

    The gradient of a ``multiple``×``multiple`` block of central output pixels is non-zero exactly
    on the inputs they depend on; the radius is how far that support reaches beyond the block.
    The probe grows until the support stays inside it (at most 1024 px), also past probes where
    the block depends on no input inside them (a one-sided network reaching beyond the probe's
    edge); if no probe finds any, or the support outgrows 1024 px, it raises :class:`~flowrestore.
    errors.ConfigError` (pass ``overlap=`` to the tiler yourself), as when the predictor fails on
    a probe (a wrong channel count, out of memory). Cached per network (and family, ``multiple``
    and ``channels``). The probe takes the gradient of its input only (the network's parameters'
    ``.grad`` are left as they were) and draws its random image from its own seeded generator,
    not torch's global random stream; the network's buffers (a train-mode BatchNorm's running
    statistics) are put back after it.
    A flow is probed through :meth:`~flowrestore.flows.Flow.denoise` at ``t = 1``, so any network
    it wraps works (a diffusers U-Net's output object included); a flow whose steps apply a
    degradation family to that estimate (a Dirac flow: ``A_t(Φ)``) through ``Φ + A_1(Φ)``, so a
    blur's kernel adds its reach to the network's. Where the support is the whole
    probe — a network that normalises over the image, so every output depends on every input —
    no overlap makes tiles exact; the radius is then the effective one, of the inputs whose
    gradient stands :data:`GLOBAL_FLOOR_FACTOR` times above the gradient's median (the evenly
    spread global part) around the probed block, and tiled results are approximate.
    ``channels``: the probe's channel count (default: :func:`network_channels`).
    """
    for name, value in (("multiple", multiple), ("channels", channels)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(
                f"receptive_radius: {name} must be an int >= 1, got {describe(value)}"
            )
    if channels is None:
        channels = network_channels(model)
    key = _network(model)
    family = _step_family(model)
    token = (None if family is None else id(family), multiple, channels)
    try:
        held, radius = _RADIUS_CACHE[key][token]
        if held is family:
            return radius
    except (KeyError, TypeError):
        pass
    if device is None:
        device = model_device(model)
    fn = _evaluator(model)
    radius = None
    size = 128
    independent = True  # no probe found any input the block depends on
    while size <= 1024 and radius is None:
        c = floor_to(size // 2, multiple)
        with _buffers_kept(model):
            g = _input_gradient(fn, key, channels, size, c, multiple, device)
        support = g > 0
        if not bool(support.any()):  # the block depends on no input inside this probe
            size *= 2
            continue
        independent = False
        if bool(support.all()):  # a global dependence: the effective receptive field
            support = _effective_support(g)
        rows = torch.nonzero(support.any(dim=1)).flatten()
        cols = torch.nonzero(support.any(dim=0)).flatten()
        lo = int(min(rows.min(), cols.min()))
        hi = int(max(rows.max(), cols.max()))
        if lo > 0 and hi < size - 1:
            radius = max(c - lo, hi - (c + multiple - 1))
        size *= 2
    if radius is None and independent:
        raise ConfigError(
            "receptive_radius: the predictor's probed output depends on no input pixel within a "
            f"1024 px probe; pass overlap= explicitly (model {type(key).__name__})"
        )
    if radius is None:
        raise ConfigError(
            f"receptive_radius: the predictor's receptive field exceeds a 1024 px probe; "
            f"pass overlap= explicitly (model {type(key).__name__})"
        )
    try:
        _RADIUS_CACHE.setdefault(key, {})[token] = (family, radius)
    except TypeError:  # not weak-referenceable
        pass
    return radius


def _input_gradient(fn, key, channels: int, size: int, c: int, multiple: int, device) -> Tensor:
    """``|∂ (block sum) / ∂ x|`` summed over channels, ``[size, size]`` on the CPU: the gradient
    of the input only (the network's parameters keep their ``.grad``). A probe that fails is
    refused with the remedy (pass ``overlap=``)."""
    x = _probe_input((1, channels, size, size), device).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = fn(x, torch.ones(1, device=device))
            block = out[..., c : c + multiple, c : c + multiple].sum()
            grad = None
            if block.requires_grad:  # else the output does not depend on the input at all
                (grad,) = torch.autograd.grad(block, x, allow_unused=True)
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"receptive_radius: the predictor failed on a {channels}-channel {size}x{size} probe "
            f"({type(exc).__name__}: {exc}); pass overlap= explicitly (model "
            f"{type(key).__name__})"
        ) from exc
    if grad is None:
        return torch.zeros(size, size)
    g = grad.detach().abs().sum(dim=(0, 1)).cpu()
    if not bool(torch.isfinite(g).all()):  # NaN > 0 is False: it would read as no dependence
        raise ConfigError(
            f"receptive_radius: the predictor's gradient on a {size}x{size} probe is not finite; "
            f"pass overlap= explicitly (model {type(key).__name__})"
        )
    return g


def activation_bytes_per_pixel(model) -> int:
    """Estimated peak activation memory per input pixel of one evaluation (bytes, float32).

    For a U-Net with ``model.config`` (``base_channels``, ``channel_mults``): 12 float32 feature
    maps of each level's width, scaled by that level's area: ``48 * sum(C_l / 4**l)`` bytes. This
    matched peak-RSS measurements of the shipped predictor within 25 % (1257, 981, 925 and 805 B/px
    at 256², 512², 768² and 1024², estimate 1248). Unknown predictors: 4096 B/px.
    """
    cfg = getattr(_network(model), "config", None)
    if isinstance(cfg, dict) and "base_channels" in cfg and "channel_mults" in cfg:
        widths = [cfg["base_channels"] * m for m in cfg["channel_mults"]]
        return int(48 * sum(c / 4**level for level, c in enumerate(widths)))
    return UNKNOWN_BYTES_PER_PIXEL


def model_device(model) -> torch.device:
    """The device of a flow's network or a module's first parameter (CPU if none)."""
    try:
        return next(_network(model).parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def seconds_per_megapixel(
    model, tile_shape: tuple[int, int], *, channels: int | None = None
) -> float:
    """Measured seconds per megapixel of one evaluation of ``model`` (a flow's clean estimate,
    or a predictor ``model(x, t)``) on a tile of this shape (``channels``: default
    :func:`network_channels`)."""
    device = model_device(model)
    if channels is None:
        channels = network_channels(model)
    fn = _evaluator(model)
    x = _probe_input((1, channels, *tile_shape), device)
    t = torch.ones(1, device=device)
    with torch.no_grad(), _buffers_kept(model):
        fn(x, t)  # warm-up (allocator, kernels)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
    return dt / (tile_shape[0] * tile_shape[1] / 1e6)
