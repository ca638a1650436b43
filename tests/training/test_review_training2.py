"""Review of the training package: checkpoint safety, typed errors on user input, closed forms of
the losses and time laws, and the distributed backend."""

import math
import os

import numpy as np
import pytest
import torch

import flowrestore.training.checkpoint as C
from flowrestore.errors import ConfigError, ShapeError
from flowrestore.training.checkpoint import load_checkpoint, load_predictor, save_checkpoint
from flowrestore.training.cli import main
from flowrestore.training.data import PatchDataset
from flowrestore.training.ema import EMA
from flowrestore.training.losses import dirac_ir_loss, indi_loss
from flowrestore.training.tdist import Beta, Power, Uniform
from flowrestore.training.trainer import TrainConfig, build_model, train
from flowrestore.training.unet import UNet

TINY = {"base_channels": 4, "channel_mults": [1, 2], "num_res_blocks": 1}


def tiny(**kw):
    base = dict(task="denoise", steps=2, batch_size=2, patch_size=16, unet=TINY, log_interval=1)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- checkpoints


def test_a_user_file_at_the_checkpoint_path_is_never_overwritten(tmp_path):
    """Was: save_checkpoint (and a whole training run) silently replaced any file at the path."""
    user = tmp_path / "photo.png"
    user.write_bytes(b"\x89PNG precious")
    with pytest.raises(ConfigError, match="photo.png.*not a flowrestore checkpoint"):
        save_checkpoint(user, UNet(**TINY), None, None, 0, {})
    steps = []
    with pytest.raises(ConfigError, match="checkpoint=.*photo.png"):  # refused before step 1
        train(tiny(checkpoint=str(user)), progress=False, callback=lambda s, *_: steps.append(s))
    assert steps == [] and user.read_bytes() == b"\x89PNG precious"
    # a checkpoint is replaced as before
    ck = tmp_path / "ck.pt"
    save_checkpoint(ck, UNet(**TINY), None, None, 1, {})
    save_checkpoint(ck, UNet(**TINY), None, None, 2, {})
    assert load_checkpoint(ck)["step"] == 2


def test_a_failed_write_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    """Was: a write that failed half-way (disk full, interrupt) left ``ck.pt.tmp<pid>`` behind."""
    ck = tmp_path / "ck.pt"
    save_checkpoint(ck, UNet(**TINY), None, None, 1, {})

    def half_then_fail(obj, f):
        f.write(b"PK\x03\x04 half")
        raise OSError("No space left on device")

    monkeypatch.setattr(C.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(ck, UNet(**TINY), None, None, 2, {})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    assert load_checkpoint(ck)["step"] == 1


def test_the_checkpoint_is_flushed_to_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    """Was: no fsync, so after a crash the renamed file could be empty on some file systems."""
    calls = []
    real = os.fsync
    monkeypatch.setattr(C.os, "fsync", lambda fd: calls.append(fd) or real(fd))
    save_checkpoint(tmp_path / "ck.pt", UNet(**TINY), None, None, 1, {})
    # the file's own data, then the folder's entry for it (flowrestore.paths.write_atomic)
    assert len(calls) == 2


def test_a_newer_checkpoint_format_is_named_in_the_error(tmp_path):
    """Was: "not a flowrestore training checkpoint" for a checkpoint of another version."""
    ck = tmp_path / "ck.pt"
    save_checkpoint(ck, UNet(**TINY), None, None, 1, {})
    obj = torch.load(ck, weights_only=True)
    obj["format"] = "flowrestore-checkpoint/2"
    torch.save(obj, ck)
    with pytest.raises(ConfigError, match=r"ck\.pt.*flowrestore-checkpoint/2.*reads .*/1"):
        load_checkpoint(ck)


def test_weights_that_do_not_fit_the_unet_config_give_a_one_line_error(tmp_path):
    """Was: a multi-line RuntimeError from load_state_dict (or a bare TypeError)."""
    ck = tmp_path / "ck.pt"
    save_checkpoint(ck, UNet(**TINY), EMA(UNet(**TINY)), None, 1, {})
    obj = torch.load(ck, weights_only=True)
    for change in ({"base_channels": 8}, {"bogus": 1}):
        bad = {**obj, "unet_config": {**obj["unet_config"], **change}}
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match=r"bad\.pt") as err:
            load_predictor(tmp_path / "bad.pt")
        assert "\n" not in str(err.value)


