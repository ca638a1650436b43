"""Read and write image files as users have them, for :mod:`flowrestore.restore`.

:func:`read_image` returns a :class:`Picture`: the pixels as displayed (EXIF orientation applied),
the colour channels and the alpha channel apart, the bit depth, and the metadata to carry over.
:func:`write_image` writes a PNG (atomically: a temporary file, then a rename).

* **Value range from the mode, never from the values.** 8-bit modes are divided by 255, 16-bit
  modes (``I;16*``, and 16-bit RGB/RGBA/LA PNG and TIFF) by 65535; ``I`` (32-bit integer) is
  taken as 16-bit data, ``F`` (float) as values in [0, 1]; values beyond are clipped, with a
  note saying how many. A 16-bit file whose values are all small stays dark.
* **16 bits in, 16 bits out.** Pillow decodes 16-bit colour files to 8 bits; here the file is
  decoded a second time with the other byte order (or, for grey+alpha, as raw bytes) to recover
  the low bytes. 16-bit (and float) inputs are written as 16-bit PNG by :func:`_write_png16`.
* **Channels.** Grey stays grey (1 channel), colour is RGB; an alpha channel is kept apart and
  re-attached unchanged. Palette images become RGB (RGBA when they have transparency); CMYK
  becomes RGB through its embedded ICC profile when there is one (and the output carries an sRGB
  profile), else Pillow's conversion; bilevel (``1``) becomes 8-bit grey. Only the first frame
  of an animation or multi-page file is read (a note says how many there are).
* **Metadata.** EXIF (JPEG, PNG, WebP) is kept with its orientation reset to 1 (the pixels are
  already rotated); the ICC profile is kept (except for CMYK, see above). TIFF tags are not
  carried.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from flowrestore.errors import ConfigError, NonFiniteError, ShapeError, describe
from flowrestore.paths import write_atomic

__all__ = [
    "Picture",
    "read_image",
    "write_image",
    "displayed_size",
    "to_tensor",
    "from_tensor",
    "to_grey",
]

ORIENTATION = 0x0112
_GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_SWAP = {";16B": ";16L", ";16L": ";16B", ";16N": ";16B" if sys.byteorder == "little" else ";16L"}


@dataclass
class Picture:
    """A decoded image: ``colour`` ``[H, W]`` (grey) or ``[H, W, 3]``, ``alpha`` ``[H, W]`` or None.

    Arrays are ``uint8`` (``bits=8``) or ``uint16`` (``bits=16``), as displayed (orientation
    applied). ``exif`` (orientation reset to 1) and ``icc`` are the bytes to write back;
    ``mode`` is the file's Pillow mode; ``notes`` say what was converted; ``text``: PNG text
    chunks (keyword → Latin-1 text) :func:`write_image` adds (not read from files).
    """

    colour: np.ndarray
    alpha: np.ndarray | None
    bits: int
    exif: bytes | None = None
    icc: bytes | None = None
    mode: str = ""
    notes: list[str] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)

    @property
    def grey(self) -> bool:
        """True for a one-channel (greyscale) picture."""
        return self.colour.ndim == 2

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as displayed."""
        return self.colour.shape[1], self.colour.shape[0]


def _open(path):
    from PIL import Image

    im = Image.open(path)
    if im.format == "TIFF" and im.tag_v2.get(ORIENTATION) in (5, 6, 7, 8):
        # Pillow 13 memory-maps an uncompressed L/P/RGBA/I;16 TIFF with its turned size (the
        # pixels come out scrambled); from memory it decodes the file instead
        im.close()
        im = Image.open(io.BytesIO(Path(path).read_bytes()))
    return im


