"""Tiled restoration: tiles cover the image, blending weights sum to 1, and the tiled result is
the whole-image result up to a stated tolerance (README, "Restore photos with the shipped
predictors")."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flowrestore as fr
from flowrestore.errors import ConfigError, ShapeError
from flowrestore.pretrained import degrade_for, flow_for, pretrained
from flowrestore.tiling import (
    axis_spans,
    axis_weights,
    plan_tiles,
    receptive_radius,
    restore_tiled,
)


@pytest.mark.parametrize(
    "length,tile,overlap,multiple",
    [
        (1001, 256, 48, 4),
        (4000, 512, 48, 4),
        (3000, 512, 48, 4),
        (130, 64, 16, 1),
        (97, 40, 8, 8),
        (67, 64, 16, 32),  # the last start rounds up to 32: two tiles of at most 64
        (23, 16, 0, 8),
        (1000, 100, 10, 32),  # the last span was 104 px with a tile of 100
        (1000, 256, 32, 32),
        (300, 256, 16, 8),
    ],
)
def test_spans_cover_the_axis_with_aligned_starts_and_enough_overlap(
    length, tile, overlap, multiple
):
    _check_spans(axis_spans(length, tile, overlap, multiple), length, tile, overlap, multiple)


def _check_spans(spans, length, tile, overlap, multiple):
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a % multiple == 0 for a, _ in spans)
    assert all(b - a <= tile for a, b in spans)  # the tile is a memory bound: never exceeded
    sizes = {b - a for a, b in spans[:-1]}
    assert len(sizes) <= 1 and all(spans[-1][1] - spans[-1][0] <= s for s in sizes)
    # spread evenly: at most one grid step above the smallest size n aligned spans could share
    n = len(spans)
    if n > 1:
        assert all(
            s <= _smallest_shared_size(length, n, overlap, multiple) + multiple for s in sizes
        )


def _smallest_shared_size(length, n, overlap, multiple):
    """The smallest multiple S for which n spans of side S (the last at most S) with starts on
    the grid can cover the axis: each of the n - 1 gaps is at most floor_m(S - overlap), and the
    last start must reach length - S."""
    s = multiple
    while (n - 1) * ((s - overlap) // multiple * multiple) < length - s:
        s += multiple
    return s


@pytest.mark.parametrize(
    "length,tile,overlap,multiple",
    [(2802, 339, 60, 16), (2443, 395, 40, 16), (2351, 548, 77, 32), (2161, 499, 71, 16)],
)
def test_spans_share_the_smallest_size_their_count_allows(length, tile, overlap, multiple):
    """Where the even spread attains it, the spans' size is the smallest any as many aligned
    spans could share (a larger one wastes compute on wider overlaps)."""
    spans = axis_spans(length, tile, overlap, multiple)
    assert spans[0][1] == _smallest_shared_size(length, len(spans), overlap, multiple)
    for (a0, b0), (a1, b1) in zip(spans, spans[1:], strict=False):
        assert a0 < a1 and b0 - a1 >= overlap and b0 <= b1
    # no wasted tile: starts are at most g apart (a multiple, leaving the overlap) and the last
    # span ends at `length` from a start at or past length - side, so fewer spans cannot cover
    side = tile // multiple * multiple
    g = (side - overlap) // multiple * multiple
    assert len(spans) == max(1, math.ceil((length - side) / g) + 1)


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 3000),
    tile=st.integers(1, 600),
    overlap=st.integers(0, 80),
    multiple=st.sampled_from([1, 2, 4, 8, 16, 32, 64]),
)
def test_spans_hold_or_are_refused_for_any_sizes(length, tile, overlap, multiple):
    # infeasible sizes used to loop forever (e.g. 100, 51, 3, 32: tiles of 32 on starts 32 apart
    # cannot share 3 px); now every input is laid or refused by name
    try:
        spans = axis_spans(length, tile, overlap, multiple)
    except ConfigError as e:
        assert "tile" in str(e) and tile < length
        side = tile // multiple * multiple
        assert tile < 2 * overlap + multiple or side < overlap + multiple
        return
    if tile >= length:
        assert spans == [(0, length)]
    else:
        _check_spans(spans, length, tile, overlap, multiple)


def test_one_tile_when_the_image_fits():
    assert axis_spans(300, 512, 48, 4) == [(0, 300)]
    with pytest.raises(ConfigError, match="tile"):
        axis_spans(1000, 64, 48, 4)


def test_blending_weights_sum_to_one_and_ignore_tile_edges():
    plan = plan_tiles(203, 341, tile=96, overlap=32, multiple=4, batch=1)
    rows, cols = plan.weights()
    canvas = torch.zeros(203, 341, dtype=torch.float64)
    for i, (t, b) in enumerate(plan.rows):
        for j, (c, r) in enumerate(plan.cols):
            w = rows[i][:, None] * cols[j][None, :]
            assert float(w.min()) >= 0 and float(w.max()) <= 1 + 1e-12
            canvas[t:b, c:r] += w
    assert torch.allclose(canvas, torch.ones_like(canvas), atol=1e-12, rtol=0)
    # inside an overlap, the first quarter next to a tile's edge has no weight
    w = axis_weights(plan.rows, 203)
    (_, b0), (a1, _) = plan.rows[0], plan.rows[1]
    quarter = (b0 - a1) // 4
    assert float(w[1][:quarter].abs().max()) == 0.0
    assert float(w[0][-quarter:].abs().max()) == 0.0


class _Convs(nn.Module):
    """k stacked 3x3 convolutions: receptive-field radius k by construction."""

    multiple = 1

    def __init__(self, k):
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(k)])

    def forward(self, x, t):
        return self.convs(x)


def test_receptive_radius_of_a_known_stack():
    torch.manual_seed(0)
    assert receptive_radius(_Convs(3), multiple=1) == 3
    assert receptive_radius(_Convs(7), multiple=4) == 7


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def deblur():
    model = pretrained("indi-deblur")
    from skimage import data

    x = torch.from_numpy(data.astronaut()[40:200, 96:296].copy()).permute(2, 0, 1).float() / 255
    y = degrade_for(model, x[None], generator=torch.Generator().manual_seed(0))[0]
    return model, y


def _seams(plan):
    """True where one tile has weight 1 (away from seams)."""
    rows, cols = plan.weights()
    one = torch.zeros(plan.height, plan.width, dtype=torch.bool)
    for i, (t, b) in enumerate(plan.rows):
        for j, (c, r) in enumerate(plan.cols):
            one[t:b, c:r] |= (rows[i][:, None] * cols[j][None, :]) == 1
    return one


@pytest.mark.parametrize(
    "solver,steps,away,everywhere",
    [(fr.Euler(), 1, 1e-5, 1 / 255), (fr.Heun(), 3, 1e-4, 1 / 255)],
)
def test_tiled_equals_whole_image_away_from_seams(deblur, solver, steps, away, everywhere):
    model, y = deblur
    flow = flow_for(model)
    whole = fr.solve(flow, solver, y[None], steps=steps).x[0]
    plan = plan_tiles(160, 200, model=model, tile=128)  # overlap: the model's receptive field
    assert plan.count == 4 and plan.overlap >= 40
    tiled = restore_tiled(flow, solver, y, steps=steps, plan=plan)
    err = (tiled - whole).abs().amax(0)
    one = _seams(plan)
    assert one.float().mean() > 0.3
    assert float(err[one].max()) <= away
    assert float(err.max()) <= everywhere


def test_batched_tiles_progress_and_whole_image_tile(deblur):
    model, y = deblur
    flow = flow_for(model)
    calls = []
    plan1 = plan_tiles(160, 200, model=model, tile=128, batch=1)
    one_by_one = restore_tiled(flow, fr.Euler(), y, steps=2, plan=plan1, on_step=calls.append)
    assert sum(calls) == plan1.count * 2 and len(calls) == plan1.count * 2  # advances per tile
    plan4 = plan_tiles(160, 200, model=model, tile=128, batch=4)
    calls4 = []
    batched = restore_tiled(flow, fr.Euler(), y, steps=2, plan=plan4, on_step=calls4.append)
    # the four tiles share one shape, so they run as one batch: one advance of 4 per step
    assert calls4 == [plan4.count] * 2
    assert float((batched - one_by_one).abs().max()) < 1e-5
    whole = restore_tiled(flow, fr.Euler(), y, steps=2, tile=0)
    reference = fr.solve(flow, fr.Euler(), y[None], steps=2).x[0]
    assert float((whole - reference).abs().max()) < 1e-5  # one tile: the whole image


def test_memory_budget_sets_tile_size_and_batch(deblur):
    model, _ = deblur
    small = plan_tiles(3000, 4000, model=model, memory_budget=64 * 2**20)
    large = plan_tiles(3000, 4000, model=model, memory_budget=512 * 2**20)
    assert max(small.tile_shape) < max(large.tile_shape) <= 512
    assert all(a % 4 == 0 for a, _ in small.rows + small.cols)
    # processed pixels: overlap costs at most about a quarter more than the image
    assert large.processed_pixels / (3000 * 4000) < 1.25


def test_tiled_dirac_is_reproducible():
    model = pretrained("dirac-deblur")
    y = torch.rand(3, 72, 100, generator=torch.Generator().manual_seed(3))
    flow = flow_for(model)
    kw = {"steps": 2, "tile": 64, "overlap": 16, "output": "posterior_mean", "seed": 5}
    a = restore_tiled(flow, fr.EulerMaruyama(), y, **kw)
    b = restore_tiled(flow, fr.EulerMaruyama(), y, **kw)
    assert torch.equal(a, b) and a.shape == y.shape and np.isfinite(a.numpy()).all()


def test_blend_ramp_is_symmetric_and_the_documented_sin_squared():
    """r(u) + r(1 − u) = 1 (the outgoing tile's weight is the incoming one's complement) and
    r(u) = sin²(π/2 · clamp(2(u − 1/4), 0, 1)): 0 on the first quarter, 1 on the last."""
    from flowrestore.tiling.plan import _ramp

    u = torch.linspace(0, 1, 401, dtype=torch.float64)
    assert torch.allclose(_ramp(u) + _ramp(1 - u), torch.ones_like(u), atol=1e-15, rtol=0)
    v = ((u - 0.25) * 2).clamp(0, 1)
    assert torch.allclose(_ramp(u), torch.sin(np.pi / 2 * v) ** 2, atol=1e-15, rtol=0)
    # two tiles: the weights over the overlap are the ramp itself (they already sum to 1)
    spans = [(0, 60), (40, 100)]
    w = axis_weights(spans, 100)
    pos = torch.arange(40, 60, dtype=torch.float64) + 0.5
    rising = torch.sin(np.pi / 2 * ((((pos - 40) / 20) - 0.25) * 2).clamp(0, 1)) ** 2
    assert torch.allclose(w[1][:20], rising, atol=1e-15, rtol=0)
    assert torch.allclose(w[0][40:], 1 - rising, atol=1e-15, rtol=0)
    assert float(w[1][10]) == pytest.approx(np.sin(np.pi / 2 * 0.55) ** 2, abs=1e-15)  # u = 0.525


@pytest.mark.parametrize(
    "length,tile,overlap,multiple",
    [(1001, 256, 48, 4), (4000, 512, 48, 4), (1000, 256, 48, 4), (130, 64, 16, 1), (97, 40, 8, 8)],
)
def test_tiles_have_equal_sizes_and_cover_the_axis_exactly(length, tile, overlap, multiple):
    """Every tile but the last has one size; the last is at most multiple − 1 shorter (its start
    rounds up to the grid, so it never exceeds the tile) and exactly as long when the grid allows
    it; the tiles' union is range(length)."""
    spans = axis_spans(length, tile, overlap, multiple)
    sizes = [b - a for a, b in spans]
    assert len(set(sizes[:-1])) == 1
    assert 0 <= sizes[0] - sizes[-1] < multiple
    if (length - sizes[0]) % multiple == 0:
        assert sizes[-1] == sizes[0]
    covered = torch.zeros(length, dtype=torch.int64)
    for a, b in spans:
        covered[a:b] += 1
    assert bool((covered >= 1).all()) and spans[0][0] == 0 and spans[-1][1] == length


