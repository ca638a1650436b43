"""Reference time-conditioned U-Net for clean-image predictors F(x_t, t) and Φ(y_t, t).

This is the architecture InDI describes (docs/math.md §1, paper appendix "Model and Training
Details"): a U-Net in the style of SR3 with self-attention and group normalisation removed, so the
network is fully convolutional and can run on any image size. Time enters through a sinusoidal
embedding of ``t ∈ [0, 1]`` followed by an MLP, which produces a per-block scale and shift (FiLM) of
the features.

Sizes: the encoder halves the resolution ``len(channel_mults) - 1`` times, so ``H`` and ``W`` should
be multiples of ``2 ** (len(channel_mults) - 1)``. Other sizes are accepted: the input is
reflect-padded (bottom/right, replicate when the image is too small to reflect) up to the next
multiple and the output is cropped back, so the output always has the input's spatial shape.
An input of another floating dtype than the weights (a float64 or bfloat16 state) is computed in
the weights' dtype and returned in its own, so every solver's state dtype works with a float32
model (its precision is the model's); an integer or complex input is refused
(:class:`~flowrestore.errors.ArgumentTypeError`).

With ``residual=True`` the network outputs ``x + net(x, t)`` and the last convolution is initialised
to zero, so an untrained model is the identity map — a good starting point for restoration, where
the clean image is close to the input.

**Velocity parametrisation** (``velocity=True``). The network's output is read as the velocity
``v_θ(x, t)`` of InDI's residual flow and the predictor is ``F(x, t) = x − t·v_θ(x, t)`` — the
EDM-style skip form ``c_skip(t) x + c_out(t) net`` with ``c_skip = 1``, ``c_out = −t``. Then
``F(x, t) → x`` as ``t → 0`` *by construction* and the flow's drift ``(x − F)/t = v_θ`` is bounded,
so the ODE ``dx/dt = (x − F)/t`` has a limit at ``t = 0`` and refined solves converge (a free
residual ``x + net`` leaves ``F − x`` at a non-zero constant near 0, a drift ``c/t`` and a solution
drifting like ``c·log t``). :meth:`UNet.velocity` returns ``v_θ`` directly, which
:class:`~flowrestore.InDIFlow` uses as the drift when ``predicts_velocity`` is true (no cancellation
in ``(x − F)/t`` at small ``t``). The InDI loss ``‖F − x‖`` and its target are unchanged (InDI,
Delbracio & Milanfar 2023, §3, the training loss).

**Memory format.** On the CPU the features run channels-last (NHWC), which the CPU convolution
kernels prefer: 1.3-1.4x less time per evaluation of the shipped predictors (8 crops of 64², two
threads, this project's 2-core machine); the output is returned in the standard layout. On other
devices the input's layout is kept.

**Time embedding.** ``t`` enters through sinusoids of ``time_scale·t`` (``time_scale=1000`` is the
DDPM/SR3 convention for integer timesteps). Its top frequency sets how fast the predictor may vary
in ``t``: at 1000 it oscillates with a period of ~0.006 in ``t``, which no few-step solver resolves;
a small ``time_scale`` (e.g. 10) keeps ``F`` smooth in ``t``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError, describe

__all__ = ["UNet", "timestep_embedding"]


def timestep_embedding(
    t: torch.Tensor, dim: int, *, max_period: float = 10000.0, scale: float = 1000.0
) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of ``scale·t`` (``scale=1000``: DDPM/SR3 convention)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = (scale * t.float())[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _ResBlock(nn.Module):
    """Conv residual block without normalisation; time enters as FiLM (scale, shift)."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        # Without normalisation, a zero-initialised last conv keeps the residual stack stable.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(x))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


def _check_config(
    in_channels, out_channels, base_channels, channel_mults, num_res_blocks, residual, velocity,
    time_scale, emb_dim=None,
) -> tuple[int, ...]:  # fmt: skip
    """Validate the U-Net's arguments (each error names one); the channel multipliers."""
    for name, value in [
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("base_channels", base_channels),
        ("num_res_blocks", num_res_blocks),
    ]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"UNet: {name} must be a positive int, got {describe(value)}")
    if emb_dim is not None and (
        not isinstance(emb_dim, int) or isinstance(emb_dim, bool) or emb_dim < 1
    ):
        raise ConfigError(f"UNet: emb_dim must be None or a positive int, got {describe(emb_dim)}")
    try:
        mults = tuple(channel_mults)
    except TypeError:
        mults = ()  # not a sequence: refused below
    if not mults or not all(
        isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in mults
    ):
        raise ConfigError(
            f"UNet: channel_mults must be a non-empty sequence of positive ints, "
            f"got {describe(channel_mults)}"
        )
    if not isinstance(residual, bool):  # a string "false" would otherwise read as True
        raise ConfigError(f"UNet: residual must be a bool, got {describe(residual)}")
    if residual and in_channels != out_channels:
        raise ConfigError(
            f"UNet: residual=True needs out_channels == in_channels, got in_channels="
            f"{in_channels}, out_channels={out_channels}"
        )
    if not isinstance(velocity, bool):
        raise ConfigError(f"UNet: velocity must be a bool, got {describe(velocity)}")
    if velocity and in_channels != out_channels:
        raise ConfigError(
            f"UNet: velocity=True needs out_channels == in_channels, got in_channels="
            f"{in_channels}, out_channels={out_channels}"
        )
    if isinstance(time_scale, bool) or not (
        isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0
    ):
        raise ConfigError(
            f"UNet: time_scale must be a positive finite number, got {describe(time_scale)}"
        )
    return mults


