"""Degradation operators ``A``, degradation families ``A_t`` and degradation scheduling.

Operators (:mod:`.base`, :mod:`.blur`, :mod:`.motion`, :mod:`.inpainting`, :mod:`.resample`,
:mod:`.jpeg`, :mod:`.noise`) act on batches ``[B, C, H, W]``; linear ones have an exact adjoint
and a ``check_adjoint`` self-test. Families (:mod:`.families`) give Dirac's ``A_t`` with ``∂_t A_t``
(docs/math.md §3); :func:`schedule_degradation` (:mod:`.scheduling`) implements Dirac's Algorithm 2.
"""

from flowrestore.degradations.base import Diagonal, Identity, LinearOperator, batch_time
from flowrestore.degradations.blind import BlindOperator, Param
from flowrestore.degradations.blur import (
    Blur,
    GaussianBlur,
    gaussian_kernel,
    gaussian_kernel_derivative,
    kernel_cache_info,
)
from flowrestore.degradations.families import (
    DiagonalFamily,
    DownsampleFamily,
    Family,
    FunctionFamily,
    GaussianBlurFamily,
    InpaintingFamily,
    LinearFamily,
    as_family,
)
from flowrestore.degradations.inpainting import Inpainting, box_hole_mask, gaussian_hole_mask
from flowrestore.degradations.jpeg import JPEG
from flowrestore.degradations.motion import MotionBlur, motion_kernel
from flowrestore.degradations.noise import AdditiveGaussianNoise
from flowrestore.degradations.resample import Downsample, block_average
from flowrestore.degradations.scheduling import schedule_degradation

__all__ = [
    "BlindOperator",
    "Param",
    "LinearOperator",
    "Identity",
    "Diagonal",
    "GaussianBlur",
    "Blur",
    "MotionBlur",
    "Downsample",
    "Inpainting",
    "JPEG",
    "AdditiveGaussianNoise",
    "Family",
    "LinearFamily",
    "FunctionFamily",
    "as_family",
    "GaussianBlurFamily",
    "InpaintingFamily",
    "DownsampleFamily",
    "DiagonalFamily",
    "schedule_degradation",
    "batch_time",
    "block_average",
    "gaussian_kernel",
    "motion_kernel",
    "gaussian_kernel_derivative",
    "kernel_cache_info",
    "gaussian_hole_mask",
    "box_hole_mask",
]
