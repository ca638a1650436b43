"""Second review of tiled restoration and the task records: what the probe may not touch, what a
tiled restore refuses before any work, exactness for a position-independent operator, a Dirac
flow's blur reach and block alignment, and task parameter checks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flowrestore as fr
from flowrestore.degradations import GaussianBlurFamily
from flowrestore.errors import ConfigError, ShapeError
from flowrestore.schedules import Geometric, Linear
from flowrestore.tasks import get_task
from flowrestore.tasks.blend import BlendFamily, DownUp
from flowrestore.tiling import TilePlan, plan_tiles, receptive_radius, restore_tiled

pytestmark = pytest.mark.usefixtures("one_thread")


class _Box(nn.Module):
    """A box filter of radius ``r`` (zero padding): every output depends on exactly the inputs
    within ``r`` px, the same way everywhere — a position-independent operator."""

    multiple = 1

    def __init__(self, r):
        super().__init__()
        self.r = r
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        k = 2 * self.r + 1
        return F.avg_pool2d(F.pad(x, (self.r,) * 4), k, stride=1) * self.scale


class _Convs(nn.Module):
    """``k`` stacked 3x3 convolutions (radius ``k``), aligned to ``multiple``."""

    def __init__(self, k, multiple=1, channels=3):
        super().__init__()
        self.multiple = multiple
        self.convs = nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1) for _ in range(k)])

    def forward(self, x, t):
        return self.convs(x)


# ----------------------------------------------------------------------------- the probe
def test_probe_leaves_the_global_random_stream_and_parameter_grads_alone():
    """Measuring the receptive field must not change what the caller's next random draw is, nor
    leave gradients in the network's parameters (a model being trained would step on them)."""
    net = _Convs(2)
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    assert receptive_radius(net, multiple=1) == 2
    assert torch.equal(torch.rand(5), expected)
    assert all(p.grad is None for p in net.parameters())


def test_a_failing_probe_is_refused_with_the_remedy():
    """A predictor that cannot run on the probe (here: a 1-channel convolution that declares no
    channel count, probed with 3) is a ConfigError naming ``overlap=``, not a bare RuntimeError."""
    net = nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(ConfigError, match=r"failed on a 3-channel.*pass overlap= explicitly"):
        receptive_radius(lambda x, t: net(x), multiple=1)
    # a non-finite gradient would read as "depends on nothing": refused as what it is
    with pytest.raises(ConfigError, match="not finite"):
        receptive_radius(lambda x, t: (x - 2).sqrt(), multiple=1)
    for bad in (0, True, 2.0):
        with pytest.raises(ConfigError, match="multiple"):
            receptive_radius(_Convs(1), multiple=bad)


# ----------------------------------------------------------------------------- plans
def test_a_tile_covering_the_image_needs_no_model_and_a_bool_is_no_tile():
    plan = plan_tiles(50, 60, tile=64)  # one tile: nothing to measure
    assert plan.count == 1 and plan.rows == ((0, 50),) and plan.cols == ((0, 60),)
    assert plan_tiles(1, 1, tile=1).count == 1  # a 1-pixel image
    with pytest.raises(ConfigError, match="tile"):
        plan_tiles(50, 60, tile=False, overlap=0)  # not a spelling of tile=0


@pytest.mark.parametrize(
    "kwargs,what",
    [
        ({"rows": ((0, 60),)}, "rows"),  # leaves rows 60..99 without a tile
        ({"cols": ((0, 60), (70, 100))}, "cols"),  # a gap
        ({"rows": ((0, 120),)}, "rows"),  # outside the image
        ({"rows": [(0, 100)]}, "rows"),  # not a tuple
        ({"batch": 0}, "batch"),
        ({"overlap": -1}, "overlap"),
    ],
)
def test_a_hand_built_plan_is_checked(kwargs, what):
    base = {
        "height": 100,
        "width": 100,
        "rows": ((0, 100),),
        "cols": ((0, 60), (40, 100)),
        "overlap": 20,
        "batch": 1,
    }
    TilePlan(**base)  # valid
    with pytest.raises(ConfigError, match=what):
        TilePlan(**{**base, **kwargs})


# ----------------------------------------------------------------------------- restore_tiled
def test_restore_tiled_refuses_what_it_would_ignore_or_share_before_any_work():
    calls = []

    def net(x, t):
        calls.append(x.shape)
        return x

    flow = fr.InDIFlow(net)
    y = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    plan = plan_tiles(40, 50, tile=32, overlap=4)
    cases = [
        ({"plan": plan, "tile": 16}, "plan= or tile="),
        ({"plan": plan, "overlap": 8}, "plan= or overlap="),
        ({"plan": plan, "seeds": [1]}, "seeds="),
        ({"plan": plan, "generator": torch.Generator()}, "generator="),
        ({"plan": plan, "seed": True}, "seed must be an int"),
        ({"plan": plan, "seed": -1}, "seed must be an int"),
        ({"plan": plan, "seed": 2**64 - 1}, "seed must be below"),
        ({"plan": plan, "on_step": print, "callback": print}, "on_step= or callback="),
        ({"plan": plan, "on_failure": "return"}, "on_failure must be 'raise'"),
    ]
    for kwargs, why in cases:
        with pytest.raises(ConfigError, match=why):
            restore_tiled(flow, fr.Euler(), y, steps=1, **kwargs)
    bad = y.clone()
    bad[0, 39, 49] = float("nan")  # in the last tile only
    with pytest.raises(ShapeError, match="non-finite"):
        restore_tiled(flow, fr.Euler(), bad, steps=1, plan=plan)
    assert calls == []  # nothing ran


