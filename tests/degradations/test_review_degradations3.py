"""Third review of the degradation operators and families: each test fails without the fix it
names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from flowrestore.degradations import (
    AdditiveGaussianNoise,
    DownsampleFamily,
    FunctionFamily,
    GaussianBlur,
    GaussianBlurFamily,
    InpaintingFamily,
    box_hole_mask,
    schedule_degradation,
)
from flowrestore.errors import ConfigError
from flowrestore.schedules import Linear

D64 = torch.float64


def _syncs():
    # tests/degradations is no package: load tests/syncs.py by its path
    spec = importlib.util.spec_from_file_location(
        "_syncs_for_degradations3", Path(__file__).resolve().parents[1] / "syncs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("t", [0.75, 0.6, torch.tensor([0.3, 0.75, 1.0])], ids=str)
def test_function_family_derivative_is_finite_and_exact_in_bfloat16(t):
    # t ± 1e-3 rounded to t itself in bfloat16 (spacing 2⁻⁸ on [0.5, 1)): ∂_t A_t x was 0 / 0
    # = NaN. A_t x = t x on x = 1 is exact in bfloat16 at every time, so the difference quotient
    # over the rounded times is exactly 1
    fam = FunctionFamily(lambda x, t: x * t.reshape(-1, 1, 1, 1))
    x = torch.ones(3, 1, 4, 4, dtype=torch.bfloat16)
    tt = t.to(torch.bfloat16) if isinstance(t, torch.Tensor) else t
    d = fam.time_derivative(x, tt)
    assert d.dtype == torch.bfloat16
    torch.testing.assert_close(d, torch.ones_like(d), rtol=0, atol=0)
    # float64 is unchanged: the central difference of (1 - t)² x is -2 (1 - t) x up to O(h²) = 0
    sq = FunctionFamily(lambda x, t: x * (1 - t.reshape(-1, 1, 1, 1)) ** 2)
    x64 = torch.rand(3, 1, 4, 4, dtype=D64, generator=torch.Generator().manual_seed(0))
    t64 = torch.tensor([0.3, 0.5, 0.7], dtype=D64)
    want = -2 * (1 - t64).reshape(-1, 1, 1, 1) * x64
    torch.testing.assert_close(sq.time_derivative(x64, t64), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_inpainting_mask_fn_derivative_is_finite_in_half_precision(dtype):
    # the mask's central difference was taken at times in x's dtype: in float16 t ± 1e-4 rounded
    # to one time for t >= 0.25, and ∂_t A_t x was NaN at every pixel
    def mask_fn(t, hw):
        return (1 - t.reshape(-1, 1, 1, 1)).expand(-1, 1, *hw)

    fam = InpaintingFamily(mask_fn=mask_fn)
    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    for t in (0.75, torch.tensor([0.2, 0.75, 1.0], dtype=dtype)):
        d = fam.time_derivative(x, t)
        assert d.dtype == dtype
        torch.testing.assert_close(d.double(), -x.double(), rtol=0, atol=1e-2)


def test_family_at_a_host_time_is_copied_to_the_images_device_once():
    # family.at(t) with a CPU tensor t copied t to the images' device at every application of A
    # and Aᵀ (on CUDA a copy from pageable memory the stream waits for, inside every step)
    HostWork = _syncs().HostWork
    fams = [
        GaussianBlurFamily(width=Linear(0.3, 2.0), kernel_size=5),
        InpaintingFamily(size=Linear(0.0, 3.0)),
        DownsampleFamily(factor=2),
    ]
    for fam in fams:
        op = fam.at(torch.tensor([0.2, 0.7]))
        x = torch.empty(2, 3, 8, 8, device="meta")
        op(x), op.A_adjoint(x)  # the first call copies the time
        with HostWork() as hw:
            op(x), op.A_adjoint(x)
        assert hw.count == 0, (fam, hw.ops)
    # the values are still A_t at those times, and a time changed in place is used
    fam = fams[0]
    t = torch.tensor([0.2, 0.7])
    op = fam.at(t)
    xs = torch.rand(2, 1, 8, 8, dtype=D64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(op(xs), fam(xs, t.double()), rtol=0, atol=0)
    t.fill_(0.9)
    torch.testing.assert_close(op.A_adjoint(xs), fam.adjoint(xs, t.double()), rtol=0, atol=0)


def test_box_hole_mask_in_bfloat16_is_centred_on_a_large_image():
    # bfloat16 holds integers exactly only up to 256: on a 300-pixel image the grid's centre
    # 149.5 was rounded, the box was off-centre (mask not mirror-symmetric, values off by 0.5)
    # and its derivative off by up to 1.5 times its size
    size = torch.tensor([101.0, 57.25])  # both exact in bfloat16
    for derivative in (False, True):
        want = box_hole_mask(size, 300, 300, derivative=derivative)
        got = box_hole_mask(size.bfloat16(), 300, 300, derivative=derivative)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want, rtol=0, atol=4e-3)
        assert torch.equal(got, got.flip(-1)) and torch.equal(got, got.flip(-2))
    # a box of side 100 centred on a 300-pixel image (centre 149.5) removes pixels 100 ... 199
    want = torch.ones(1, 1, 300, 300, dtype=torch.bfloat16)
    want[..., 100:200, 100:200] = 0
    assert torch.equal(box_hole_mask(torch.tensor([100.0], dtype=torch.bfloat16), 300, 300), want)


@pytest.mark.parametrize("which", ["hole", "box", "down"])
def test_families_keep_the_images_dtype_with_a_float64_schedule_parameter(which):
    # a schedule with a float64 tensor parameter promoted the mask / the blend amount, and a
    # float32 image came back float64 from A_t, Aᵀ_t and ∂_t A_t
    p = torch.tensor(3.0, dtype=D64)
    fam = {
        "hole": lambda: InpaintingFamily(size=Linear(0.0, p)),
        "box": lambda: InpaintingFamily(size=Linear(0.0, p), shape="box"),
        "down": lambda: DownsampleFamily(factor=2, amount=Linear(0.0, p / 3)),
    }[which]()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for t in (0.5, torch.tensor([0.2, 0.6])):
        for f in (fam, fam.adjoint, fam.time_derivative):
            out = f(x, t)
            assert out.dtype == torch.float32, (f, out.dtype)
            t64 = t.double() if isinstance(t, torch.Tensor) else t
            torch.testing.assert_close(out.double(), f(x.double(), t64), rtol=0, atol=1e-5)


def test_function_family_with_an_adjoint_offers_check_adjoint():
    # FunctionFamily(fn, adjoint=...) reported linear = True but had no check_adjoint (an
    # AttributeError): the user's adjoint is the one that most needs the check
    def fwd(x, t):
        return torch.roll(x, 1, -1) * (1 + t.reshape(-1, 1, 1, 1))

    good = FunctionFamily(
        fwd, adjoint=lambda y, t: torch.roll(y, -1, -1) * (1 + t.reshape(-1, 1, 1, 1))
    )
    bad = FunctionFamily(
        fwd, adjoint=lambda y, t: torch.roll(y, 1, -1) * (1 + t.reshape(-1, 1, 1, 1))
    )
    t = torch.tensor([0.2, 0.9], dtype=D64)
    g = torch.Generator().manual_seed(0)
    assert good.check_adjoint((2, 1, 5, 6), t, generator=g) < 1e-13
    assert bad.check_adjoint((2, 1, 5, 6), t, generator=g) > 1e-3
    with pytest.raises(ConfigError, match="adjoint"):
        FunctionFamily(fwd).check_adjoint((2, 1, 5, 6), t)


@pytest.mark.parametrize("bad", ["g", 3, torch.zeros(2)], ids=["str", "int", "tensor"])
def test_additive_noise_refuses_a_generator_that_is_not_one(bad):
    # a string generator failed inside torch.randn with an untyped TypeError
    with pytest.raises(ConfigError, match="generator must be a torch.Generator"):
        AdditiveGaussianNoise(0.1)(torch.zeros(2, 1, 4, 4), generator=bad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_additive_noise_draws_on_the_generators_device():
    # a CPU generator with CUDA images raised torch's untyped RuntimeError; the draw is now made
    # on the generator's device, so one CPU seed gives one observation on the CPU and the GPU
    x = torch.zeros(2, 1, 4, 4)
    noise = AdditiveGaussianNoise(0.5)
    cpu = noise(x, generator=torch.Generator().manual_seed(4))
    gpu = noise(x.cuda(), generator=torch.Generator().manual_seed(4))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
    cuda_gen = torch.Generator("cuda").manual_seed(4)
    assert noise(x.cuda(), generator=cuda_gen).device.type == "cuda"


def test_schedule_degradation_refuses_a_family_for_an_operator():
    # family_of_param returning a family A(x, t) failed with an untyped TypeError (missing t)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"family_of_param\(0\.3\) must return an operator"):
        schedule_degradation(
            x,
            lambda w: GaussianBlurFamily(width=w, kernel_size=3),
            params_range=(0.3, 2.0),
            budget=3,
        )
    sched = schedule_degradation(
        x, lambda w: GaussianBlur(w, kernel_size=3), params_range=(0.3, 2.0), budget=3
    )
    torch.testing.assert_close(
        sched(torch.tensor([0.0, 1.0], dtype=D64)), torch.tensor([0.3, 2.0], dtype=D64)
    )


def test_function_family_derivative_of_a_measurement_of_another_shape():
    # the difference quotient was divided by the step shaped like the image [B, 1, 1, 1]: a
    # family whose measurement is a vector [B, M] got a [B, 1, B, M] derivative, silently
    fam = FunctionFamily(lambda x, t: x.flatten(1)[:, :5] * t[:, None] ** 2)
    x = torch.rand(3, 1, 4, 4, dtype=D64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.5, 0.9], dtype=D64)
    d = fam.time_derivative(x, t)
    torch.testing.assert_close(d, 2 * t[:, None] * x.flatten(1)[:, :5], rtol=1e-9, atol=1e-12)


def test_inpainting_family_derivative_of_a_boolean_mask_fn():
    # mask_fn returning a boolean mask (a hard hole) worked in A_t but ∂_t A_t subtracted two
    # boolean masks: torch's untyped RuntimeError. The hole here covers the columns w < 8 t, so
    # the column at the hole's edge gets -1 / (2h) and every other pixel 0
    def mask_fn(t, hw):
        cols = torch.arange(hw[1], dtype=t.dtype)
        return (cols >= 8 * t.reshape(-1, 1, 1, 1)).expand(-1, 1, *hw)

    fam = InpaintingFamily(mask_fn=mask_fn, fd_step=1e-3)
    x = torch.ones(1, 1, 3, 8, dtype=D64)
    assert torch.equal(fam(x, 0.5)[0, 0, 0], torch.tensor([0.0] * 4 + [1.0] * 4, dtype=D64))
    d = fam.time_derivative(x, 0.5)
    want = torch.zeros_like(x)
    want[..., 4] = -1 / 2e-3
    torch.testing.assert_close(d, want, rtol=1e-9, atol=0)
