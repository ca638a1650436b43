"""JPEG compression as a (non-linear) degradation, through Pillow.

``JPEG(quality)(x)`` encodes each image of ``x`` [B, C, H, W] in [0, 1] (C = 1 grey or C = 3 RGB) at
the given quality and decodes it again: a CPU round trip through 8-bit images, returned in ``x``'s
dtype and device. It has no adjoint and no gradient.
"""

from __future__ import annotations

import io
import numbers

import numpy as np
import torch
from PIL import Image

from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError, describe

__all__ = ["JPEG"]


def _integer(v) -> bool:
    """An integer, numpy integers included (``bool`` is not one)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class JPEG:
    """JPEG round trip at ``quality`` (1–100); ``subsampling`` as Pillow's (None: its default)."""

    def __init__(self, quality: int, *, subsampling: int | None = None):
        if not _integer(quality) or not 1 <= quality <= 100:
            raise ConfigError(f"quality must be an int in [1, 100], got {describe(quality)}")
        if subsampling is not None and not (_integer(subsampling) and subsampling in (0, 1, 2)):
            raise ConfigError(f"subsampling must be None, 0, 1 or 2, got {describe(subsampling)}")
        self.quality = int(quality)
        self.subsampling = None if subsampling is None else int(subsampling)

    def _one(self, img: np.ndarray) -> np.ndarray:
        mode = "L" if img.shape[-1] == 1 else "RGB"
        pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode=mode)
        buf = io.BytesIO()
        kw = {"quality": self.quality}
        if self.subsampling is not None:
            kw["subsampling"] = self.subsampling
        pil.save(buf, format="JPEG", **kw)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(mode))
        return out.reshape(img.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Compress and decompress every image of ``x`` [B, C, H, W], a floating-point tensor
        (values clipped to [0, 1]; a NaN is refused with a ConfigError, an integer image with an
        ArgumentTypeError)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ShapeError(f"x must be a [B, C, H, W] tensor with C in (1, 3), got {describe(x)}")
        if not x.is_floating_point():  # an 8-bit image would be clipped to [0, 1]: all 0 or 1
            raise ArgumentTypeError(
                f"x must be a floating-point tensor in [0, 1] (convert an 8-bit image with "
                f"x.float() / 255), got {describe(x)}"
            )
        if x.shape[0] == 0:  # no image to encode (np.stack of none fails)
            return x.detach().clone()
        host = x.detach().cpu()
        if bool(host.isnan().any()):  # a NaN would become an arbitrary 8-bit value
            raise ConfigError(f"x must not contain NaN to be JPEG-encoded, got {describe(x)}")
        arr = (host.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out = np.stack([self._one(a) for a in arr])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255

    def __repr__(self) -> str:
        sub = "" if self.subsampling is None else f", subsampling={self.subsampling}"
        return f"JPEG(quality={self.quality}{sub})"