def test_a_stochastic_tile_does_not_depend_on_its_batch():
    """Each tile has its own seed: batching tiles together gives the same tiles."""
    net = _Convs(1)
    flow = fr.DiracSDE(lambda y, t: net(y, t), lambda x, t: x, Geometric(0.01, 0.05))
    y = torch.rand(3, 60, 70, generator=torch.Generator().manual_seed(1))
    kw = {"steps": 2, "seed": 3, "output": "last"}
    one = restore_tiled(flow, fr.EulerMaruyama(), y, plan=plan_tiles(60, 70, tile=40, overlap=4,
                        batch=1), **kw)  # fmt: skip
    four = restore_tiled(flow, fr.EulerMaruyama(), y, plan=plan_tiles(60, 70, tile=40, overlap=4,
                         batch=4), **kw)  # fmt: skip
    assert torch.allclose(one, four, atol=1e-6, rtol=0)
    other = restore_tiled(flow, fr.EulerMaruyama(), y, tile=40, overlap=4, steps=2, seed=4)
    assert not torch.allclose(one, other, atol=1e-3)


def _covered_once(plan):
    count = torch.zeros(plan.height, plan.width, dtype=torch.int64)
    for t, b, c, r in plan.tiles:
        count[t:b, c:r] += 1
    return count == 1


def test_tiled_position_independent_operator_is_exact_as_documented():
    """The module docstring: one Euler step of a predictor of radius r, tiled, equals the
    whole-image step where one tile covers the pixel; everywhere once the overlap is at least
    4 r - 2, and not everywhere below it (contributing pixels reach a quarter overlap from a
    tile edge). The default overlap (r) is exact only where one tile covers the pixel."""
    r = 8
    flow = fr.InDIFlow(_Box(r))
    y = torch.rand(3, 150, 170, generator=torch.Generator().manual_seed(0))
    whole = fr.solve(flow, fr.Euler(), y[None], steps=1).x[0]
    default = plan_tiles(150, 170, model=flow, tile=48)
    assert default.overlap == r and default.count > 4
    err = (restore_tiled(flow, fr.Euler(), y, steps=1, plan=default) - whole).abs().amax(0)
    once = _covered_once(default)
    assert float(err[once].max()) < 1e-6
    assert float(err.max()) > 1e-3  # inside the overlaps: not exact
    for overlap, exact in ((4 * r - 2, True), (4 * r - 3, False)):
        plan = plan_tiles(150, 170, tile=2 * overlap + 20, overlap=overlap, multiple=1)
        assert plan.count > 1
        tiled = restore_tiled(flow, fr.Euler(), y, steps=1, plan=plan)
        assert (float((tiled - whole).abs().max()) < 1e-6) == exact, overlap


# ----------------------------------------------------------------------------- Dirac families
def test_a_dirac_flows_overlap_includes_its_blur():
    """A Dirac step applies A_t to the clean estimate: a blur of kernel 2k + 1 reaches k px
    further than the network, so the measured radius (and the overlap) is the sum, also after the
    bare network was measured (the cache tells them apart)."""
    net = _Convs(3)
    assert receptive_radius(net, multiple=1) == 3
    blur = GaussianBlurFamily(width=Linear(0.0, 3.0), kernel_size=21)  # reach 10
    flow = fr.DiracSDE(net, blur, 0.05)
    assert receptive_radius(flow, multiple=1) == 13
    assert plan_tiles(300, 300, model=flow, tile=100).overlap == 13
    assert receptive_radius(fr.InDIFlow(net), multiple=1) == 3


def test_tiles_align_to_a_super_resolution_familys_blocks():
    """sr with factor 8 on a network aligned to 4: tile origins must lie on the 8-px block grid,
    else a tile's blocks are not the image's (or its side is not divisible: DownUp refuses it
    mid-run). The tiled step runs, and where one tile covers a pixel it equals the whole-image
    step."""
    net = _Convs(1, multiple=4)
    family = BlendFamily(DownUp(8, "bilinear"))
    flow = fr.DiracSDE(net, family, 0.05)
    plan = plan_tiles(200, 168, model=flow, tile=72, overlap=24)
    assert plan.count > 1
    assert all(a % 8 == 0 for a, _ in plan.rows + plan.cols)
    y = torch.rand(3, 200, 168, generator=torch.Generator().manual_seed(2))
    tiled = restore_tiled(flow, fr.EulerMaruyama(), y, steps=1, plan=plan, output="posterior_mean")
    assert tiled.shape == y.shape and bool(torch.isfinite(tiled).all())