def test_tiles_a_diffusers_unet_through_its_flow():
    """A diffusers UNet2DModel returns an object with .sample: the receptive field is probed
    through the flow's clean estimate, tile origins follow its 2x down-sampling, and a large
    DiffusionFlow image is restored tile by tile. Its GroupNorm makes every output depend on
    every input, so tiles are approximate: within a few percent of the whole-image solve."""
    diffusers = pytest.importorskip("diffusers")
    from flowrestore.oracles.diffusion import linear_alphas_cumprod
    from flowrestore.tiling import network_multiple

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    flow = fr.DiffusionFlow(unet, alphas_cumprod=linear_alphas_cumprod())
    assert network_multiple(flow) == 2
    radius = receptive_radius(flow, multiple=2)
    assert 4 <= radius <= 40  # the convolutions' reach, not the whole 128-px probe
    y = torch.randn(3, 100, 84, generator=torch.Generator().manual_seed(1))
    plan = plan_tiles(100, 84, model=flow, tile=64)
    assert plan.count == 4 and plan.overlap >= radius
    assert all(a % 2 == 0 for a, _ in plan.rows + plan.cols)
    tiled = restore_tiled(flow, fr.Euler(), y, steps=2, plan=plan)
    whole = fr.solve(flow, fr.Euler(), y[None], steps=2).x[0]
    assert tiled.shape == y.shape and bool(torch.isfinite(tiled).all())
    assert float((tiled - whole).abs().mean()) < 0.05 * float(whole.abs().mean())


