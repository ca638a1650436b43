"""Second review of the degradation operators: each test fails without the fix it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowrestore.degradations import (
    JPEG,
    AdditiveGaussianNoise,
    Blur,
    Diagonal,
    Downsample,
    FunctionFamily,
    GaussianBlur,
    GaussianBlurFamily,
    Inpainting,
    MotionBlur,
    block_average,
    motion_kernel,
)
from flowrestore.errors import ArgumentTypeError, ConfigError
from flowrestore.schedules import Linear


@pytest.mark.parametrize(
    "op",
    [
        GaussianBlur(1.0),
        Blur(torch.ones(3, 3) / 9),
        Downsample(2),
        GaussianBlurFamily(width=Linear(0.3, 1.0), kernel_size=3).at(0.5),
    ],
    ids=["gaussian", "blur", "downsample", "blur-family"],
)
def test_an_integer_image_is_refused_not_blurred_to_zeros(op):
    # GaussianBlur cast its kernel (every weight < 1) to the image's int64: a constant 100 image
    # came back all 0; Downsample floored the block means; Blur raised an untyped RuntimeError
    x = torch.full((1, 1, 8, 8), 100, dtype=torch.long)
    with pytest.raises(ArgumentTypeError, match="x must be a floating-point tensor"):
        op(x)
    with pytest.raises(ArgumentTypeError, match="must be a floating-point tensor"):
        op.A_adjoint(x[..., :4, :4] if isinstance(op, Downsample) else x)


def test_jpeg_refuses_an_8_bit_image_and_passes_an_empty_batch():
    # a uint8 image of 200s was clipped to [0, 1] and came back as float 1.0 everywhere
    with pytest.raises(ArgumentTypeError, match="floating-point"):
        JPEG(90)(torch.full((1, 3, 8, 8), 200, dtype=torch.uint8))
    # a batch of no images raised numpy's untyped "need at least one array to stack"
    empty = torch.zeros(0, 3, 8, 8, dtype=torch.float64)
    out = JPEG(90)(empty)
    assert out.shape == empty.shape and out.dtype == torch.float64


@pytest.mark.parametrize("bad", [True, False, 1.0, "1"])
def test_jpeg_refuses_a_bool_or_float_subsampling(bad):
    # True == 1 and 1.0 == 1 passed the membership test in (0, 1, 2)
    with pytest.raises(ConfigError, match="subsampling"):
        JPEG(50, subsampling=bad)


def test_numpy_scalars_are_numbers():
    # np.float32 (not a float subclass) and numpy ints were refused with "must be a float"
    x = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    assert torch.allclose(GaussianBlur(np.float32(1.5))(x), GaussianBlur(1.5)(x))
    assert torch.allclose(Diagonal(np.float32(0.5))(x), 0.5 * x)
    assert GaussianBlur(1.0, kernel_size=np.int64(5)).kernel_size == 5
    assert JPEG(np.int64(50)).quality == 50
    assert AdditiveGaussianNoise(np.float32(0.0))(x).equal(x)
    assert Downsample(np.int64(3))(x).shape == (1, 1, 3, 3)
    k = motion_kernel(np.int64(5), np.float32(0.5), batch=np.int64(2))
    assert k.shape == (2, 5, 5)
    from flowrestore.degradations import DownsampleFamily, InpaintingFamily

    assert InpaintingFamily(size=2.0, power=np.float32(3.0)).power == 3.0
    assert GaussianBlurFamily(width=1.0, kernel_size=np.int64(5)).kernel_size == 5
    assert DownsampleFamily(factor=np.int64(3))(x, 1.0).shape == x.shape


@pytest.mark.parametrize("make", [Diagonal, Inpainting, Blur], ids=["diag", "mask", "kernel"])
def test_a_complex_scale_mask_or_kernel_is_refused(make):
    # the imaginary part was dropped (with only a torch UserWarning) when the operator was applied
    with pytest.raises(ConfigError, match="real tensor"):
        make(torch.ones(3, 3, dtype=torch.complex64))


@pytest.mark.parametrize("bad", [torch.tensor([]), torch.tensor(True), torch.tensor([1j])])
def test_gaussian_blur_refuses_an_empty_bool_or_complex_width(bad):
    # an empty width raised an untyped RuntimeError from max(); a bool tensor blurred with width 1
    with pytest.raises(ConfigError, match="width"):
        GaussianBlur(bad)


def test_noise_refuses_a_bool_std_tensor():
    with pytest.raises(ConfigError, match="std"):
        AdditiveGaussianNoise(torch.tensor(True))


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, None])
def test_block_average_validates_its_factor(bad):
    # factor 0 raised ZeroDivisionError, 2.0 / True an untyped TypeError from avg_pool2d
    with pytest.raises(ConfigError, match="factor"):
        block_average(torch.rand(1, 1, 4, 4), bad)


def test_block_average_is_the_block_mean():
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    want = torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5]], dtype=torch.float64)
    want = torch.cat([want, want + 8]).reshape(1, 1, 4, 4)
    assert torch.equal(block_average(x, 2), want)


@pytest.mark.parametrize("bad", [torch.int64, torch.bool, "float32", np.float32])
def test_motion_kernel_refuses_a_dtype_that_is_not_a_floating_torch_dtype(bad):
    # torch.int64 rounded every weight (each < 1) to 0: a kernel summing to 0, not 1
    with pytest.raises(ConfigError, match="dtype"):
        motion_kernel(5, 0.5, dtype=bad)


def test_motion_blur_refuses_a_kernel_off_the_simplex():
    # MotionBlur(torch.ones(3, 3)) multiplied the image by 9; a negative kernel was accepted
    for bad in (torch.ones(3, 3), -torch.ones(3, 3) / 9, torch.tensor([[0.0, 2.0, -1.0]] * 3) / 3):
        with pytest.raises(ConfigError, match="simplex"):
            MotionBlur(bad)
    per_sample = torch.stack([torch.ones(3, 3) / 9, torch.ones(3, 3) / 4])
    with pytest.raises(ConfigError, match="simplex"):
        MotionBlur(per_sample)
    # kernels on the simplex pass, in every dtype motion_kernel makes
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        MotionBlur(motion_kernel(15, 0.7, generator=g, batch=3, dtype=dtype))
    MotionBlur.random(7, 0.3, generator=g)


def test_blind_motion_blur_still_builds_from_meta_and_constrained_values():
    from flowrestore.degradations import BlindOperator, Param

    op = BlindOperator(MotionBlur, kernel=Param(torch.ones(5, 5), constraint="simplex"))
    op.check_reads_no_values()  # built on meta tensors: no value read, so no simplex check
    assert isinstance(op.materialize(kernel=torch.full((2, 5, 5), 1 / 25)), MotionBlur)


def test_function_family_at_without_an_adjoint_is_refused_up_front():
    # the operator was built and failed only when its adjoint was first used (mid-solve)
    fam = FunctionFamily(lambda x, t: x)
    with pytest.raises(ConfigError, match="adjoint"):
        fam.at(0.5)
    linear = FunctionFamily(lambda x, t: 2 * x, adjoint=lambda y, t: 2 * y)
    assert linear.at(0.5).check_adjoint((2, 1, 4, 4)) < 1e-12


def test_a_per_sample_width_on_the_host_is_copied_to_the_images_device_once():
    # GaussianBlur copied a CPU [B] width to the images' device at every call (on CUDA, a copy
    # from pageable memory the stream waits for, inside every step of a solve)
    import importlib.util
    from pathlib import Path

    # tests/degradations is no package: load tests/syncs.py by its path
    spec = importlib.util.spec_from_file_location(
        "_syncs_for_degradations", Path(__file__).resolve().parents[1] / "syncs.py"
    )
    syncs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(syncs)
    HostWork = syncs.HostWork

    op = GaussianBlur(torch.tensor([1.0, 2.0]), kernel_size=5)
    x = torch.empty(2, 3, 8, 8, device="meta")
    op(x), op.A_adjoint(x)  # the first call copies the width (and builds the padding index)
    with HostWork() as hw:
        op(x), op.A_adjoint(x)
    assert hw.count == 0, hw.ops
    # the result is still each sample blurred with its own width, and a changed width is used
    xs = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    one = [GaussianBlur(w, kernel_size=5)(xs[i : i + 1]) for i, w in enumerate((1.0, 2.0))]
    assert torch.allclose(op(xs), torch.cat(one))
    op.width.mul_(0.5)
    assert torch.allclose(op(xs)[:1], GaussianBlur(0.5, kernel_size=5)(xs[:1]))


@pytest.mark.parametrize(
    "kw",
    [
        {"params_range": "01"},
        {"params_range": (False, True)},
        {"params_range": (0.0, 1.0), "candidates": [False, True]},
        {"params_range": (0.0, 1.0), "candidates": "0123456789"},
        {"params_range": (0.0, 1.0), "candidates": ["0", "0.5", "1"]},
    ],
)
def test_schedule_degradation_refuses_strings_and_bools_as_severities(kw):
    # "01" was read as the range (0.0, 1.0) (float("0"), float("1")); bools were 0.0 and 1.0
    from flowrestore.degradations import schedule_degradation

    with pytest.raises(ConfigError, match="params_range|candidates"):
        schedule_degradation(
            torch.rand(1, 1, 8, 8), lambda w: GaussianBlur(w, kernel_size=3), budget=2, **kw
        )


@pytest.mark.parametrize(
    "kw",
    [
        {"size": 2.0, "shape": "box", "power": 2.0},
        {"mask_fn": lambda t, hw: torch.ones(hw), "shape": "box"},
        {"mask_fn": lambda t, hw: torch.ones(hw), "power": 8.0},
    ],
    ids=["box-power", "mask_fn-shape", "mask_fn-power"],
)
def test_inpainting_family_refuses_settings_it_would_ignore(kw):
    # a box hole ignored power=, and mask_fn= ignored shape= and power=, silently
    from flowrestore.degradations import InpaintingFamily

    with pytest.raises(ConfigError, match="ignored"):
        InpaintingFamily(**kw)
    InpaintingFamily(size=2.0, shape="box")  # the defaults stay accepted
    InpaintingFamily(mask_fn=lambda t, hw: torch.ones(hw))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_motion_kernel_accepts_a_cuda_generator():
    # the seed was drawn on the CPU with the given generator: a CUDA one raised an untyped
    # RuntimeError, so a draw reproducible on the GPU's generator was impossible
    a = motion_kernel(7, 0.5, generator=torch.Generator("cuda").manual_seed(3), batch=2)
    b = motion_kernel(7, 0.5, generator=torch.Generator("cuda").manual_seed(3), batch=2)
    assert torch.equal(a, b) and torch.allclose(a.sum((1, 2)), torch.ones(2))


def test_jpeg_repr_names_its_subsampling():
    # JPEG(50, subsampling=0) printed as JPEG(quality=50), Pillow's default chroma subsampling
    assert repr(JPEG(50, subsampling=0)) == "JPEG(quality=50, subsampling=0)"
    assert repr(JPEG(50)) == "JPEG(quality=50)"


@pytest.mark.parametrize(
    "op", [GaussianBlur(1.0), JPEG(50), lambda x: x], ids=["blur", "jpeg", "one-arg"]
)
def test_a_fixed_operator_given_for_a_family_is_refused_when_the_flow_is_built(op):
    # as_family wrapped A(x) as A(x, t): a DiracSDE built fine and its first step raised an
    # untyped "takes 2 positional arguments but 3 were given"
    import flowrestore as fr
    from flowrestore.degradations import as_family

    with pytest.raises(ConfigError, match="two arguments"):
        as_family(op)
    with pytest.raises(ConfigError, match="two arguments"):
        fr.DiracSDE(lambda y, t: y, op, sigma=0.05)
    with pytest.raises(ConfigError, match="adjoint"):
        FunctionFamily(lambda x, t: x, adjoint=op)
    fam = as_family(lambda x, t: x * (1 - t.reshape(-1, 1, 1, 1)))  # two arguments: a family
    assert torch.allclose(fam(torch.ones(2, 1, 2, 2), 0.25), torch.full((2, 1, 2, 2), 0.75))


def _empty_cases():
    from flowrestore.degradations import DownsampleFamily, InpaintingFamily

    fam = GaussianBlurFamily(width=Linear(0.3, 1.0), kernel_size=5)
    return {
        "gaussian": (lambda x: GaussianBlur(1.0)(x), lambda x: GaussianBlur(1.0).A_adjoint(x)),
        "blur": (lambda x: Blur(torch.ones(3, 5) / 15)(x), None),
        "downsample": (lambda x: Downsample(2)(x), lambda x: Downsample(2).A_adjoint(x)),
        "block_average": (lambda x: block_average(x, 2), None),
        "blur-family": (lambda x: fam(x, 0.5), lambda x: fam.time_derivative(x, 0.5)),
        "hole-family": (lambda x: InpaintingFamily(size=Linear(0.0, 2.0))(x, 0.5), None),
        "down-family": (lambda x: DownsampleFamily(factor=2)(x, 0.5), None),
    }


@pytest.mark.parametrize("name", list(_empty_cases()))
@pytest.mark.parametrize("shape", [(0, 3, 8, 6), (2, 0, 8, 6)], ids=["no-images", "no-channels"])
def test_an_empty_batch_gives_an_empty_result(name, shape):
    # as_planes reshaped with -1 (undefined for 0 elements), a convolution of 0 groups and
    # avg_pool2d of 0 planes were refused, and a shared time read the first of no samples: each
    # raised an untyped RuntimeError/IndexError (a solve's restricted batch can be empty)
    fwd, other = _empty_cases()[name]
    x = torch.rand(shape, dtype=torch.float64)
    b, c, h, w = shape
    out = fwd(x)
    want = (b, c, h // 2, w // 2) if name == "downsample" else shape
    assert out.shape == want and out.dtype == torch.float64
    if other is not None:
        y = torch.rand(want, dtype=torch.float64)
        assert other(y).shape == shape