def test_resuming_a_checkpoint_without_optimiser_or_ema_is_a_config_error(tmp_path):
    """Was: TypeError 'NoneType' object is not subscriptable, from inside the resume."""
    cfg = tiny(steps=3)
    ck = tmp_path / "weights_only.pt"
    save_checkpoint(ck, build_model(cfg), None, None, 1, cfg)
    with pytest.raises(ConfigError, match=r"weights_only\.pt.*\['ema', 'optimizer'\]"):
        train(cfg, progress=False, resume=ck)


def test_ema_refuses_the_state_of_another_model():
    """Was: load_state_dict took any shadow; update then failed with a bare KeyError or a
    broadcasting RuntimeError (or silently broadcast a weight of another shape)."""
    ema = EMA(torch.nn.Linear(3, 4))
    with pytest.raises(ShapeError, match="weight"):
        ema.load_state_dict(EMA(torch.nn.Linear(4, 4)).state_dict())
    with pytest.raises(ShapeError, match="names"):
        ema.update(torch.nn.Sequential(torch.nn.Linear(3, 4)))
    with pytest.raises(ShapeError, match="weight"):
        ema.update(torch.nn.Linear(4, 4))


# ----------------------------------------------------------------------------- user input


def test_command_line_channel_mults_that_are_not_ints_are_a_one_line_error(tmp_path, capsys):
    """Was: a ValueError traceback from int()."""
    out = tmp_path / "x.pt"
    assert main(["--out", str(out), "--channel-mults", "1,x", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--channel-mults" in err and "'1,x'" in err and "\n" not in err


def test_command_line_grad_clip_nan_is_refused_not_read_as_no_clipping(tmp_path, capsys):
    """Was: ``--grad-clip nan`` silently meant "no clipping" (nan > 0 is false)."""
    tiny_run = ["--task", "denoise", "--steps", "1", "--patch-size", "16", "--batch-size", "2",
                "--base-channels", "4", "--channel-mults", "1,2", "--no-progress"]  # fmt: skip
    assert main(["--out", str(tmp_path / "x.pt"), "--grad-clip", "nan", *tiny_run]) == 2
    assert "grad_clip" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        (dict(tdist="power", tdist_params=[2]), "tdist_params"),  # was a bare TypeError
        (dict(checkpoint=""), "checkpoint"),  # was: trained, then silently wrote nothing
        (dict(unet={"emb_dim": 0}), "emb_dim"),  # was a RuntimeError from nn.Linear at train
    ],
)
def test_more_bad_options_are_refused_at_construction(kw, name):
    with pytest.raises(ConfigError, match=name):
        tiny(**kw)


def test_bools_and_non_finite_numbers_are_not_taken_for_parameters():
    """Was: True read as 1 (k, a, p, patch size, a channel multiplier), lookahead=True a bare
    RuntimeError, eps=inf a loss of inf, channel_mults=3 a bare TypeError."""
    x = torch.rand(2, 1, 4, 4)
    ident = lambda z, t: z  # noqa: E731
    for make in (lambda: Power(k=True), lambda: Beta(a=True), lambda: Beta(b=True)):
        with pytest.raises(ConfigError):
            make()
    with pytest.raises(ConfigError, match="p must"):
        indi_loss(ident, x, x, p=True)
    with pytest.raises(ConfigError, match="eps"):
        indi_loss(ident, x, x, eps=float("inf"))
    with pytest.raises(ConfigError, match="lookahead"):
        dirac_ir_loss(ident, x, A=lambda z, t: z, sigma=lambda t: 0.1 + 0 * t, lookahead=True)
    with pytest.raises(ConfigError, match="patch_size"):
        PatchDataset([torch.rand(1, 8, 8)], patch_size=True)
    with pytest.raises(ConfigError, match="emb_dim"):
        UNet(**TINY, emb_dim=True)
    with pytest.raises(ConfigError, match="channel_mults"):  # was a bare TypeError
        UNet(channel_mults=3)
    with pytest.raises(ConfigError, match="channel_mults"):
        UNet(channel_mults=[1, True])