def test_weights_are_normalised_where_three_tiles_meet():
    """Where three spans overlap the raw windows do not sum to 1; the weights are normalised so
    that they do, and each stays in [0, 1]."""
    spans = [(0, 13), (1, 14), (2, 16)]
    raw_sum = torch.zeros(16, dtype=torch.float64)
    w = axis_weights(spans, 16)
    total = torch.zeros(16, dtype=torch.float64)
    for (a, b), wi in zip(spans, w, strict=True):
        total[a:b] += wi
        assert float(wi.min()) >= 0 and float(wi.max()) <= 1
    assert torch.allclose(total, torch.ones(16, dtype=torch.float64), atol=1e-15, rtol=0)
    from flowrestore.tiling.plan import _ramp

    for i, (a, b) in enumerate(spans):  # the unnormalised windows of the docstring
        r = torch.ones(b - a, dtype=torch.float64)
        pos = torch.arange(a, b, dtype=torch.float64) + 0.5
        if i > 0:
            r = r * _ramp((pos - a) / (spans[i - 1][1] - a))
        if i < 2:
            r = r * (1 - _ramp((pos - spans[i + 1][0]) / (b - spans[i + 1][0])))
        raw_sum[a:b] += r
    assert float((raw_sum - 1).abs().max()) > 0.1  # so the normalisation is what makes it 1