def _orientation(im) -> int:
    try:
        value = int(im.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 (a damaged EXIF block must not stop the restoration)
        return 1
    return value if 1 <= value <= 8 else 1


def displayed_size(path) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF orientation 5-8 swaps them), from the header only."""
    with _open(path) as im:
        w, h = im.size
        if im.format == "TIFF":  # Pillow >= 11 reports (and applies) a TIFF's orientation itself
            w, h = im.tag_v2.get(256, w), im.tag_v2.get(257, h)
        return (h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h)


def _exif_bytes(im) -> bytes | None:
    raw = im.info.get("exif")
    if not raw:
        return None
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(raw)
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        return exif.tobytes()
    except Exception:  # noqa: BLE001 (an unparsable EXIF block is dropped, not fatal)
        return None


def _transpose(im, orientation: int):
    from PIL import Image

    methods = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
    return im.transpose(methods[orientation]) if orientation in methods else im


def _low_bytes(path, rawmode: str, mode: str, orientation: int) -> np.ndarray | None:
    """The low bytes of a 16-bit colour file that Pillow decodes to its high bytes, or None.

    RGB/RGBA: decode again with the other byte order (Pillow keeps the high byte of each sample,
    which is then the file's low byte). Grey+alpha: decode the 4 bytes of a pixel as RGBA.
    """
    if rawmode == "LA;16B":  # 4 bytes per pixel: L hi, L lo, A hi, A lo
        new_raw, new_mode, pick = "RGBA", "RGBA", [1, 3]
    elif rawmode[-4:] in _SWAP and rawmode[:-4] in ("RGB", "RGBA"):
        new_raw, new_mode, pick = rawmode[:-4] + _SWAP[rawmode[-4:]], mode, None
    else:
        return None
    try:
        with _open(path) as im:
            tile = im.tile[0]
            args = tile.args
            args = (new_raw, *args[1:]) if isinstance(args, tuple) else new_raw
            im.tile = [tile._replace(args=args)]
            im._mode = new_mode  # noqa: SLF001 (decode the same bytes into a wider target)
            im.load()
            arr = np.array(_transpose(im, orientation))
    except Exception:  # noqa: BLE001 (fall back to the 8 bits Pillow gives)
        return None
    return arr[..., pick] if pick is not None else arr


def _rawmode(im) -> str:
    """The raw mode of the first tile (``"RGB;16B"``...), or ``""`` where the decoder's arguments
    name none (GIF and DDS pass ints there)."""
    args = im.tile[0].args if im.tile else None
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def _frames(im) -> int:
    """How many frames or pages ``im`` has (1 when unknown; an MPO's others, previews or depth
    maps of a phone photo, are not counted)."""
    if im.format == "MPO":
        return 1
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 (a damaged later frame: the first is still read)
        return 1


def read_image(path) -> Picture:
    """Decode ``path`` (any format Pillow reads) into a :class:`Picture`; raises if corrupt."""
    path = Path(path)
    with _open(path) as im:
        rawmode = _rawmode(im)  # before getexif(), which may decode
        frames = _frames(im)
        orientation = _orientation(im)
        exif, icc, mode = _exif_bytes(im), im.info.get("icc_profile"), im.mode
        has_transparency = "transparency" in im.info
        wide = rawmode.endswith(("16B", "16L", "16N")) or mode.startswith("I")
        key = im.info.get("transparency") if wide else None  # a 16-bit colour key (PNG tRNS)
        im.load()
        if _orientation(im) == 1:  # the decoder applied it (Pillow >= 11 for TIFF)
            orientation = 1
        notes: list[str] = []
        if frames > 1:  # the others are not restored: said, not silent
            notes.append(f"only the first of {frames} frames/pages restored")
        if mode == "CMYK":
            im, icc = _cmyk_to_rgb(im, icc, notes)
        elif mode in ("P", "PA"):
            im = im.convert("RGBA" if mode == "PA" or has_transparency else "RGB")
            notes.append(f"palette image restored as {im.mode}")
        elif mode in ("L", "RGB") and has_transparency and key is None:  # an 8-bit colour key
            im = im.convert(mode + "A" if mode == "L" else "RGBA")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("La", "RGBa"):
            im = im.convert(mode[:-1] + "A")
        elif mode not in _GREY_MODES + ("RGB", "RGBA"):
            im = im.convert("RGBA" if mode.endswith("A") else "RGB")  # not LAB
            notes.append(f"{mode} converted to {im.mode}")
        im = _transpose(im, orientation)
        arr = np.array(im)  # a writable copy (torch.from_numpy warns on read-only arrays)
        out_mode = im.mode
    if out_mode.startswith("I;16") or out_mode == "I":
        outside = int(((arr < 0) | (arr > 65535)).sum())
        if outside:  # 32-bit or signed data beyond 16 bits: said, not silent
            notes.append(f"{outside} value(s) outside 0..65535 clipped")
        grey = np.clip(arr, 0, 65535).astype(np.uint16)
        return Picture(grey, _key_alpha(grey, key, 16), 16, exif, icc, mode, notes)
    if out_mode == "F":
        bad = int((~np.isfinite(arr)).sum())
        if bad:  # said, not silent
            notes.append(f"{bad} NaN/infinite value(s) read as 0 (NaN) or clipped (inf)")
        with np.errstate(invalid="ignore"):
            outside = int(((arr < 0) | (arr > 1)).sum()) - int(np.isinf(arr).sum())
        if outside:  # an HDR or signed float file: its highlights are lost, so say so
            notes.append(f"{outside} finite value(s) outside [0, 1] clipped")
        a16 = np.round(np.clip(np.nan_to_num(arr), 0, 1) * 65535).astype(np.uint16)
        return Picture(a16, None, 16, exif, icc, mode, notes + ["float image written as 16-bit"])
    bits = 8
    if rawmode.endswith(("16B", "16L", "16N")) and out_mode in ("RGB", "RGBA"):
        if rawmode == "LA;16B":  # Pillow decodes 16-bit grey+alpha to RGBA (high bytes)
            arr, out_mode = arr[..., [0, 3]], "LA"
        low = _low_bytes(path, rawmode, out_mode, orientation)
        if low is not None:
            arr, bits = (arr.astype(np.uint16) << 8) | low.astype(np.uint16), 16
        else:
            notes.append("16-bit colour read at 8 bits (Pillow could not decode the low bytes)")
    dtype = np.uint16 if bits == 16 else np.uint8
    arr = arr.astype(dtype, copy=False)
    if out_mode == "L":
        return Picture(arr, None, bits, exif, icc, mode, notes)
    if out_mode == "LA":
        return Picture(arr[..., 0].copy(), arr[..., 1].copy(), bits, exif, icc, mode, notes)
    if out_mode == "RGB":
        return Picture(arr, _key_alpha(arr, key, bits), bits, exif, icc, mode, notes)
    if out_mode == "RGBA":
        return Picture(arr[..., :3].copy(), arr[..., 3].copy(), bits, exif, icc, mode, notes)
    raise ShapeError(f"read_image: unsupported image mode {describe(out_mode)} in {path}")


def _key_alpha(arr: np.ndarray, key, bits: int) -> np.ndarray | None:
    """The alpha of a 16-bit colour key (PNG tRNS): 0 where a pixel is ``key``, else opaque."""
    if key is None:
        return None
    key = np.asarray(key, np.int64) >> (16 - bits)  # compared at the depth read
    hit = arr == key if arr.ndim == 2 else (arr == key).all(axis=-1)
    return np.where(hit, 0, 65535 if bits == 16 else 255).astype(arr.dtype)


def _cmyk_to_rgb(im, icc, notes):
    """CMYK → RGB through the embedded profile (output tagged sRGB), else Pillow's conversion."""
    if icc:
        try:
            from PIL import ImageCms

            srgb = ImageCms.createProfile("sRGB")
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            rgb = ImageCms.profileToProfile(im, src, srgb, outputMode="RGB")
            notes.append("CMYK converted to sRGB through its ICC profile")
            return rgb, ImageCms.ImageCmsProfile(srgb).tobytes()
        except Exception:  # noqa: BLE001 (no littlecms or a broken profile: plain conversion)
            pass
    notes.append("CMYK converted to RGB (no usable ICC profile)")
    return im.convert("RGB"), None


def to_tensor(pic: Picture, channels: int = 3) -> torch.Tensor:
    """The colour channels as float32 ``[channels, H, W]`` in [0, 1].

    ``channels=3`` (colour models): grey is repeated on 3 channels. ``channels=1`` (grey models,
    e.g. trained with ``--channels 1``): a grey picture as ``[1, H, W]``; a colour picture is
    refused (convert it first with :func:`to_grey`).
    """
    if channels not in (1, 3):
        raise ConfigError(f"to_tensor: channels must be 1 or 3, got {describe(channels)}")
    if channels == 1 and not pic.grey:
        raise ShapeError(
            f"to_tensor: channels=1 needs a grey picture, got colour {describe(pic.colour)}; "
            f"convert it with to_grey"
        )
    scale = 65535.0 if pic.bits == 16 else 255.0
    x = torch.from_numpy(np.ascontiguousarray(pic.colour))
    x = x.to(torch.float32).div_(scale)
    if pic.grey:
        return x.unsqueeze(0).expand(channels, -1, -1)
    return x.permute(2, 0, 1)


#: Luminance weights of :func:`to_grey` (ITU-R BT.601, as Pillow's ``convert("L")``).
LUMA = (0.299, 0.587, 0.114)


def to_grey(pic: Picture) -> Picture:
    """``pic`` as a grey picture: colour becomes its luminance (:data:`LUMA`) at the same bit
    depth, with a note (the ICC profile, an RGB one, is dropped); alpha, EXIF and the rest are
    kept. A grey picture comes back unchanged."""
    if pic.grey:
        return pic
    top = 65535 if pic.bits == 16 else 255
    y = np.tensordot(pic.colour.astype(np.float64), np.array(LUMA), axes=([2], [0]))
    grey = np.clip(np.round(y), 0, top).astype(pic.colour.dtype)
    notes = [*pic.notes, "colour image restored as grey (luminance) by a 1-channel model"]
    return replace(pic, colour=np.ascontiguousarray(grey), icc=None, notes=notes)


def from_tensor(x: torch.Tensor, like: Picture) -> Picture:
    """A :class:`Picture` with ``like``'s depth, channels and metadata and the pixels of ``x``.

    ``x`` is ``[3, H, W]`` in [0, 1] (clamped; grey pictures take the channel mean), or
    ``[1, H, W]`` for a grey ``like``; NaN or infinite values raise :class:`NonFiniteError`.
    When ``x`` is larger than ``like`` (super-resolution), the alpha channel is resized
    bicubically.
    """
    if x.ndim != 3 or x.shape[0] not in ((1, 3) if like.grey else (3,)):
        want = "[1, H, W] or [3, H, W]" if like.grey else "[3, H, W] (a colour picture)"
        raise ShapeError(f"from_tensor: x must be {want}, got {describe(x)}")
    scale = 65535.0 if like.bits == 16 else 255.0
    dtype = torch.int32 if like.bits == 16 else torch.uint8
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():  # NaN would become black pixels, silently
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(f"from_tensor: x has {bad} NaN/infinite value(s) of {x.numel()}")
    x = x.mean(0) if like.grey else x.permute(1, 2, 0)
    q = x.clamp(0, 1).mul_(scale).round_().to(dtype)  # one float copy, then in place
    colour = q.numpy().astype(np.uint16 if like.bits == 16 else np.uint8, copy=False)
    alpha = like.alpha
    h, w = colour.shape[:2]
    if alpha is not None and alpha.shape != (h, w):
        a = torch.from_numpy(alpha.astype(np.float32))[None, None] / scale
        a = torch.nn.functional.interpolate(a, size=(h, w), mode="bicubic", align_corners=False)
        alpha = a[0, 0].clamp(0, 1).mul(scale).round_().to(dtype).numpy()
        alpha = alpha.astype(like.alpha.dtype, copy=False)
    return replace(like, colour=np.ascontiguousarray(colour), alpha=alpha, notes=list(like.notes))


def write_image(path, pic: Picture) -> None:
    """Write ``pic`` as PNG to ``path`` (8- or 16-bit, with alpha, EXIF, ICC and ``pic.text``);
    atomic."""
    path = Path(path)
    if pic.bits not in (8, 16):
        raise ConfigError(f"write_image: bits must be 8 or 16, got {describe(pic.bits)}")
    arr = pic.colour if pic.alpha is None else np.dstack([pic.colour, pic.alpha])

    def fill(f) -> None:
        if pic.bits == 16:
            _write_png16(f, arr, exif=pic.exif, icc=pic.icc, text=pic.text)
            return
        from PIL import Image, PngImagePlugin

        im = Image.fromarray(np.ascontiguousarray(arr))
        kw = {k: v for k, v in (("exif", pic.exif), ("icc_profile", pic.icc)) if v}
        if pic.text:
            info = PngImagePlugin.PngInfo()
            for key, value in pic.text.items():
                info.add_text(key, value)
            kw["pnginfo"] = info
        im.save(f, format="PNG", **kw)

    write_atomic(path, fill)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png16(
    path, arr: np.ndarray, *, exif: bytes | None, icc: bytes | None, text: dict | None = None
) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by the channel count), rows 'Up'-filtered,
    written to ``path`` (a file name or an open binary file)."""
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(arr, dtype=">u2").view(np.uint8).reshape(h, w * channels * 2)
    comp = zlib.compressobj(6)
    with open(path, "wb") if isinstance(path, (str, os.PathLike)) else nullcontext(path) as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)))
        if icc:
            f.write(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
        if exif:
            f.write(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        for key, value in (text or {}).items():
            f.write(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
        block = 256
        for top in range(0, h, block):
            cur = rows[top : top + block]
            if top:
                prev = rows[top - 1 : top - 1 + len(cur)]
            else:
                prev = np.vstack([np.zeros_like(cur[:1]), cur[:-1]])
            up = cur - prev  # uint8 arithmetic wraps modulo 256, as the 'Up' filter wants
            filtered = np.hstack([np.full((len(cur), 1), 2, np.uint8), up])
            data = comp.compress(filtered.tobytes())
            if data:
                f.write(_chunk(b"IDAT", data))
        f.write(_chunk(b"IDAT", comp.flush()))
        f.write(_chunk(b"IEND", b""))
