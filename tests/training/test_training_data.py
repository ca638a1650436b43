"""Paired data: split by image, patch shape and range, degradations change x, reproducibly."""

import pytest
import torch

from flowrestore.errors import ConfigError, ShapeError
from flowrestore.training.data import (
    HELDOUT_IMAGES,
    TASKS,
    TRAINING_IMAGES,
    PatchDataset,
    gaussian_blur,
    heldout_images,
    lfw_faces,
    load_image,
    make_degradation,
    make_family,
    training_images,
)


@pytest.fixture(scope="module")
def train_imgs():
    return training_images()


def test_split_is_by_image(train_imgs):
    assert not set(HELDOUT_IMAGES) & set(TRAINING_IMAGES)
    held = heldout_images()
    assert set(held) == set(HELDOUT_IMAGES) and set(train_imgs) == set(TRAINING_IMAGES)
    # No held-out photo appears (as pixels) in the training set, e.g. under another name.
    for h in held.values():
        for t in train_imgs.values():
            assert h.shape != t.shape or not torch.equal(h, t)
    a, b = lfw_faces("train"), lfw_faces("heldout")
    assert a.shape == (80, 3, 25, 25) and b.shape == (20, 3, 25, 25)


@pytest.mark.parametrize("channels", [1, 3])
def test_load_image_channels_and_range(channels):
    for name in ("camera", "astronaut", "horse"):
        im = load_image(name, channels=channels)
        assert im.dtype == torch.float32 and im.shape[0] == channels
        assert float(im.min()) >= 0 and float(im.max()) <= 1
    with pytest.raises(ConfigError, match="no scikit-image photo"):
        load_image("not_a_photo")


def test_patches_shape_range_reproducible(train_imgs):
    ds = PatchDataset(train_imgs, patch_size=24, degradation=make_degradation("deblur"))
    x, y = ds.sample(5, torch.Generator().manual_seed(0))
    x2, y2 = ds.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 3, 24, 24)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = ds.sample(5, torch.Generator().manual_seed(1))
    assert not torch.equal(x, x3)
    with pytest.raises(ConfigError, match="larger than images"):
        PatchDataset(train_imgs, patch_size=200)


@pytest.mark.parametrize("task", TASKS)
def test_each_degradation_changes_image_and_is_reproducible(train_imgs, task):
    ds = PatchDataset(train_imgs, patch_size=32)
    x = ds.sample_clean(4, torch.Generator().manual_seed(5))
    kw = {"noise": 0.01} if task in ("sr4", "jpeg") else {}
    deg = make_degradation(task, **kw)
    y1 = deg(x, torch.Generator().manual_seed(9))
    y2 = deg(x, torch.Generator().manual_seed(9))
    assert y1.shape == x.shape and torch.equal(y1, y2)
    assert float((y1 - x).abs().mean()) > 1e-3
    assert not torch.equal(y1, deg(x, torch.Generator().manual_seed(10)))


def test_degradation_properties():
    c = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(c, 2.0), c)  # blur keeps constants
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    blurred = gaussian_blur(x, torch.tensor([0.0, 1.5]))
    assert torch.allclose(blurred[0], x[0], atol=1e-6) and not torch.allclose(blurred[1], x[1])
    sr = make_degradation("sr4", upsample="nearest")(x)
    assert torch.equal(sr[..., ::4, ::4], torch.nn.functional.avg_pool2d(x, 4))
    fam = make_family("deblur")
    assert torch.allclose(fam(x, torch.zeros(2)), x, atol=1e-6)
    assert torch.allclose(fam(x, torch.ones(2)), make_degradation("deblur", noise=0.0)(x))
    jf = make_family("jpeg", quality=10)
    assert torch.equal(jf(x, torch.zeros(2)), x)
    with pytest.raises(ConfigError, match="unknown parameters"):
        make_degradation("deblur", quality=3)
    with pytest.raises(ConfigError, match="task must be"):
        make_degradation("inpaint")
    with pytest.raises(ShapeError, match="divisible"):
        make_degradation("sr4")(torch.rand(1, 3, 10, 10))


