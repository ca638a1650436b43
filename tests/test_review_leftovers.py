"""Defects noted in earlier reviews and left alone until now (2026-12-07): each test failed
before its fix."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from test_review_restore2 import NaNOnBright
from torch import nn

import flowrestore as fr
from flowrestore.cli import main
from flowrestore.errors import ConfigError
from flowrestore.restore.models import load_model
from flowrestore.training.cli import config_from_args
from flowrestore.training.data import load_image
from flowrestore.training.ema import EMA
from flowrestore.training.tdist import Beta, CallableTimeDistribution, Power, Uniform


def test_restore_refuses_a_task_beside_a_checkpoint(tmp_path, capsys):
    """``--task sr4 --checkpoint my.ckpt`` restored with the checkpoint's task and said nothing
    of the ``--task`` it ignored; now a one-line usage error before any folder is made."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    ck = tmp_path / "my.ckpt"
    ck.write_bytes(b"PK\x03\x04")  # refused before the file is read further
    out = tmp_path / "out"
    argv = ["restore", str(tmp_path / "a.png"), "-o", str(out), "--no-progress"]
    rc = main([*argv, "--task", "sr4", "--checkpoint", str(ck)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--task sr4 and --checkpoint" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="not both"):
        load_model("deblur", ck)


def test_restore_without_task_still_means_deblur(tmp_path, capsys):
    """The default task is unchanged: a solver that the deblur model's method refuses is
    refused as before (InDI's deblur model steps no SDE)."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    rc = main(["restore", str(tmp_path / "a.png"), "-o", str(out), "--solver", "em"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not apply to indi" in err and not out.exists()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["blur_sigma=1", "blur_sigma=2"], "--task-param blur_sigma given twice"),
        (["=2"], "with a name K"),
    ],
)
def test_training_key_values_are_given_once(tmp_path, items, message):
    """A repeated ``--task-param`` key kept the last value without a word (a typo in a long
    command line trained the wrong task); an empty key became a parameter named ``""``."""
    argv = ["--out", str(tmp_path / "m.pt")]
    for item in items:
        argv += ["--task-param", item]
    with pytest.raises(ConfigError, match=message):
        config_from_args(argv)


@pytest.mark.parametrize("law", [Uniform(), Power(k=2.0), Beta(a=2.0, b=1.0)])
@pytest.mark.parametrize("n", [0, -3, 2.5, True, "4"])
def test_time_distribution_sample_size_is_checked(law, n):
    """``sample(0)`` returned an empty batch, ``sample(True)`` one time, ``sample(-3)`` a torch
    error: the size is now a positive int or refused by name."""
    with pytest.raises(ConfigError, match="n must be a positive int"):
        law.sample(n)


def test_time_distribution_takes_numpy_ints():
    t = Uniform().sample(np.int64(5), torch.Generator().manual_seed(0))
    assert t.shape == (5,) and bool(((t >= 0) & (t <= 1)).all())
    wrapped = CallableTimeDistribution(lambda n, g: torch.full((n,), 0.5))
    assert wrapped.sample(np.int32(3)).tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(ConfigError, match="n must be a positive int"):
        wrapped.sample(0)


def test_ema_follows_the_model_to_another_dtype_and_device():
    """The shadow stayed where the model was when the EMA was made: after ``model.double()``
    the average was kept in float32 (a float64 run lost its precision), and after a move to
    another device ``update`` failed inside torch."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, warmup=False)
    model.double()
    with torch.no_grad():
        model.weight.add_(1e-9)  # below float32's resolution at these magnitudes
    before = {k: v.double().clone() for k, v in ema.shadow.items()}
    ema.update(model)
    w = ema.shadow["weight"]
    assert w.dtype == torch.float64
    expect = 0.9 * before["weight"] + 0.1 * model.weight.detach()
    assert torch.allclose(w, expect, rtol=0, atol=1e-15)
    model.to("meta")
    ema.update(model)
    assert all(v.device.type == "meta" for v in ema.shadow.values())


@pytest.mark.parametrize("name", ["eagle", "brain"])
def test_load_image_never_downloads(name, monkeypatch):
    """A scikit-image photo that is not bundled was downloaded (offline: four failed tries and a
    ``ConnectionError``); nothing may download at run time, so it is refused by name."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("load_image opened a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(ConfigError, match=f"'{name}' is not bundled"):
        load_image(name)
    assert load_image("camera", channels=1).shape == (1, 512, 512)


def test_the_progress_bar_ends_at_its_total_when_a_batch_is_retried(tmp_path, monkeypatch):
    """A batch that failed was retried file by file and the bar counted the failed attempt's
    steps too: it ended at 200 % of its total."""
    import flowrestore.restore.run as run
    from flowrestore.restore import restore_files

    bars, make = [], run._progress_bar
    monkeypatch.setattr(run, "_progress_bar", lambda *a: bars.append(make(*a)) or bars[-1])
    for name, v in (("a.png", 10), ("b.png", 250), ("c.png", 20)):
        Image.new("RGB", (8, 8), (v, v, v)).save(tmp_path / name)
    report = restore_files([tmp_path], tmp_path / "out", model=NaNOnBright(), solver="euler",
                           steps=3, device="cpu", progress=True, batch_size=4,
                           log=lambda *_: None)  # fmt: skip
    assert len(report.restored) == 2 and len(report.failed) == 1
    (bar,) = bars
    assert bar.total == 3 * 3 and bar.n == bar.total


def test_an_output_name_near_the_length_limit_is_written(tmp_path):
    """An output name of 250 bytes is valid, but the temporary file ``write_image`` renames
    from added a dot and a suffix and went past the 255-byte limit: the write failed."""
    from flowrestore.imageio import read_image, write_image

    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "a.png")
    target = tmp_path / ("x" * 246 + ".png")
    write_image(target, read_image(tmp_path / "a.png"))
    assert np.asarray(Image.open(target)).tolist() == np.full((4, 4, 3), (1, 2, 3)).tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", target.name])


@pytest.mark.parametrize("channels", [True, False, 2, 1.5])
def test_load_image_channels_is_1_or_3_not_a_bool(channels):
    """``channels=True`` was taken as 1 (``True == 1``): a flag passed where a count belongs."""
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        load_image("camera", channels=channels)


@pytest.mark.parametrize("solver", ["em", "sra1", "torchsde"])
def test_a_brownian_path_of_another_batch_size_is_refused(solver):
    """A path drawn for one sample, used on a batch of four, gave every sample the same noise
    (broadcast) under EulerMaruyama and SRA1 and a reshape error inside torchsde's step."""
    import flowrestore as fr
    from flowrestore.errors import ShapeError
    from flowrestore.noise import BrownianIncrements

    sde = fr.SDEFlow(lambda t, x: -x, lambda t, x: torch.ones_like(x), noise_type="additive")
    grid = torch.linspace(0.0, 1.0, 9, dtype=torch.float64)
    path = BrownianIncrements.sample(grid, (1, 3), generator=torch.Generator().manual_seed(0))
    step = {"em": fr.EulerMaruyama(), "sra1": fr.SRA1(), "torchsde": fr.Torchsde("euler")}[solver]
    x = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"drawn for states of shape \(1, 3\)"):
        fr.solve(sde, step, x, grid=grid, noise=path)
    with pytest.raises(ShapeError, match=r"increments of shape \(1, 3\) for a state"):
        path.increment(grid[0], grid[2], x)
    fine = fr.solve(sde, step, x[:1], grid=grid, noise=path)  # the shape it was drawn for
    assert fine.x.shape == (1, 3) and bool(torch.isfinite(fine.x).all())


def test_a_schedule_given_as_a_numpy_number_is_a_constant():
    """``as_schedule(np.float32(0.5), ...)`` was refused as "not a number" (only Python floats
    and ints were numbers; found by the degradations review); a non-finite one names the
    argument."""
    from flowrestore.schedules.library import Constant, as_schedule

    for v in (np.float32(0.5), np.float64(0.5), np.int64(2), 0.5):
        got = as_schedule(v, name="sigma")
        assert isinstance(got, Constant) and float(got.value(torch.zeros(1))) == float(v)
    for bad in (np.bool_(True), True):
        with pytest.raises(ConfigError, match="sigma must be a Schedule"):
            as_schedule(bad, name="sigma")
    with pytest.raises(ConfigError, match="sigma must be finite"):
        as_schedule(np.float32("inf"), name="sigma")


def test_a_positive_param_starts_at_or_above_its_floor():
    """``Param(1e-9, constraint="positive")`` was built, though the same value given as a
    starting value (``check_value``) is refused: the projection keeps entries at
    ``POSITIVE_FLOOR`` or above (found by the degradations review)."""
    from flowrestore.inversion import POSITIVE_FLOOR, Param

    with pytest.raises(ConfigError, match="init must be >= POSITIVE_FLOOR"):
        Param(POSITIVE_FLOOR / 10, constraint="positive")
    p = Param(POSITIVE_FLOOR, constraint="positive")
    v = p.check_value(POSITIVE_FLOOR, 2, key="w", dtype=torch.float64, device="cpu")
    assert v.tolist() == [POSITIVE_FLOOR, POSITIVE_FLOOR]
    with pytest.raises(ConfigError, match="violates"):
        p.check_value(POSITIVE_FLOOR / 10, 2, key="w", dtype=torch.float64, device="cpu")


def test_task_parameters_take_numpy_numbers_and_resolve_to_plain_python():
    """``get_task("deblur").resolve({"blur_sigma": np.float32(2)})`` was refused as "not a
    finite number" (found by the tasks review); accepted now, and resolved as a Python float
    so that checkpoints and registries stay JSON-plain."""
    import json

    from flowrestore.tasks import get_task

    p = get_task("deblur").resolve({"blur_sigma": np.float32(1.5), "noise": np.float64(0.0)})
    assert p["blur_sigma"] == 1.5 and type(p["blur_sigma"]) is float
    assert type(p["noise"]) is float
    json.dumps(p)
    with pytest.raises(ConfigError, match="blur_sigma must be a finite number >= 0"):
        get_task("deblur").resolve({"blur_sigma": np.float32("nan")})
    with pytest.raises(ConfigError, match="must be a finite number >= 0"):
        get_task("deblur").resolve({"blur_sigma": np.bool_(True)})


def test_a_wide_blur_family_covers_three_standard_deviations_by_default():
    """``GaussianBlurFamily(width=Linear(0.3, 20))`` kept a 61-tap kernel: a width-20 blur was
    cut at 1.5 standard deviations and renormalised (found by the degradations review). The
    default now covers ±3 std; narrow families keep their 61 taps."""
    from flowrestore.degradations.families import GaussianBlurFamily
    from flowrestore.schedules import Linear

    assert GaussianBlurFamily(width=Linear(0.3, 3.0)).kernel_size == 61
    wide = GaussianBlurFamily(width=Linear(0.3, 20.0), padding="circular")
    assert wide.kernel_size == 121
    # the blur of an impulse is the sampled Gaussian of width 20 (its mass beyond ±3 std: 0.27 %)
    x = torch.zeros(1, 1, 1, 201, dtype=torch.float64)
    x[..., 100] = 1.0
    row = wide(x, torch.ones(1, dtype=torch.float64))[0, 0, 0]
    u = torch.arange(201, dtype=torch.float64) - 100
    g = torch.exp(-(u**2) / (2 * 20.0**2))
    g = g / g.sum()
    assert float((row - g).abs().max()) < 5e-4  # the renormalised 0.27 %
    cut = GaussianBlurFamily(width=Linear(0.3, 20.0), kernel_size=61, padding="circular")
    row = cut(x, torch.ones(1, dtype=torch.float64))[0, 0, 0]  # ±1.5 std: 13 % of the mass cut
    assert float((row - g).abs().max()) > 2e-3


def test_fit_grid_on_a_flow_whose_time_increases():
    """A user's flow may run forward (``default_span = (0, 1)``): ``fit_grid`` checks ``t_span``
    against the flow's direction as ``solve`` does, and fits an increasing flow as well (a
    random-mutation survivor broke the direction's sign and no test noticed)."""
    import flowrestore as fr
    from flowrestore.integrate import fit_grid

    class Forward(fr.ODEFlow):
        default_span = (0.0, 1.0)

    flow = Forward(lambda t, x: -x * (1 + 10 * t.reshape(-1, *([1] * (x.dim() - 1)))))
    warm = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    spacing = fit_grid(flow, fr.Heun(), warm, 3)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = x * math.exp(-(1 + 5))  # x(1) = x(0) exp(-(t + 5 t²)) at t = 1
    fitted = fr.solve(flow, fr.Heun(), x, steps=3, spacing=spacing).x
    uniform = fr.solve(flow, fr.Heun(), x, steps=3).x
    assert float((fitted - exact).norm()) < 0.5 * float((uniform - exact).norm())
    with pytest.raises(fr.errors.GridError, match="wrong direction"):
        fit_grid(flow, fr.Heun(), warm, 3, t_span=(1.0, 0.0))


def test_one_atomic_writer_for_every_output(tmp_path):
    """Images, checkpoints, weights and the registry go through ``paths.write_atomic`` (three
    copies of the temporary-file-then-rename dance before): a failed write leaves the old file
    and no temporary one, a replaced file keeps its permissions, a new one gets ``open``'s."""
    import os

    from flowrestore.paths import write_atomic

    target = tmp_path / "a.bin"
    write_atomic(target, lambda f: f.write(b"one"))
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777  # as open() gives
    os.chmod(target, 0o600)

    def half_then_fail(f):
        f.write(b"tw")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "probe"]
    write_atomic(target, lambda f: f.write(b"two"))
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600