@pytest.mark.parametrize("t", [1.5, -0.25, float("nan")])
def test_a_given_time_outside_zero_one_is_refused(t):
    """Was: t=1.5 silently extrapolated past y, t=NaN gave a NaN loss."""
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        indi_loss(lambda z, s: z, x, x, t=t)
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        dirac_ir_loss(
            lambda z, s: z, x, A=lambda z, s: z, sigma=lambda s: 0.1 + 0 * s, lookahead=0, t=t
        )


def test_patch_dataset_refuses_an_empty_batch_and_numpy_images():
    """Was: RuntimeError "stack expects a non-empty TensorList"; numpy images failed later."""
    ds = PatchDataset([torch.rand(1, 8, 8)], patch_size=4)
    for n in (0, -1, 2.0):
        with pytest.raises(ConfigError, match="n must"):
            ds.sample(n, torch.Generator().manual_seed(0))
    with pytest.raises(ShapeError, match="torch tensors"):
        PatchDataset({"a": np.zeros((1, 8, 8), dtype=np.float32)}, patch_size=4)


def test_distributed_training_uses_gloo_even_where_cuda_is_available(monkeypatch):
    """The model stays on the CPU, which nccl cannot reduce: was nccl whenever CUDA was there."""
    import torch.distributed as dist

    from flowrestore.training import trainer as T

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    used = []

    class Stop(Exception):
        pass

    def fake_init(backend, *a, **kw):
        used.append(backend)
        raise Stop

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", fake_init)
    with pytest.raises(Stop):
        T._dist_info()
    assert used == ["gloo"]


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("brownian", [False, True])
def test_indi_noise_term_has_the_papers_variance(brownian):
    """With y = x and F the identity, F(x_t) - x = t ε_t n, so the p=2 loss is (t ε_t)²:
    ε² t² for constant ε_t = ε, ε² t for Brownian ε_t = ε/√t (the paper's two cases)."""
    x = torch.rand(1, 1, 256, 256)
    eps, t = 0.3, 0.25
    got = float(
        indi_loss(
            lambda z, s: z,
            x,
            x,
            p=2,
            eps=eps,
            brownian=brownian,
            t=t,
            generator=torch.Generator().manual_seed(0),
        )
    )
    want = eps**2 * (t if brownian else t**2)
    assert got == pytest.approx(want, rel=0.02)


