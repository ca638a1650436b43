"""Image files as users have them: orientation, bit depth, alpha, grey, CMYK, palette, metadata.

Every file here is written by the test itself; expected values come from how the file was made
(or from Pillow's own conversions), not from the code under test.
"""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from flowrestore.imageio import displayed_size, from_tensor, read_image, to_tensor, write_image

ORIENTATION, MAKE = 0x0112, 0x010F


def _png16(path, a: np.ndarray) -> None:
    """A 16-bit PNG written independently of the library (no filter, one IDAT)."""
    h, w = a.shape[:2]
    channels = 1 if a.ndim == 2 else a.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = a.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _srgb_icc() -> bytes:
    """An sRGB profile (its header holds the creation time: compare with the file's own copy)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def icc_of(path) -> bytes:
    """The ICC profile embedded in a file."""
    with Image.open(path) as im:
        return im.info["icc_profile"]


def _rotated_jpeg(path):
    """Stored 300x200 with a red block at the stored top-left; EXIF orientation 6 (90° CW)."""
    a = np.full((200, 300, 3), 40, np.uint8)
    a[:50, :80] = (255, 0, 0)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "TestCamera"
    Image.fromarray(a).save(path, quality=95, exif=exif.tobytes(), icc_profile=_srgb_icc())


def test_exif_orientation_is_applied_and_metadata_kept(tmp_path):
    src = tmp_path / "phone.jpg"
    _rotated_jpeg(src)
    assert displayed_size(src) == (200, 300)
    pic = read_image(src)
    assert pic.size == (200, 300) and pic.colour.shape == (300, 200, 3)
    # orientation 6 shows the stored top-left corner at the top-right
    assert pic.colour[:60, -40:, 0].mean() > 200 and pic.colour[:60, :40, 0].mean() < 100
    with Image.open(src) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(pic.colour, expected)
    out = tmp_path / "out.png"
    write_image(out, pic)
    with Image.open(out) as im:
        assert im.size == (200, 300)
        exif = im.getexif()
        assert exif.get(ORIENTATION) == 1 and exif.get(MAKE) == "TestCamera"
        assert im.info.get("icc_profile") == icc_of(src)


def test_sixteen_bit_grey_with_small_values_keeps_its_range(tmp_path):
    a = np.arange(24 * 20, dtype=np.uint16).reshape(20, 24) % 256  # every value <= 255
    src = tmp_path / "dark16.png"
    Image.fromarray(a).save(src)
    pic = read_image(src)
    assert pic.bits == 16 and pic.grey and np.array_equal(pic.colour, a)
    x = to_tensor(pic)
    assert x.shape == (3, 20, 24)
    assert float(x.max()) == pytest.approx(255 / 65535)  # dark, not 257x brighter
    out = tmp_path / "out.png"
    write_image(out, from_tensor(x, pic))
    with Image.open(out) as im:
        assert im.mode.startswith("I;16")
        assert np.array_equal(np.asarray(im).astype(np.int64), a.astype(np.int64))


@pytest.mark.parametrize("channels, height", [(2, 13), (3, 13), (4, 13), (3, 600)])
def test_sixteen_bit_colour_survives_a_round_trip(tmp_path, channels, height):
    """600 rows: the writer filters in blocks of 256 rows, each 'Up' filter from the row above."""
    rng = np.random.default_rng(channels)
    a = rng.integers(0, 65536, (height, 17, channels), dtype=np.uint16)
    src = tmp_path / "deep.png"
    _png16(src, a)
    pic = read_image(src)
    assert pic.bits == 16
    colour = a[..., :-1] if channels in (2, 4) else a
    colour = colour[..., 0] if channels == 2 else colour
    assert np.array_equal(pic.colour, colour)
    if channels in (2, 4):
        assert np.array_equal(pic.alpha, a[..., -1])
    # tensor round trip: within 1/65535
    back = from_tensor(to_tensor(pic), pic)
    assert np.abs(back.colour.astype(np.int64) - colour.astype(np.int64)).max() <= 1
    exif = Image.Exif()
    exif[MAKE] = "Scanner"
    back.exif, back.icc = exif.tobytes(), _srgb_icc()
    out = tmp_path / "out.png"
    write_image(out, back)
    again = read_image(out)
    assert again.bits == 16 and np.array_equal(again.colour, back.colour)
    with Image.open(out) as im:  # the 16-bit writer's eXIf and iCCP chunks, read by Pillow
        assert im.getexif().get(MAKE) == "Scanner" and im.info["icc_profile"] == back.icc
    if channels in (2, 4):
        assert np.array_equal(again.alpha, a[..., -1])


def test_rgba_alpha_is_kept_and_grey_stays_grey(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    assert pic.colour.shape == (10, 12, 3) and np.array_equal(pic.alpha, rgba[..., 3])
    out = from_tensor(torch.rand(3, 10, 12), pic)
    assert np.array_equal(out.alpha, rgba[..., 3])
    write_image(tmp_path / "o.png", out)
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    grey = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    g = read_image(tmp_path / "g.png")
    write_image(tmp_path / "go.png", from_tensor(to_tensor(g), g))
    with Image.open(tmp_path / "go.png") as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), grey)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_colour_key_becomes_an_alpha(tmp_path, mode):
    """A grey or RGB PNG with a tRNS colour key: the keyed pixels are transparent, the rest
    opaque, and the colour is unchanged."""
    rng = np.random.default_rng(3)
    shape = (9, 11) if mode == "L" else (9, 11, 3)
    a = rng.integers(0, 4, shape, dtype=np.uint8) * 60
    key = 60 if mode == "L" else (60, 60, 60)
    Image.fromarray(a, mode).save(tmp_path / "k.png", transparency=key)
    pic = read_image(tmp_path / "k.png")
    keyed = a == 60 if mode == "L" else (a == 60).all(-1)
    assert keyed.any() and not keyed.all()
    assert np.array_equal(pic.alpha, np.where(keyed, 0, 255).astype(np.uint8))
    assert np.array_equal(pic.colour, a) and pic.grey == (mode == "L")


def test_cmyk_palette_and_bilevel_become_sensible_modes(tmp_path):
    rng = np.random.default_rng(1)
    cmyk = Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=95)
    pic = read_image(tmp_path / "c.jpg")
    with Image.open(tmp_path / "c.jpg") as im:
        assert np.array_equal(pic.colour, np.asarray(im.convert("RGB")))
    assert pic.alpha is None and any("CMYK" in n for n in pic.notes)

    pal = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).quantize(16)
    pal.save(tmp_path / "p.png")
    pic = read_image(tmp_path / "p.png")
    assert pic.alpha is None and np.array_equal(pic.colour, np.asarray(pal.convert("RGB")))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    pic = read_image(tmp_path / "pt.png")
    index = np.asarray(pal)
    assert np.array_equal(pic.alpha == 0, index == 0)

    Image.fromarray(rng.integers(0, 2, (8, 8), dtype=np.uint8) * 255).convert("1").save(
        tmp_path / "b.png"
    )
    pic = read_image(tmp_path / "b.png")
    assert pic.grey and pic.bits == 8 and set(np.unique(pic.colour)) <= {0, 255}


def test_float_and_sixteen_bit_tiff(tmp_path):
    f = np.linspace(-0.5, 1.5, 40, dtype=np.float32).reshape(5, 8)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    pic = read_image(tmp_path / "f.tif")
    assert pic.bits == 16 and pic.grey
    assert np.allclose(pic.colour / 65535, np.clip(f, 0, 1), atol=1 / 65535)
    import tifffile

    a = np.random.default_rng(2).integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", a, photometric="rgb")
    pic = read_image(tmp_path / "rgb16.tif")
    assert pic.bits == 16 and np.array_equal(pic.colour, a)


def test_superresolution_resizes_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    out = from_tensor(torch.zeros(3, 16, 16), pic)
    assert out.alpha.shape == (16, 16) and np.all(out.alpha == 200)


def test_a_grey_picture_takes_the_mean_of_the_restored_channels_and_its_text_chunks(tmp_path):
    """A grey file is restored on three equal channels; writing it back takes their mean (a model
    may move them apart), rounded to the nearest level. PNG text chunks are written (8, 16 bits)."""
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "g.png")
    like = read_image(tmp_path / "g.png")
    x = torch.stack([torch.full((4, 5), v) for v in (0.2, 0.4, 0.61)])
    out = from_tensor(x, like)
    assert out.grey and np.all(out.colour == round((0.2 + 0.4 + 0.61) / 3 * 255))
    for bits in (8, 16):
        pic = from_tensor(x, like) if bits == 8 else from_tensor(x, _replace_bits(like))
        pic.text = {"Software": "flowrestore", "flowrestore restored from": "g.png"}
        write_image(tmp_path / f"o{bits}.png", pic)
        with Image.open(tmp_path / f"o{bits}.png") as im:
            assert im.info["flowrestore restored from"] == "g.png"


def _replace_bits(pic):
    from dataclasses import replace

    return replace(pic, colour=pic.colour.astype(np.uint16), bits=16)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_displayed_size_swaps_width_and_height_for_orientations_5_to_8(tmp_path, orientation):
    """EXIF orientations 5–8 turn the picture a quarter (with or without a mirror): the displayed
    size is the stored one transposed, as Pillow's ``exif_transpose`` lays it."""
    src = tmp_path / "stored.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(src, exif=exif.tobytes())
    with Image.open(src) as im:
        expected = ImageOps.exif_transpose(im).size
    assert displayed_size(src) == expected == ((20, 30) if orientation >= 5 else (30, 20))