def test_write_atomic_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """Was: the folder was never synced, so after a crash the renamed file could be missing
    although the write had reported success (POSIX: a rename is durable once its folder is)."""
    import stat

    from flowrestore import paths

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(kind)
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(paths.os, "fsync", fsync)
    monkeypatch.setattr(paths.os, "replace", replace)
    paths.write_atomic(tmp_path / "a.bin", lambda f: f.write(b"abc"))
    assert events == ["file", "rename", "folder"]
    assert (tmp_path / "a.bin").read_bytes() == b"abc"


def test_dirac_step_refuses_a_small_step_its_increment_ignores():
    """Was: DiracStep(increment="look_ahead", small_step=0.01) accepted δ and never used it."""
    for increment in ("look_ahead", "look_back", "tangent"):
        with pytest.raises(ConfigError, match=rf"small_step.*increment='{increment}'"):
            fr.DiracStep(increment=increment, small_step=0.01)
        assert fr.DiracStep(increment=increment).small_step == 1e-3
    for increment in ("small_look_ahead", "small_look_back"):
        assert fr.DiracStep(increment=increment, small_step=0.01).small_step == 0.01


def test_a_non_finite_measurement_is_found_before_the_first_step():
    """Was: a NaN in a flow's observation= (or a floating cond) was accepted; without guidance
    Dirac's data-consistency record became NaN silently, InDI's predictor saw it on every step."""
    y = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    bad = y.clone()
    bad[1, 0, 0, 0] = float("nan")
    calls = []

    def phi(x, t):
        calls.append(1)
        return x

    sde = fr.DiracSDE(phi, fr.degradations.DiagonalFamily(a=lambda t: 1 - 0.5 * t), 0.1)
    sde.observation = bad
    with pytest.raises(fr.NonFiniteError, match=r"observation is non-finite .*samples \[1\]"):
        fr.solve(sde, fr.DiracStep(), y, steps=3, generator=torch.Generator().manual_seed(0))
    assert not calls
    sol = fr.solve(
        fr.DiracSDE(
            phi, fr.degradations.DiagonalFamily(a=lambda t: 1 - 0.5 * t), 0.1, observation=bad
        ),
        fr.DiracStep(),
        y,
        steps=3,
        generator=torch.Generator().manual_seed(0),
        on_failure="return",
    )
    assert sol.success.tolist() == [True, False, True]
    # per-sample conditioning of a plain ODE, and a 0-d shared value fails every sample
    flow = fr.ODEFlow(lambda t, x, k: -k * x, cond={"k": torch.tensor([[1.0], [float("inf")]])})
    with pytest.raises(fr.NonFiniteError, match=r"cond\['k'\] is non-finite .*samples \[1\]"):
        fr.solve(flow, fr.Euler(), torch.ones(2, 3), steps=2, t_span=(0.0, 1.0))
    flow = fr.ODEFlow(lambda t, x, k: -k * x, cond={"k": torch.tensor(float("nan"))})
    with pytest.raises(fr.NonFiniteError, match=r"samples \[0, 1\]"):
        fr.solve(flow, fr.Euler(), torch.ones(2, 3), steps=2, t_span=(0.0, 1.0))
    # integer conditioning (class labels) is not checked
    flow = fr.ODEFlow(lambda t, x, k: -x * k.to(x), cond={"k": torch.tensor([[1], [2]])})
    assert (
        fr.solve(flow, fr.Euler(), torch.ones(2, 3), steps=2, t_span=(0.0, 1.0)).x.isfinite().all()
    )