@pytest.mark.parametrize("p", [1, 2])
def test_indi_deterministic_loss_is_the_per_sample_mean_of_t_times_the_gap(p):
    """ε = 0, F the identity: F(x_t, t) - x = t (y - x); the loss is the batch mean of
    t_b^p · mean|y_b - x_b|^p (reduction over samples of the per-pixel mean)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 2, 5, 5, generator=g), torch.rand(3, 2, 5, 5, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    gap = (y - x).abs().pow(p).flatten(1).mean(1)
    want = (t.pow(p) * gap).mean()
    got = indi_loss(lambda z, s: z, x, y, p=p, t=t)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    per = indi_loss(lambda z, s: z, x, y, p=p, t=t, reduction="none")
    assert torch.allclose(per, t.pow(p) * gap, rtol=1e-5)


@pytest.mark.parametrize(("t", "look", "tau"), [(0.7, 0.2, 0.5), (0.7, 1.0, 0.0), (0.3, 0.0, 0.3)])
def test_dirac_loss_closed_form_on_a_scaling_family(t, look, tau):
    """A_s(x) = (1 - s) x, Φ = x0 + c: A_τ(Φ) - A_τ(x0) = (1 - τ) c, so the loss is
    (1 - τ)² c² / σ_t² with τ = max(t - Δt, 0) and σ_t = σ_min^{1-t} σ_max^t (eq. 14, w = 1/σ²)."""
    from flowrestore.schedules import Geometric

    x0 = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    c, smin, smax = 0.2, 0.01, 0.05
    got = dirac_ir_loss(
        lambda z, s: x0 + c,
        x0,
        A=lambda z, s: (1 - s).reshape(-1, 1, 1, 1) * z,
        sigma=Geometric(smin, smax),
        lookahead=look,
        t=t,
        generator=torch.Generator().manual_seed(0),
    )
    sigma_t = smin ** (1 - t) * smax**t
    assert float(got) == pytest.approx((1 - tau) ** 2 * c**2 / sigma_t**2, rel=1e-9)


@pytest.mark.parametrize("law", [Uniform(), Power(k=3.0), Beta(a=2.0, b=0.5)])
def test_time_law_mean_and_cdf_agree_with_their_closed_forms(law):
    """mean = ∫(1 - F); the Power law t = 1 - u^k has F(s) = 1 - (1 - s)^{1/k}; Beta matches
    scipy's; the sample mean is within 4 standard errors."""
    from scipy import integrate, stats

    s = np.linspace(0, 1, 11)
    if isinstance(law, Power):
        assert np.allclose(law.cdf(s), 1 - (1 - s) ** (1 / law.k))
    if isinstance(law, Beta):
        assert np.allclose(law.cdf(s), stats.beta(law.a, law.b).cdf(s))
        assert law.mean == pytest.approx(stats.beta(law.a, law.b).mean())
    integral, _ = integrate.quad(lambda v: 1 - float(law.cdf(v)), 0, 1)
    assert law.mean == pytest.approx(integral, rel=1e-6)
    draws = law.sample(20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(draws.min()) >= 0 and float(draws.max()) <= 1
    assert abs(float(draws.mean()) - law.mean) < 4 * float(draws.std()) / math.sqrt(20000)


def test_same_seed_gives_the_same_weights_and_another_seed_does_not():
    a, _ = train(tiny(), progress=False)
    b, _ = train(tiny(), progress=False)
    c, _ = train(tiny(seed=1), progress=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_a_tdist_parameter_given_twice_is_a_config_error():
    """Was: TypeError "got multiple values for keyword argument 'k'"."""
    with pytest.raises(ConfigError, match=r"\['k'\].*both"):
        tiny(tdist={"name": "power", "k": 2.0}, tdist_params={"k": 3.0})


def test_lfw_patches_larger_than_a_face_are_refused_at_construction_in_one_short_line():
    """Was: accepted, then refused when training started, with all 80 face names listed."""
    with pytest.raises(ConfigError, match="patch_size.*lfw"):
        tiny(dataset="lfw", patch_size=32)
    faces = [torch.rand(1, 25, 25) for _ in range(80)]
    with pytest.raises(ConfigError, match=r"\['0', '1', '2'\] and 77 more \(smallest side 25\)"):
        PatchDataset(faces, patch_size=32)


def test_ema_averages_every_name_of_a_tied_weight():
    """Was: the second name of a shared weight was taken for a buffer and copied raw, and
    ``copy_to`` (last name wins) then loaded the raw weight instead of the average."""
    m = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    m[1].weight = m[0].weight
    w0 = m[0].weight.detach().clone()
    ema = EMA(m, decay=0.5, warmup=False)
    with torch.no_grad():
        m[0].weight.add_(1.0)
    ema.update(m)
    ema.copy_to(m)
    assert torch.allclose(m[0].weight, w0 + 0.5) and torch.allclose(m[1].weight, w0 + 0.5)


def test_a_pathlib_checkpoint_path_is_written_after_training(tmp_path):
    """Was: TrainConfig accepted a Path, trained, then failed at the end with "TypeError: Object
    of type PosixPath is not JSON serializable" (the run lost, no checkpoint)."""
    cfg = tiny(steps=1, checkpoint=tmp_path / "p.pt")
    assert cfg.checkpoint == str(tmp_path / "p.pt")
    train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "p.pt")["config"]["checkpoint"] == str(tmp_path / "p.pt")


def test_a_dirac_family_that_changes_the_shape_is_a_shape_error():
    """Was: a bare broadcasting RuntimeError from ``A_t(x0) + σ_t z``."""
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ShapeError, match="A\\(x0, t\\)"):
        dirac_ir_loss(
            lambda z, s: z,
            x,
            A=lambda z, s: torch.nn.functional.avg_pool2d(z, 4),
            sigma=lambda s: 0.1 + 0 * s,
            lookahead=0.0,
        )