class UNet(nn.Module):
    """Small fully-convolutional time-conditioned U-Net; ``model(x, t)`` with x [B,C,H,W], t [B].

    Keyword-only arguments: ``in_channels``, ``out_channels`` (default: ``in_channels``),
    ``base_channels``, ``channel_mults`` (one entry per resolution), ``num_res_blocks`` (per
    resolution, encoder and decoder), ``emb_dim`` (default ``4 * base_channels``), ``residual``
    (output ``x + net``), ``velocity`` (output ``x − t·net``, see the module docstring; excludes
    ``residual``) and ``time_scale`` (the time embedding's scale).
    ``model.config`` is a plain dict that rebuilds the same architecture: ``UNet(**model.config)``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int | None = None,
        base_channels: int = 16,
        channel_mults: tuple[int, ...] | list[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        emb_dim: int | None = None,
        residual: bool = True,
        velocity: bool = False,
        time_scale: float = 1000.0,
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        mults = _check_config(
            in_channels, out_channels, base_channels, channel_mults, num_res_blocks, residual,
            velocity, time_scale, emb_dim,
        )  # fmt: skip
        residual = bool(residual) and not velocity
        emb_dim = 4 * base_channels if emb_dim is None else emb_dim
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "base_channels": base_channels,
            "channel_mults": list(mults),
            "num_res_blocks": num_res_blocks,
            "emb_dim": emb_dim,
            "residual": bool(residual),
        }
        if velocity:
            self.config["velocity"] = True
        if float(time_scale) != 1000.0:
            self.config["time_scale"] = float(time_scale)
        self.residual = bool(residual)
        self.is_velocity = velocity
        self.time_scale = float(time_scale)
        self.levels = len(mults)
        self._emb_in = base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.inc = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_ch = []
        ch = base_channels
        for i, m in enumerate(mults):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(_ResBlock(ch, base_channels * m, emb_dim))
                ch = base_channels * m
            self.down_blocks.append(blocks)
            skip_ch.append(ch)
            if i < len(mults) - 1:
                self.downsamplers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = _ResBlock(ch, ch, emb_dim)
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(len(mults))):
            blocks = nn.ModuleList()
            cin = ch + skip_ch[i]
            for _ in range(num_res_blocks):
                blocks.append(_ResBlock(cin, base_channels * mults[i], emb_dim))
                cin = ch = base_channels * mults[i]
            self.up_blocks.append(blocks)
            if i > 0:
                self.upsamplers.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out = nn.Conv2d(ch, out_channels, 3, padding=1)
        if self.residual or self.is_velocity:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Spatial sizes that need no internal padding are multiples of this number."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Predict the clean image from ``x`` [B, C, H, W] at times ``t`` ([B], or a scalar)."""
        out, t = self._net(x, t)
        if self.is_velocity:
            return x - t.to(x.dtype).reshape(-1, 1, 1, 1) * out
        return x + out if self.residual else out

    @property
    def predicts_velocity(self) -> bool:
        """Whether :meth:`velocity` is available (``velocity=True``); InDIFlow then uses it."""
        return self.is_velocity

    def velocity(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``v_θ(x, t)``: the drift of InDI's flow, ``(x − F(x, t))/t`` without the division."""
        if not self.is_velocity:
            raise ConfigError("UNet.velocity: this model was built with velocity=False")
        return self._net(x, t)[0]

    def _net(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise ArgumentTypeError(f"UNet: x must be a torch.Tensor, got {describe(x)}")
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ShapeError(
                f"UNet: x must be [B, {self.config['in_channels']}, H, W], got {describe(x)}"
            )
        if not torch.is_floating_point(x):  # a uint8 image came back as truncated uint8 garbage
            raise ArgumentTypeError(
                f"UNet: x must be a real floating-point tensor (images in [0, 1]), got dtype "
                f"{x.dtype}"
            )
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ShapeError(f"UNet: t must be a scalar or a [B]={b} tensor, got {describe(t)}")
        h_in, w_in = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h_in) % m, (-w_in) % m
        dtype = self.inc.weight.dtype  # a float64 or bfloat16 state runs in the weights' dtype
        xin = x if x.dtype == dtype else x.to(dtype)
        if ph or pw:
            mode = "reflect" if (ph < h_in and pw < w_in) else "replicate"
            xin = F.pad(xin, (0, pw, 0, ph), mode=mode)
        channels_last = xin.device.type == "cpu"  # CPU convolutions: ~1.3x faster (module doc)
        if channels_last:
            xin = xin.contiguous(memory_format=torch.channels_last)
        emb = self.time_mlp(timestep_embedding(t, self._emb_in, scale=self.time_scale).to(dtype))
        h = self.inc(xin)
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                h = blk(h, emb)
            skips.append(h)
            if i < self.levels - 1:
                h = self.downsamplers[i](h)
        h = self.mid(h, emb)
        for j, blocks in enumerate(self.up_blocks):
            h = torch.cat([h, skips[self.levels - 1 - j]], dim=1)
            for blk in blocks:
                h = blk(h, emb)
            if j < self.levels - 1:
                h = self.upsamplers[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out(F.silu(h))
        if ph or pw:
            out = out[..., :h_in, :w_in]
        if channels_last:
            out = out.contiguous()
        return (out if out.dtype == x.dtype else out.to(x.dtype)), t
