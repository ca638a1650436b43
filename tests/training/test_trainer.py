"""Training loop: the loss decreases, checkpoints round-trip, resume reproduces a straight run."""

import pytest
import torch

from flowrestore.errors import ConfigError
from flowrestore.training.checkpoint import load_checkpoint, load_predictor
from flowrestore.training.cli import config_from_args, main
from flowrestore.training.data import PatchDataset, make_degradation, training_images
from flowrestore.training.losses import indi_loss
from flowrestore.training.trainer import TrainConfig, train

TINY = {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1}


def tiny_config(**kw):
    base = dict(
        task="denoise",
        task_params={"sigma": 0.2},
        steps=40,
        batch_size=8,
        patch_size=16,
        lr=3e-3,
        ema_decay=0.9,
        unet=TINY,
        log_interval=10,
    )
    base.update(kw)
    return TrainConfig(**base)


def eval_loss(model, cfg):
    ds = PatchDataset(
        training_images(), patch_size=16, degradation=make_degradation("denoise", sigma=0.2)
    )
    x, y = ds.sample(32, torch.Generator().manual_seed(123))
    with torch.no_grad():
        return float(indi_loss(model, x, y, p=cfg.loss_p, t=torch.linspace(0.05, 1, 32)))


def test_short_run_decreases_loss():
    cfg = tiny_config(loss_p=2)
    torch.manual_seed(cfg.seed)
    from flowrestore.training.trainer import build_model

    before = eval_loss(build_model(cfg), cfg)
    model, hist = train(cfg, progress=False)
    assert len(hist.loss) == 40
    after = eval_loss(model, cfg)
    assert after < 0.8 * before, (before, after)
    assert sum(hist.loss[-10:]) < sum(hist.loss[:10])  # training loss too


def test_checkpoint_round_trip_and_exact_resume(tmp_path):
    kw = dict(
        steps=6, eps=0.05, tdist="power", tdist_params={"k": 2.0}, task="deblur", task_params={}
    )
    straight, h_straight = train(
        tiny_config(**kw, checkpoint=str(tmp_path / "full.pt")), progress=False
    )

    half_cfg = tiny_config(**{**kw, "steps": 3}, checkpoint=str(tmp_path / "half.pt"))
    half, h_half = train(half_cfg, progress=False)
    ck = load_checkpoint(tmp_path / "half.pt")
    assert ck["step"] == 3
    assert TrainConfig.from_dict(ck["config"]) == half_cfg
    assert ck["model"].keys() == half.state_dict().keys()
    assert all(torch.equal(ck["model"][k], v) for k, v in half.state_dict().items())
    assert all(torch.equal(ck["ema"]["shadow"][k], v) for k, v in h_half.ema.shadow.items())

    resumed, h_res = train(
        tiny_config(**kw, checkpoint=str(tmp_path / "res.pt")),
        progress=False,
        resume=tmp_path / "half.pt",
    )
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert h_res.loss == h_straight.loss
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "res.pt")
    assert all(torch.equal(a["ema"]["shadow"][k], v) for k, v in b["ema"]["shadow"].items())
    assert a["rng"]["generators"][0].equal(b["rng"]["generators"][0])

    pred = load_predictor(tmp_path / "full.pt")
    assert not pred.training and pred.train_config == a["config"]
    x = torch.rand(2, 3, 16, 16)
    h_straight.ema.copy_to(straight)
    with torch.no_grad():
        assert torch.equal(pred(x, torch.tensor([0.3, 0.7])), straight(x, torch.tensor([0.3, 0.7])))

    with pytest.raises(ConfigError, match="different config"):
        train(tiny_config(**{**kw, "lr": 1e-3}), progress=False, resume=tmp_path / "half.pt")


def test_dirac_method_runs():
    model, hist = train(
        tiny_config(method="dirac", task="deblur", task_params={}, steps=3, lookahead=0.2),
        progress=False,
    )
    assert len(hist.loss) == 3 and all(torch.isfinite(torch.tensor(hist.loss)))


def test_config_validation_and_cli(tmp_path, capsys):
    with pytest.raises(ConfigError, match="method"):
        TrainConfig(method="ddpm")
    with pytest.raises(ConfigError, match="unknown parameters"):
        TrainConfig(task="deblur", task_params={"quality": 3})
    with pytest.raises(ConfigError, match="unknown time distribution"):
        TrainConfig(tdist="gamma")
    args = [
        "--task",
        "sr4",
        "--steps",
        "2",
        "--patch-size",
        "16",
        "--batch-size",
        "2",
        "--base-channels",
        "8",
        "--channel-mults",
        "1,2",
        "--tdist",
        "beta",
        "--tdist-param",
        "a=3",
        "--task-param",
        'upsample="nearest"',
        "--no-progress",
        "--out",
        str(tmp_path / "cli.pt"),
    ]
    cfg, _ = config_from_args(args)
    assert cfg.tdist_params == {"a": 3} and cfg.task_params == {"upsample": "nearest"}
    assert cfg.unet == {"base_channels": 8, "channel_mults": [1, 2]}
    assert main(args) == 0
    assert load_checkpoint(tmp_path / "cli.pt")["step"] == 2