def test_a_non_bool_residual_flag_is_refused():
    """Was: ``residual="false"`` (say, from a JSON file) silently built a residual U-Net."""
    with pytest.raises(ConfigError, match="residual"):
        UNet(**TINY, residual="false")
    with pytest.raises(ConfigError, match="residual"):
        tiny(unet={**TINY, "residual": "false"})


def test_a_checkpoint_with_numpy_or_path_values_can_be_loaded_back(tmp_path):
    """Was: save_checkpoint pickled a numpy number or a Path from a dict config (or a numpy
    loss in the history) and wrote a file that load_checkpoint (weights_only) then refused."""
    from pathlib import Path

    ck = tmp_path / "ck.pt"
    cfg = {"lr": np.float32(0.5), "out": Path("a/b.pt"), "shape": (1, 2)}
    save_checkpoint(ck, UNet(**TINY), None, None, 1, cfg, history=[np.float32(0.25)])
    got = load_checkpoint(ck)
    assert got["config"] == {"lr": 0.5, "out": "a/b.pt", "shape": [1, 2]}
    assert got["history"] == [0.25]
    with pytest.raises(ConfigError, match="JSON"):
        save_checkpoint(ck, UNet(**TINY), None, None, 1, {"f": object()})


def test_a_file_with_pickled_objects_is_refused_in_one_plain_line_naming_the_class(tmp_path):
    """Was: the first line of torch's weights-only message, with terminal colour codes and
    without the class that made the load fail."""
    from pathlib import PurePosixPath

    bad = tmp_path / "pickled.pt"
    torch.save({"format": "flowrestore-checkpoint/1", "p": PurePosixPath("x")}, bad)
    with pytest.raises(ConfigError, match=r"pickled\.pt.*PurePosixPath") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)


def test_a_non_finite_loss_on_another_rank_stops_this_rank_too(monkeypatch):
    """Was: only the rank with the NaN loss raised; the others went on into DDP's gradient
    all-reduce and waited there for ever. Two ranks are simulated: the all-reduce reports that
    the other rank's loss was not finite, this rank's loss is finite."""
    import types

    import torch.distributed as dist

    from flowrestore.errors import NonFiniteError
    from flowrestore.training import trainer as T

    def other_rank_nan(flag, *a, **kw):
        flag.add_(1.0)

    monkeypatch.setattr(dist, "all_reduce", other_rank_nan)
    model = torch.nn.Linear(2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = types.SimpleNamespace(
        net=model,
        model=model,
        config=types.SimpleNamespace(batch_size=1, lr=0.1, grad_clip=None),
        gen=torch.Generator(),
        losses=[],
        world=2,
        rank=0,
        opt=torch.optim.SGD(model.parameters(), lr=0.1),
        ema=EMA(model),
    )
    objective = types.SimpleNamespace(loss=lambda net, *a: net(torch.ones(1, 2)).square().sum())
    with pytest.raises(NonFiniteError, match="step 1 is nan on another rank"):
        T._step(run, objective, None)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("name", ["lfw_subset", "stereo_motorcycle", "download_all"])
def test_load_image_refuses_what_is_not_a_photo(name):
    """Was: lfw_subset came out as a 25-"channel" image, a stereo pair as a bare error, and
    download_all started downloading every data set."""
    from flowrestore.training.data import load_image

    with pytest.raises(ConfigError, match=name) as err:
        load_image(name)
    assert "\n" not in str(err.value)


def test_training_gives_back_the_callers_random_state_and_thread_count():
    """``train`` seeded torch's global generator and set the thread count for good: a research
    script's next ``torch.randn`` depended on whether it had trained a model before."""
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    want = torch.randn(4)
    torch.manual_seed(1234)
    train(tiny(threads=threads + 1), progress=False)
    assert torch.equal(torch.randn(4), want)
    assert torch.get_num_threads() == threads
