"""Reference time-conditioned U-Net for clean-image predictors F(x_t, t) and Φ(y_t, t).

This is the architecture InDI describes (MATH.md §1, paper appendix "Model and Training Details"): a
U-Net in the style of SR3 with self-attention and group normalisation removed, so the network is
fully convolutional and can run on any image size. Time enters through a sinusoidal embedding of ``t
∈ [0, 1]`` followed by an MLP, which produces a per-block scale and shift (FiLM) of the features.

Sizes: the encoder halves the resolution ``len(channel_mults) - 1`` times, so ``H`` and ``W`` should
be multiples of ``2 ** (len(channel_mults) - 1)``. Other sizes are accepted: the input is
reflect-padded (bottom/right, replicate when the image is too small to reflect) up to the next
multiple and the output is cropped back, so the output always has the input's spatial shape.

With ``residual=True`` the network outputs ``x + net(x, t)`` and the last convolution is initialised
to zero, so an untrained model is the identity map — a good starting point for restoration, where
the clean image is close to the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flowrestore.errors import ConfigError, ShapeError, describe

__all__ = ["UNet", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of times ``t`` in [0, 1] (scaled by 1000, as DDPM/SR3)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = (1000.0 * t.float())[:, None] * freqs[None, :]
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


class UNet(nn.Module):
    """Small fully-convolutional time-conditioned U-Net; ``model(x, t)`` with x [B,C,H,W], t [B].

    Keyword-only arguments: ``in_channels``, ``out_channels`` (default: ``in_channels``),
    ``base_channels``, ``channel_mults`` (one entry per resolution), ``num_res_blocks`` (per
    resolution, encoder and decoder), ``emb_dim`` (default ``4 * base_channels``) and ``residual``.
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
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in [
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("base_channels", base_channels),
            ("num_res_blocks", num_res_blocks),
        ]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"UNet: {name} must be a positive int, got {describe(value)}")
        mults = tuple(channel_mults)
        if not mults or not all(isinstance(m, int) and m >= 1 for m in mults):
            raise ConfigError(
                f"UNet: channel_mults must be a non-empty sequence of positive ints, "
                f"got {describe(channel_mults)}"
            )
        if residual and in_channels != out_channels:
            raise ConfigError(
                f"UNet: residual=True needs out_channels == in_channels, got in_channels="
                f"{in_channels}, out_channels={out_channels}"
            )
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
        self.residual = bool(residual)
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
        if self.residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Spatial sizes that need no internal padding are multiples of this number."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Predict the clean image from ``x`` [B, C, H, W] at times ``t`` ([B], or a scalar)."""
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ShapeError(
                f"UNet: x must be [B, {self.config['in_channels']}, H, W], got {describe(x)}"
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
        xin = x
        if ph or pw:
            mode = "reflect" if (ph < h_in and pw < w_in) else "replicate"
            xin = F.pad(x, (0, pw, 0, ph), mode=mode)
        emb = self.time_mlp(timestep_embedding(t, self._emb_in).to(x.dtype))
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
        return x + out if self.residual else out