@pytest.mark.parametrize("task", TASKS)
def test_family_is_the_documented_path_with_an_exact_time_derivative(task):
    """make_family gives A_0 = I, A_1 = the task's noiseless degradation and in between the
    documented path — deblur: a blur of std t·blur_sigma (on A_1's kernel support); the others:
    (1 − t) x + t A x — and time_derivative is ∂_t A_t exactly (central difference in float64)."""
    from flowrestore.degradations import GaussianBlur

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fam = make_family(task)
    a1 = make_degradation(task, **{"sigma" if task == "denoise" else "noise": 0.0})(x)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    if task == "deblur":
        size = GaussianBlur(2.0).kernel_size
        want = torch.cat(
            [
                GaussianBlur(2.0 * float(tb), kernel_size=size)(x[i : i + 1])
                for i, tb in enumerate(t)
            ]
        )
    else:
        want = (1 - t)[:, None, None, None] * x + t[:, None, None, None] * a1
    assert torch.allclose(fam(x, t), want, atol=1e-12, rtol=0)
    assert torch.allclose(fam(x, torch.zeros(2, dtype=torch.float64)), x, atol=1e-12, rtol=0)
    assert torch.allclose(fam(x, torch.ones(2, dtype=torch.float64)), a1, atol=1e-12, rtol=0)
    h = 1e-5
    fd = (fam(x, t + h) - fam(x, t - h)) / (2 * h)
    assert torch.allclose(fam.time_derivative(x, t), fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("task,name", [("deblur", "noise"), ("sr4", "noise"), ("denoise", "sigma")])
def test_degradation_noise_has_the_stated_std(task, name):
    """y − A x is Gaussian noise of the stated std (98 304 draws: the sample std is within 1 %)."""
    x = torch.full((8, 3, 64, 64), 0.5)
    clean = make_degradation(task, **{name: 0.0})(x)
    y = make_degradation(task, **{name: 0.05})(x, torch.Generator().manual_seed(0))
    assert float((y - clean).std()) == pytest.approx(0.05, rel=0.01)
    assert abs(float((y - clean).mean())) < 0.001


def test_patches_draw_every_crop_position_and_orientation_uniformly():
    """Crop positions are uniform over every valid one (an image of exactly the patch size has
    one), and ``augment`` draws the 8 flips/rotations uniformly (each 1/8 of 8000 draws, within
    5 binomial standard deviations)."""
    im = torch.arange(4.0).reshape(1, 2, 2)
    ds = PatchDataset([im], patch_size=2)
    out = ds.sample_clean(8000, generator=torch.Generator().manual_seed(0))
    keys = [tuple(int(v) for v in p.flatten()) for p in out]
    counts = {k: keys.count(k) for k in set(keys)}
    assert len(counts) == 8  # the dihedral group of the square
    sd = (8000 * (1 / 8) * (7 / 8)) ** 0.5
    assert all(abs(c - 1000) < 5 * sd for c in counts.values()), counts
    plain = PatchDataset([im], patch_size=2, augment=False).sample_clean(3)
    assert torch.equal(plain, im.expand(3, 1, 2, 2))
    # a 3×4 image has 2 × 3 positions for a 2×2 patch, each drawn 1/6 of the time
    big = torch.arange(12.0).reshape(1, 3, 4)
    tops = PatchDataset([big], patch_size=2, augment=False).sample_clean(6000)[:, 0, 0, 0]
    counts = torch.bincount(tops.long(), minlength=12)[[0, 1, 2, 4, 5, 6]]
    sd = (6000 * (1 / 6) * (5 / 6)) ** 0.5
    assert int(counts.sum()) == 6000 and bool(((counts - 1000).abs() < 5 * sd).all()), counts


def test_an_rgba_photo_loses_its_alpha_not_its_colour():
    """A photo with an alpha channel (H×W×4) becomes its 3 colour channels."""
    import numpy as np

    from flowrestore.training.data import _to_tensor

    rgba = np.zeros((5, 7, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    out = _to_tensor(rgba, 3)
    assert out.shape == (3, 5, 7)
    assert torch.equal(out[0], torch.ones(5, 7)) and float(out[1:].abs().max()) == 0
