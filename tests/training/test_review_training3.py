"""Training review, third pass: each test failed before its fix (docstrings say what it was)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import flowrestore.tasks as tasks_mod
from flowrestore.errors import ArgumentTypeError, ConfigError
from flowrestore.training import EMA, TrainConfig, UNet, train
from flowrestore.training.cli import config_from_args, main
from flowrestore.training.losses import dirac_ir_loss, indi_loss
from flowrestore.training.tdist import Beta, Power

TINY = {"base_channels": 4, "channel_mults": [1, 2], "emb_dim": 8}


def test_training_tasks_follow_the_task_registry(monkeypatch):
    """Was: ``flowrestore.training.data.TASKS`` a tuple taken at import, missing a task
    registered later in :data:`flowrestore.tasks.TASKS` (that TrainConfig, the CLI and
    make_degradation all accepted)."""
    import flowrestore.training as training
    import flowrestore.training.data as data

    before = training.TASKS  # read (and, before the fix, cached) before the registration
    assert before == tasks_mod.task_names()
    extra = dataclasses.replace(tasks_mod.TASKS["denoise"], name="denoise_copy")
    monkeypatch.setitem(tasks_mod.TASKS, "denoise_copy", extra)
    assert "denoise_copy" not in before
    assert data.TASKS == tasks_mod.task_names()
    assert training.TASKS == tasks_mod.task_names()
    from flowrestore.training.data import TASKS

    assert isinstance(TASKS, tuple) and TASKS[-1] == "denoise_copy"
    cfg, _ = config_from_args(["--out", "x.pt", "--task", "denoise_copy"])  # the CLI agrees
    assert cfg.task == "denoise_copy"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--steps", "abc"], "--steps"),
        (["--task", "nope"], "--task"),
        (["--loss-p", "3"], "--loss-p"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_a_bad_command_line_argument_is_refused_in_one_line(argv, flag, tmp_path, capsys):
    """Was: argparse's whole usage block (about 20 lines) before the error line."""
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "x.pt"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m flowrestore.training: error:")
    assert flag in err
    assert not (tmp_path / "x.pt").exists()


def test_a_missing_out_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["--steps", "2"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err


def test_an_empty_channel_mults_is_refused_not_read_as_the_default():
    """Was: ``--channel-mults ''`` silently trained the default U-Net (2000 steps)."""
    with pytest.raises(ConfigError, match="--channel-mults"):
        config_from_args(["--out", "x.pt", "--channel-mults", ""])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.complex64])
def test_unet_refuses_a_non_floating_input(dtype):
    """Was: a uint8 image went through and came back as uint8 (the prediction truncated to
    integers); a complex one lost its imaginary part with only a warning."""
    net = UNet(in_channels=1, **TINY)
    x = torch.ones(1, 1, 8, 8, dtype=dtype)
    with pytest.raises(ArgumentTypeError, match="dtype"):
        net(x, 0.5)
    with pytest.raises(ArgumentTypeError, match="torch.Tensor"):
        net(np.ones((1, 1, 8, 8), np.float32), 0.5)


def test_ema_refuses_a_boolean_decay_and_takes_numpy_numbers():
    """Was: ``decay=False`` taken as 0 (no averaging at all); ``np.float32(0.99)`` refused."""
    net = UNet(in_channels=1, **TINY)
    with pytest.raises(ConfigError, match="decay"):
        EMA(net, decay=False)
    assert EMA(net, decay=np.float32(0.5), warmup=False).current_decay() == 0.5


def test_time_laws_take_numpy_parameters():
    """Was: "k must be a finite number > 0, got np.float32(2.0)" (a false message)."""
    p = Power(k=np.float32(3.0))
    assert p.mean == pytest.approx(3.0 / 4.0)
    b = Beta(a=np.float64(2.0), b=np.int64(1))
    assert b.mean == pytest.approx(2.0 / 3.0)
    for law in (p, b):
        t = law.sample(8, torch.Generator().manual_seed(0))
        assert t.shape == (8,) and bool(((t >= 0) & (t <= 1)).all())


