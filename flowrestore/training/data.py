"""Paired training data (clean x, degraded y) from the photographs bundled with scikit-image.

The paired examples InDI trains on (docs/math.md §1: ``min E ||F(x_t, t) - x||_p`` over pairs
``(x, y)``)
are made here on the fly: random crops of clean photos, degraded by one of the tasks below. ``y``
always has the shape of ``x`` (InDI interpolates between them).

**Split by image, never by patch.** ``HELDOUT_IMAGES = ("astronaut", "camera", "coffee")`` are used
only for evaluation (a colour portrait, the classic grey photo, a colour still life);
``TRAINING_IMAGES`` are the other bundled photographs. ``"cat"`` is left out of both: in
scikit-image it is the same picture as ``"chelsea"``. The 25×25 LFW faces
(``skimage.data.lfw_subset()``, first 100 of 200 are faces) are split by face: faces 0–79 train,
80–99 held out (:func:`lfw_faces`).

**Channels.** Every image is float32 in [0, 1], shape ``[C, H, W]``: ``channels=3`` repeats grey
images into RGB, ``channels=1`` converts colour with ``skimage.color.rgb2gray`` (ITU-R 709 luma).

**Tasks** are the records of :mod:`flowrestore.tasks` (``TASKS`` here is the tuple of their
names, read from the registry at each access, so a task registered later is included):
:func:`make_degradation` gives ``deg(x, generator) -> y`` on batches ``[B, C, H, W]`` — the task's
operator plus its Gaussian noise:

- ``"deblur"``: Gaussian blur, std ``blur_sigma`` pixels (default 2.0), reflect boundary, plus
  Gaussian noise ``noise`` (default 0.01);
- ``"sr4"``: ``factor``×``factor`` average pooling (default 4) then ``upsample`` (``"bicubic"``
  default, ``"bilinear"``, ``"nearest"``) back to full size, plus ``noise`` (default 0);
- ``"denoise"``: additive Gaussian noise of std ``sigma`` (default 0.1), not clipped;
- ``"jpeg"``: Pillow JPEG round trip at ``quality`` (default 20), plus ``noise`` (default 0).

:func:`make_family` gives the matching severity family ``A_t`` for Dirac training, a
:class:`~flowrestore.degradations.Family` with exact ``∂_t A_t``: for ``"deblur"`` the blur std
grows linearly, ``t·blur_sigma`` (``A_0 = I``; :class:`~flowrestore.degradations.
GaussianBlurFamily`); for the other tasks the path ``A_t = (1 - t) I + t A`` of the noiseless
degradation (for ``"denoise"`` that is ``A_t = I``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from flowrestore.degradations import Family, GaussianBlur
from flowrestore.errors import ConfigError, ShapeError, describe
from flowrestore.tasks import get_task, task_names

__all__ = [
    "HELDOUT_IMAGES",
    "TRAINING_IMAGES",
    "TASKS",
    "load_image",
    "heldout_images",
    "training_images",
    "lfw_faces",
    "gaussian_blur",
    "make_degradation",
    "make_family",
    "PatchDataset",
]

HELDOUT_IMAGES: tuple[str, ...] = ("astronaut", "camera", "coffee")
TRAINING_IMAGES: tuple[str, ...] = (
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "coins",
    "horse",
    "clock",
    "page",
    "moon",
    "grass",
    "gravel",
    "brick",
    "hubble_deep_field",
    "text",
)

TASKS: tuple[str, ...]  # declared only: computed by __getattr__ below at each access


def __getattr__(name: str):
    """``TASKS``: the names of the tasks registered in :data:`flowrestore.tasks.TASKS` *now*.

    Computed at each access (PEP 562), so a task added to the registry after this module was
    imported is listed too (a tuple taken at import missed it).
    """
    if name == "TASKS":
        return task_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _to_tensor(img: np.ndarray, channels: int) -> torch.Tensor:
    from skimage.color import gray2rgb, rgb2gray
    from skimage.util import img_as_float

    arr = img_as_float(img)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if channels == 3 and arr.ndim == 2:
        arr = gray2rgb(arr)
    elif channels == 1 and arr.ndim == 3:
        arr = rgb2gray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()
    return t.clamp_(0.0, 1.0)


def _check_channels(channels):
    if isinstance(channels, bool) or channels not in (1, 3):  # True == 1 is no channel count
        raise ConfigError(f"channels must be 1 or 3, got {describe(channels)}")


def _without_download(name: str, fn):
    """``fn()`` with scikit-image's downloader switched off: a photo that is not bundled (or
    cached) is refused by name instead of fetched from the network (nothing downloads at run
    time; offline, the download only failed after four tries)."""
    from unittest import mock

    from skimage.data import _fetchers

    def refuse(*_args, **_kwargs):
        raise ConfigError(
            f"load_image: scikit-image's {name!r} is not bundled with scikit-image (it would be "
            "downloaded); use a bundled photo such as 'astronaut', 'camera' or 'coffee'"
        )

    fetcher = getattr(_fetchers, "_image_fetcher", None)
    try:
        if fetcher is None or not hasattr(fetcher, "fetch"):
            return fn()
        with mock.patch.object(fetcher, "fetch", refuse):
            return fn()
    except ModuleNotFoundError:  # no pooch: scikit-image says a download needs it
        refuse()


def load_image(name: str, *, channels: int = 3) -> torch.Tensor:
    """One bundled scikit-image photo by name, float32 in [0, 1], shape ``[channels, H, W]``."""
    import skimage.data

    _check_channels(channels)
    fn = getattr(skimage.data, name, None) if isinstance(name, str) else None
    if fn is None or not callable(fn) or name.startswith("_") or name == "download_all":
        raise ConfigError(f"load_image: no scikit-image photo named {describe(name)}")
    img = _without_download(name, fn)
    # a photo is [H, W] or [H, W, 3|4]; lfw_subset (a stack), brain (a volume), a file name or
    # a stereo pair would otherwise come out as garbage "channels" or a bare error
    if not (
        isinstance(img, np.ndarray)
        and (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] in (3, 4)))
    ):
        got = f"shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ConfigError(f"load_image: scikit-image's {name!r} is not a 2-D photo (got {got})")
    return _to_tensor(img, channels)


def heldout_images(*, channels: int = 3) -> dict[str, torch.Tensor]:
    """The evaluation photos ``HELDOUT_IMAGES`` by name (never used for training)."""
    return {n: load_image(n, channels=channels) for n in HELDOUT_IMAGES}


def training_images(*, channels: int = 3) -> dict[str, torch.Tensor]:
    """The training photos ``TRAINING_IMAGES`` by name."""
    return {n: load_image(n, channels=channels) for n in TRAINING_IMAGES}


def lfw_faces(split: str = "train", *, channels: int = 3) -> torch.Tensor:
    """LFW faces ``[N, channels, 25, 25]``: ``"train"`` faces 0–79, ``"heldout"`` faces 80–99."""
    import skimage.data

    _check_channels(channels)
    if split not in ("train", "heldout"):
        raise ConfigError(f"lfw_faces: split must be 'train' or 'heldout', got {describe(split)}")
    faces = skimage.data.lfw_subset()[:100]
    faces = faces[:80] if split == "train" else faces[80:]
    x = torch.from_numpy(faces).float()[:, None]
    return x.repeat(1, channels, 1, 1).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- degradations


def gaussian_blur(x: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """Gaussian blur of ``x`` [B, C, H, W], std in pixels (scalar or [B]), reflect boundary.

    A thin wrapper over :class:`flowrestore.degradations.GaussianBlur` (kernel size
    ``2 ceil(3 max std) + 1``); ``std = 0`` is the identity.
    """
    if isinstance(std, torch.Tensor) and std.ndim == 1 and std.shape != (x.shape[0],):
        raise ShapeError(
            f"gaussian_blur: std must be a scalar or [B]={x.shape[0]}, got {describe(std)}"
        )
    if isinstance(std, torch.Tensor) and std.ndim == 1:
        std = std.to(dtype=x.dtype, device=x.device)
    return GaussianBlur(std)(x)


def _task_params(task: str, kw: dict) -> dict:
    """The resolved parameters of a task (:meth:`flowrestore.tasks.Task.resolve`)."""
    return get_task(task).resolve(kw)


def make_degradation(
    task: str, **kw
) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    """Degradation ``deg(x, generator) -> y`` (same shape) for a task in ``TASKS`` (module doc).

    The task's record (:data:`flowrestore.tasks.TASKS`) builds it: its operator plus its noise.
    """
    return get_task(task).degradation(kw)


def make_family(task: str, **kw) -> Family:
    """Noiseless severity family ``A_t`` (``A_0 = I``, ``A_1`` the task's operator) for Dirac: a
    :class:`~flowrestore.degradations.Family` with exact ``∂_t A_t`` (module doc)."""
    record = get_task(task)
    params = record.resolve(kw)
    fam = record.family(params)
    fam.task, fam.params = task, params
    return fam


# ----------------------------------------------------------------------------- patches


class PatchDataset:
    """Random paired patches ``(x, y)`` from a set of images, degraded on the fly.

    ``images``: a dict name → ``[C, H, W]`` tensor, a sequence of such tensors, or a
    ``[N, C, H, W]`` tensor. Each sample picks an image uniformly, a crop position uniformly, and
    (``augment=True``) one of the 8 flips/rotations; ``degradation`` is a ``make_degradation``
    callable or ``None`` (then only ``x`` is meaningful and ``y = x``). All randomness comes from
    the generator given to :meth:`sample`, so the trainer owns (and checkpoints) the RNG state.
    """

    def __init__(
        self,
        images: dict[str, torch.Tensor] | Sequence[torch.Tensor] | torch.Tensor,
        *,
        patch_size: int,
        degradation: Callable | None = None,
        augment: bool = True,
    ):
        if isinstance(images, dict):
            names, imgs = list(images), list(images.values())
        else:
            imgs = list(images)
            names = [str(i) for i in range(len(imgs))]
        if not imgs:
            raise ConfigError("PatchDataset: images is empty")
        if not (
            isinstance(patch_size, int) and not isinstance(patch_size, bool) and patch_size >= 1
        ):
            raise ConfigError(
                f"PatchDataset: patch_size must be a positive int, got {describe(patch_size)}"
            )
        if not all(isinstance(im, torch.Tensor) for im in imgs):
            kinds = sorted({type(im).__name__ for im in imgs})
            raise ShapeError(f"PatchDataset: images must be torch tensors [C, H, W], got {kinds}")
        chans = {im.shape[0] for im in imgs}
        if len(chans) != 1 or any(im.ndim != 3 for im in imgs):
            raise ShapeError(
                f"PatchDataset: images must all be [C, H, W] with one C, got channels {chans}"
            )
        if degradation is not None and not callable(degradation):
            hint = (
                " (a task name: pass make_degradation(name))"
                if isinstance(degradation, str)
                else ""
            )
            raise ConfigError(
                f"PatchDataset: degradation must be None or a callable deg(x, generator) -> y, "
                f"got {describe(degradation)}{hint}"
            )
        if not isinstance(augment, bool):  # a string "false" would read as True
            raise ConfigError(
                f"PatchDataset: augment must be True or False, got {describe(augment)}"
            )
        small = [n for n, im in zip(names, imgs, strict=True) if min(im.shape[-2:]) < patch_size]
        if small:
            smallest = min(min(im.shape[-2:]) for im in imgs)
            more = f" and {len(small) - 3} more" if len(small) > 3 else ""
            raise ConfigError(
                f"PatchDataset: patch_size={patch_size} larger than images {small[:3]}{more} "
                f"(smallest side {smallest})"
            )
        self.names, self.images = names, imgs
        self.patch_size = patch_size
        self.degradation = degradation
        self.augment = augment

    @property
    def channels(self) -> int:
        """Number of channels of every patch."""
        return self.images[0].shape[0]

    def sample_clean(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` clean random patches ``[n, C, P, P]`` in [0, 1]."""
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ConfigError(f"PatchDataset.sample: n must be a positive int, got {describe(n)}")
        P = self.patch_size
        out = []
        idx = torch.randint(len(self.images), (n,), generator=generator)
        for i in idx.tolist():
            im = self.images[i]
            h, w = im.shape[-2:]
            top = int(torch.randint(h - P + 1, (1,), generator=generator))
            left = int(torch.randint(w - P + 1, (1,), generator=generator))
            patch = im[:, top : top + P, left : left + P]
            if self.augment:
                k = int(torch.randint(8, (1,), generator=generator))
                patch = torch.rot90(patch, k % 4, dims=(1, 2))
                if k >= 4:
                    patch = patch.flip(2)
            out.append(patch)
        return torch.stack(out).contiguous()

    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of pairs ``(x, y)``, each ``[n, C, P, P]``."""
        x = self.sample_clean(n, generator)
        y = x if self.degradation is None else self.degradation(x, generator)
        return x, y

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """Endless iterator of ``(x, y)`` batches."""
        while True:
            yield self.sample(batch_size, generator)