def test_the_16_bit_png_header_follows_the_png_specification(tmp_path):
    """IHDR of a 16-bit PNG: width, height, bit depth 16, the channel count's colour type, and
    compression, filter and interlace methods 0 (the only ones PNG defines for the first two;
    a decoder may refuse anything else even where Pillow does not)."""
    out = tmp_path / "out.png"
    pic = read_image_from_array(tmp_path, np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3))
    write_image(out, pic)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">IIBBBBB", data[16:29]) == (5, 4, 16, 2, 0, 0, 0)
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])


def read_image_from_array(tmp_path, a: np.ndarray):
    """``a`` (16-bit) as the library reads it back from an independently written PNG."""
    src = tmp_path / "src.png"
    _png16(src, a)
    return read_image(src)


def test_gif_and_dds_read_their_first_frame(tmp_path):
    """GIF and DDS decoders name no raw mode (ints in the tile's arguments); an animated GIF
    reads as its first frame, in the palette's colours."""
    rng = np.random.default_rng(4)
    frames = [
        Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).quantize(8)
        for _ in range(2)
    ]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    pic = read_image(tmp_path / "a.gif")
    with Image.open(tmp_path / "a.gif") as im:
        first = np.asarray(im.convert("RGB"))
    assert pic.bits == 8 and pic.alpha is None and np.array_equal(pic.colour, first)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.dds")
    pic = read_image(tmp_path / "a.dds")
    with Image.open(tmp_path / "a.dds") as im:
        want = np.asarray(im.convert("RGBA"))
    assert np.array_equal(pic.colour, want[..., :3]) and np.array_equal(pic.alpha, want[..., 3])