def test_losses_take_numpy_eps_and_lookahead():
    """Was: ``eps=np.float32(0.1)`` and ``lookahead=np.float32(0.5)`` refused as not numbers.
    With y = x and F the identity the InDI p=2 loss at fixed t is (t ε)² E n² ≈ (t ε)²."""
    x = torch.rand(4, 1, 32, 32, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    loss = indi_loss(lambda a, t: a, x, x, p=2, eps=np.float32(0.1), t=0.5, generator=g)
    assert float(loss) == pytest.approx((0.5 * 0.1) ** 2, rel=0.05)
    fam = lambda z, s: z * (1 - s).reshape(-1, 1, 1, 1)  # noqa: E731  A_s = (1 - s) I
    out = dirac_ir_loss(
        lambda y, t: x + 0.1, x, A=fam, sigma=lambda t: 0.5 + 0 * t,
        lookahead=np.float32(0.5), t=0.75,
    )  # fmt: skip
    # A_τ(Φ) - A_τ(x) = (1 - τ) 0.1 with τ = 0.25, weight 1/σ² = 4
    assert float(out) == pytest.approx(4 * (0.75 * 0.1) ** 2, rel=1e-12)


@pytest.mark.parametrize("which", ["indi", "dirac"])
def test_an_unknown_reduction_is_refused_before_the_network_runs(which):
    """Was: the predictor ran on the whole batch first, then reduce_loss refused 'avg'."""
    calls = []

    def net(a, t):
        calls.append(1)
        return a

    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="reduction"):
        if which == "indi":
            indi_loss(net, x, x, reduction="avg")
        else:
            dirac_ir_loss(
                net, x, A=lambda z, s: z, sigma=lambda t: 0.1 + 0 * t, lookahead=0.0,
                reduction="avg",
            )  # fmt: skip
    assert not calls


def test_a_resumed_dirac_run_with_a_beta_law_equals_the_straight_run(tmp_path):
    """Resume is exact for Dirac too (t from an inverse-CDF Beta law, look-ahead target,
    geometric σ_t): every draw of a step comes from the checkpointed generator."""
    kw = dict(
        task="deblur", method="dirac", lookahead=0.3, tdist="beta", tdist_params={"a": 2, "b": 1},
        unet=TINY, patch_size=8, batch_size=2, ema_decay=0.5, log_interval=1, dataset="lfw",
    )  # fmt: skip
    straight, h1 = train(TrainConfig(steps=4, **kw), progress=False)
    train(TrainConfig(steps=2, checkpoint=str(tmp_path / "half.pt"), **kw), progress=False)
    resumed, h2 = train(TrainConfig(steps=4, **kw), progress=False, resume=tmp_path / "half.pt")
    assert h1.loss == h2.loss
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    for k, v in h1.ema.shadow.items():
        assert torch.equal(v, h2.ema.shadow[k]), k


def test_training_reseeds_only_the_cpu_generator(monkeypatch):
    """Was: ``torch.manual_seed(seed)`` in the trainer also reseeded every CUDA device, a state
    ``fork_rng(devices=[])`` does not restore: a caller's GPU random stream changed after
    ``train`` on a CUDA machine."""
    calls = []
    for mod in (torch.cuda, torch.mps, torch.xpu):
        for name in ("manual_seed", "manual_seed_all"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: calls.append(_n))
    cfg = TrainConfig(steps=1, unet=TINY, patch_size=8, batch_size=2, seed=3, dataset="lfw")
    train(cfg, progress=False)
    assert calls == []


def test_patch_dataset_refuses_a_task_name_for_degradation_and_a_string_augment():
    """Was: ``degradation="deblur"`` accepted, then "'str' object is not callable" at the first
    batch; ``augment="false"`` read as True (patches flipped and rotated)."""
    from flowrestore.training.data import PatchDataset, make_degradation

    imgs = [torch.rand(1, 12, 12)]
    with pytest.raises(ConfigError, match="make_degradation"):
        PatchDataset(imgs, patch_size=8, degradation="deblur")
    with pytest.raises(ConfigError, match="augment"):
        PatchDataset(imgs, patch_size=8, augment="false")
    ds = PatchDataset(imgs, patch_size=8, degradation=make_degradation("denoise", sigma=0.0))
    x, y = ds.sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)  # sigma = 0: the degradation is the identity


def test_a_failed_run_closes_the_process_group_it_opened(tmp_path, monkeypatch):
    """Was: a run refused after ``_setup`` (here a resume whose step is already reached) left
    the gloo process group it had opened under torchrun; only a finished run closed it."""
    import torch.distributed as dist

    import flowrestore.training.trainer as trainer

    kw = dict(unet=TINY, patch_size=8, batch_size=2, dataset="lfw")
    ck = tmp_path / "one.pt"
    train(TrainConfig(steps=1, checkpoint=str(ck), **kw), progress=False)
    closed = []
    monkeypatch.setattr(trainer, "_dist_info", lambda: (1, 0, True))  # "this call opened it"
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda *a, **k: closed.append(1))
    with pytest.raises(ConfigError, match="must exceed"):
        train(TrainConfig(steps=1, **kw), progress=False, resume=ck)
    assert closed == [1]