def test_training_command_and_its_alias(tmp_path):
    """``python -m flowrestore.training`` is the command; ``-m flowrestore.training.trainer`` (the
    form the registry's recorded commands use) runs the same one."""
    import json
    import subprocess
    import sys

    args = [
        "--task", "denoise", "--steps", "1", "--patch-size", "16", "--batch-size", "2",
        "--base-channels", "8", "--channel-mults", "1,2", "--no-progress",
    ]  # fmt: skip
    for i, module in enumerate(("flowrestore.training", "flowrestore.training.trainer")):
        out = tmp_path / f"run{i}.pt"
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == 1
        assert load_checkpoint(out)["step"] == 1


def test_checkpoints_are_written_every_n_steps_and_at_the_end(tmp_path, monkeypatch):
    """``checkpoint_every=2`` over 5 steps: after steps 2 and 4, and after the last one."""
    import flowrestore.training.trainer as T

    saved = []
    real = T.save_checkpoint

    def spy(path, model, ema, opt, done, *a, **kw):
        saved.append(done)
        return real(path, model, ema, opt, done, *a, **kw)

    monkeypatch.setattr(T, "save_checkpoint", spy)
    cfg = tiny_config(steps=5, checkpoint=str(tmp_path / "c.pt"), checkpoint_every=2)
    train(cfg, progress=False)
    assert saved == [2, 4, 5]


def test_non_finite_loss_stops_training_before_the_optimiser_step(tmp_path):
    """lr=10 without clipping diverges: the first NaN loss raises NonFiniteError naming the step
    and the loss, the model keeps the weights that produced it and no NaN checkpoint is written."""
    from flowrestore.errors import NonFiniteError

    out = tmp_path / "nan.pt"
    cfg = TrainConfig(
        task="deblur",
        steps=20,
        batch_size=2,
        patch_size=16,
        lr=10.0,
        grad_clip=None,
        unet=dict(base_channels=4, channel_mults=[1, 2], residual=False),
        checkpoint=str(out),
        checkpoint_every=1,
    )
    with pytest.raises(NonFiniteError, match=r"step \d+ is nan"):
        train(cfg, progress=False)
    if out.exists():  # an earlier checkpoint may stay, but only with finite weights
        ck = load_checkpoint(out)
        assert all(torch.isfinite(v).all() for v in ck["model"].values())
        assert all(torch.isfinite(v).all() for v in ck["ema"]["shadow"].values())


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        (dict(eps=float("inf")), "eps"),
        (dict(grad_clip=-1.0), "grad_clip"),
        (dict(grad_clip=float("inf")), "grad_clip"),
        (dict(sigma_min="a"), "sigma_min"),
        (dict(seed=1.5), "seed"),
        (dict(seed="a"), "seed"),
        (dict(threads=-1), "threads"),
        (dict(unet={"foo": 1}), "foo"),
        (dict(unet={"in_channels": 1}), "in_channels"),
        (dict(task="sr4", task_params={}, patch_size=18), "patch_size"),
        (dict(task="deblur", task_params={}, patch_size=3), "patch_size"),
        (dict(method="dirac", task="deblur", task_params={}, sigma_max=float("inf")), "sigma_max"),
        (dict(method="dirac", task="deblur", task_params={}, eps=0.1), "eps"),
        (dict(method="dirac", task="deblur", task_params={}, brownian=True), "brownian"),
        (dict(method="dirac", task="deblur", task_params={}, loss_p=2), "loss_p"),
        (dict(lookahead=0.5), "lookahead"),
        (dict(brownian=True), "brownian"),
        (dict(augment="no"), "augment"),
    ],
)
def test_bad_or_ignored_options_are_refused_at_construction(kw, name):
    with pytest.raises(ConfigError, match=name):
        tiny_config(**kw)


def test_grad_clip_zero_means_no_clipping_like_the_command_line(tmp_path):
    assert tiny_config(grad_clip=0).grad_clip == 0
    cfg, _ = config_from_args(["--out", str(tmp_path / "x.pt"), "--grad-clip", "0"])
    assert cfg.grad_clip is None


def test_unwritable_checkpoint_is_refused_before_the_first_step(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    steps = []
    cfg = tiny_config(steps=2, checkpoint=str(tmp_path / "file" / "x.pt"))
    with pytest.raises(ConfigError, match="checkpoint"):
        train(cfg, progress=False, callback=lambda step, *_: steps.append(step))
    assert steps == []


def test_resume_refuses_steps_at_or_below_the_checkpoint_and_non_checkpoints(tmp_path):
    half = tmp_path / "half.pt"
    train(tiny_config(steps=3, checkpoint=str(half)), progress=False)
    for steps in (2, 3):
        with pytest.raises(ConfigError, match=r"steps=\d.*step 3"):
            train(tiny_config(steps=steps), progress=False, resume=half)
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ConfigError, match="not a flowrestore training checkpoint"):
        train(tiny_config(steps=4), progress=False, resume=png)


def test_command_line_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    args = ["--out", str(tmp_path / "x.pt"), "--threads", "-1", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "threads" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="threads"):
        main([*args, "--debug"])