def test_dirac_training_refuses_the_task_noise_it_ignores():
    """Was: TrainConfig(method="dirac", task_params={"noise": 0.2}) trained at sigma_max, the
    task's noise silently unused (Dirac's degradation has its own noise sigma_t)."""
    from flowrestore.training import TrainConfig

    for task, noise in (("deblur", "noise"), ("denoise", "sigma")):
        with pytest.raises(ConfigError, match=rf"task_params\['{noise}'\].*method='dirac'"):
            TrainConfig(method="dirac", task=task, task_params={noise: 0.2})
        TrainConfig(method="dirac", task=task)  # the task's default noise is not the user's
        TrainConfig(method="dirac", task=task, task_params={noise: 0.0})  # no noise: agreed
        TrainConfig(method="indi", task=task, task_params={noise: 0.2})


def test_default_threads_ignores_an_omp_num_threads_that_is_no_ascii_number(monkeypatch):
    """Was: OMP_NUM_THREADS="²" passed str.isdigit() and crashed int() with a ValueError."""
    from flowrestore.runtime import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    fallback = default_threads()
    for bad in ("²", "١", "x", "0", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert default_threads() == fallback


@pytest.mark.parametrize("rho", [1.0, 2.0])
def test_shifted_grid_on_a_span_that_stops_early_is_the_shifted_power_law(rho):
    """On a span ending above 0 (early stopping), the unshifted times are
    ``u_k = u_end + (u_0 − u_end)(1 − k/N)^ρ`` between the two ends' unshifted times (a sign
    slip there changes only grids that stop above 0, which the 0-ending defaults never lay)."""
    from flowrestore.grids import Shifted

    s, t0, t1, n = 3.0, 0.9, 0.25, 5
    grid = Shifted(shift=s, rho=rho)(n, t0, t1)
    u0, u1 = t0 / (s - (s - 1) * t0), t1 / (s - (s - 1) * t1)
    w = (1 - torch.arange(n + 1, dtype=torch.float64) / n) ** rho
    u = u1 + (u0 - u1) * w
    torch.testing.assert_close(grid, s * u / (1 + (s - 1) * u), rtol=1e-12, atol=1e-12)
    assert grid[0] == t0 and grid[-1] == t1


def test_declared_spacings_know_every_solver_class_and_no_other_export():
    """The flows recognise a solver class by its protocol (they sit below the solvers and
    cannot import Solver): every exported solver is one, no other exported class is."""
    import inspect

    from flowrestore.flows.declared import check_spacings

    classes = [getattr(fr, n) for n in fr.__all__ if inspect.isclass(getattr(fr, n))]
    solvers = [c for c in classes if issubclass(c, fr.Solver)]
    assert len(solvers) >= 15
    for c in solvers:
        assert check_spacings({c: fr.Uniform()}) == {c: fr.Uniform()}
    for c in classes:
        if not issubclass(c, fr.Solver):
            with pytest.raises(fr.errors.ArgumentTypeError, match="solver classes"):
                check_spacings({c: fr.Uniform()})


def test_every_shipped_models_recorded_training_command_is_a_valid_config():
    """A later check in TrainConfig once refused the shipped dirac-deblur's recorded command
    (noise=0.0 with method='dirac'): each recorded command must still parse into the recorded
    configuration (the checkpoints' path and interval aside)."""
    import dataclasses
    import shlex

    from flowrestore.pretrained import list_pretrained, pretrained_info
    from flowrestore.training.cli import config_from_args

    for name in list_pretrained():
        info = pretrained_info(name)["train"]
        argv = shlex.split(info["command"])
        assert argv[:3] == ["python", "-m", "flowrestore.training.trainer"], name
        config, _ = config_from_args(argv[3:])
        got = dataclasses.asdict(config)
        want = dict(info["config"])
        for d in (got, want):  # where and how often checkpoints were written: not the model
            d.pop("checkpoint")
            d.pop("checkpoint_every")
        assert got == want, name


def test_a_plain_flow_over_a_shipped_predictor_refuses_8_bit_pixels_before_any_evaluation():
    """Was: flow_for(F) refused a 0..255 image, but fr.InDIFlow(F) — as README's snippets build
    it — ran the predictor on it silently (outputs far outside [0, 1])."""
    model = fr.pretrained("indi-deblur")
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for flow in (fr.InDIFlow(model), fr.pretrained.flow_for(model)):
        with pytest.raises(ConfigError, match=r"indi-deblur.*\[0, 1\].*divide by 255"):
            fr.solve(flow, fr.Euler(), y * 255, steps=2)
        assert not calls
    assert fr.solve(fr.InDIFlow(model), fr.Euler(), y, steps=2).x.isfinite().all()
    dirac = fr.pretrained("dirac-deblur")
    sde = fr.DiracSDE(dirac, fr.degradations.DiagonalFamily(a=lambda t: 1 - 0.5 * t), 0.05)
    with pytest.raises(ConfigError, match=r"dirac-deblur.*divide by 255"):
        fr.solve(sde, fr.DiracStep(), y * 255, steps=2, generator=torch.Generator())
    # a predictor that declares nothing is not checked (any value range is the user's)
    fr.solve(fr.InDIFlow(lambda x, t: x), fr.Euler(), y * 255, steps=2)