class _Shift(nn.Module):
    """out[..., j] = x[..., j + s] along both axes: depends only on inputs s pixels to the right."""

    multiple = 1

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x, t):
        return torch.nn.functional.pad(x, (0, self.s, 0, self.s))[..., self.s :, self.s :]


def test_receptive_radius_of_a_one_sided_network():
    """The radius is how far the support reaches beyond the probed block on either side: a
    network looking s pixels to the right has radius s (it reaches nothing to the left), also when
    its support runs into the first probe's edge (s = 62 from the centre of 128 px: cut at the
    edge, so the probe must grow) or past it (s = 100: no support inside the first probe)."""
    for s in (3, 9, 62, 100):
        assert receptive_radius(_Shift(s), multiple=4) == s
    # no support in any probe (no input, or beyond 1024 px) or a support outgrowing the last
    # probe: refused in one line, naming the remedy
    for net, why in ((lambda x, t: 0 * x, "no input"), (_Shift(2000), "no input"),
                     (_Shift(510), "exceeds a 1024 px")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"{why}.*pass overlap= explicitly"):
            receptive_radius(net, multiple=4)


def test_default_budget_is_half_the_free_cuda_memory(monkeypatch):
    """On CUDA the default activation budget is half of what the device reports free (read once,
    before planning), on the CPU a fixed 512 MiB."""
    from flowrestore.tiling.plan import default_budget

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (6 * 2**30, 80 * 2**30))
    assert default_budget("cuda:0") == 3 * 2**30
    assert default_budget("cpu") == 512 * 2**20


def test_a_network_declaring_no_usable_multiple_aligns_tiles_to_1():
    """``multiple`` must be an int >= 1 to be used: 0, a bool or a float fall back to 1."""
    from flowrestore.tiling import network_multiple

    for bad in (0, -4, True, 2.0):
        net = torch.nn.Identity()
        net.multiple = bad
        assert network_multiple(net) == 1, bad
    net = torch.nn.Identity()
    net.multiple = 8
    assert network_multiple(net) == 8


def test_a_one_channel_network_is_probed_and_tiled_with_one_channel():
    """A U-Net trained with ``--channels 1``: the receptive-field probe, the evaluation count
    and the tiles take one channel, and a 3-channel image is refused before any work."""
    from flowrestore.tiling import count_evaluations, network_channels
    from flowrestore.training.unet import UNet

    torch.manual_seed(0)
    net = UNet(in_channels=1, base_channels=4, channel_mults=(1, 2)).eval()
    net.requires_grad_(False)
    flow = fr.InDIFlow(net)
    assert network_channels(flow) == 1
    assert receptive_radius(flow, multiple=2) >= 0  # probed with one channel: no error
    assert count_evaluations(flow, fr.Euler(), 2) == 2
    y = torch.rand(1, 150, 130, generator=torch.Generator().manual_seed(0))
    plan = plan_tiles(150, 130, model=flow, tile=100)
    assert plan.count > 1
    tiled = restore_tiled(flow, fr.Euler(), y, steps=2, plan=plan)
    assert tiled.shape == y.shape
    with pytest.raises(ShapeError, match=r"1-channel images.*y must be"):
        restore_tiled(flow, fr.Euler(), y.expand(3, -1, -1), steps=2, tile=100)