# ----------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("noise", [float("nan"), float("inf"), -0.1, "0.1", True])
def test_task_describe_refuses_a_bad_noise(noise):
    with pytest.raises(ConfigError, match="noise must be a finite number >= 0"):
        get_task("deblur").describe({}, noise=noise)
    assert "std 0.05" in get_task("deblur").describe({}, noise=0.05)


def test_a_position_dependent_family_is_not_tiled():
    """An InpaintingFamily centres its hole on the image it is given: tiles would each get a hole
    of their own, so a many-tile plan is refused before any work; one tile runs."""
    from flowrestore.degradations import InpaintingFamily

    calls = []

    def net(x, t):
        calls.append(x.shape)
        return x

    flow = fr.DiracSDE(net, InpaintingFamily(size=Linear(0.0, 10.0)), Geometric(0.01, 0.05))
    y = torch.rand(3, 60, 70, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="InpaintingFamily.*tile=0"):
        restore_tiled(flow, fr.EulerMaruyama(), y, steps=1, tile=40, overlap=4)
    assert calls == []
    out = restore_tiled(flow, fr.EulerMaruyama(), y, steps=1, tile=0)
    assert out.shape == y.shape


def test_task_parameters_of_any_name_type_are_refused_by_name():
    """Unknown parameter names are listed even when they are not strings (sorting a mix of
    names used to raise a bare TypeError)."""
    with pytest.raises(ConfigError, match=r"unknown parameters \[('Noise', 1|1, 'Noise')\]"):
        get_task("deblur").resolve({1: 0.1, "Noise": 0.1})


def test_an_array_upsample_mode_is_a_config_error():
    """``v in (names)`` on an array compares element-wise and raised numpy's ValueError."""
    np = pytest.importorskip("numpy")
    with pytest.raises(ConfigError, match="upsample must be"):
        get_task("sr4").resolve({"upsample": np.array(["bicubic", "nearest"])})


@pytest.mark.parametrize("factor,mode", [(0, "bicubic"), (True, "bicubic"), (2.0, "nearest"),
                                         (2, "area"), (2, None)])  # fmt: skip
def test_down_up_checks_its_arguments_when_built(factor, mode):
    """A zero factor used to fail with ZeroDivisionError at the first call, an unknown mode inside
    torch's interpolate."""
    with pytest.raises(ConfigError, match="DownUp: (factor|mode) must be"):
        DownUp(factor, mode)


@pytest.mark.parametrize("noise", [float("nan"), -0.5, float("inf"), True, "0.1"])
def test_a_noisy_degradation_refuses_a_bad_std(noise):
    """Built by hand (not through Task.degradation), a NaN std used to give NaN images."""
    from flowrestore.tasks.blend import NoisyDegradation, identity

    with pytest.raises(ConfigError, match="noise must be a finite number >= 0"):
        NoisyDegradation(identity, noise, task="denoise", params={})


def test_blend_family_refuses_an_operator_that_is_not_callable_and_blends_exactly():
    """A_t x = x + t (A x − x), ∂_t A_t x = A x − x, for A = 2·x (so A_t x = (1 + t) x)."""
    with pytest.raises(ConfigError, match="operator must be a callable"):
        BlendFamily(2.0)
    fam = BlendFamily(lambda x: 2 * x)
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.25, 1.0])
    assert torch.allclose(fam(x, t), x * (1 + t)[:, None, None, None])
    assert torch.allclose(fam.time_derivative(x, t), x)
    assert fam(x, 0.0) is x or torch.equal(fam(x, 0.0), x)


def test_probing_leaves_a_train_mode_networks_buffers_alone():
    """Measuring a network (receptive field, speed) must not change it: a BatchNorm in train
    mode would keep the random probe's statistics as its running mean and variance."""
    from flowrestore.tiling import seconds_per_megapixel

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x, t):
            return self.norm(self.conv(x))

    net = Net().train()
    with torch.no_grad():
        net.norm.running_mean.fill_(0.25)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    receptive_radius(fr.InDIFlow(net), multiple=1)
    seconds_per_megapixel(fr.InDIFlow(net), (32, 32))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_shipped_overlaps_are_the_documented_ones():
    """flowrestore.tiling's docstring: 48 px for the shipped InDI predictors, 52 px for
    dirac-deblur (its blur's reach added to the U-Net's), on the U-Net's 4-px grid."""
    from flowrestore.pretrained import flow_for, pretrained

    for name, overlap in (("indi-deblur", 48), ("indi-sr4", 48), ("dirac-deblur", 52)):
        plan = plan_tiles(2000, 1500, model=flow_for(pretrained(name)))
        assert plan.overlap == overlap, name
        assert all(a % 4 == 0 for a, _ in plan.rows + plan.cols)
