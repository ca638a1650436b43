"""Review of the shipped predictors' loading and tooling and of the runtime helpers: EMA weights
as promised, damaged weight files refused in one line, command-line tools that refuse wrong
requests before any work and never leave half-written files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from flowrestore.errors import ConfigError
from flowrestore.training.checkpoint import load_predictor, save_checkpoint
from flowrestore.training.ema import EMA
from flowrestore.training.unet import UNet

_POPEN = subprocess.Popen  # the real one (the train_all fixture replaces it)
TINY = {"base_channels": 4, "channel_mults": [1, 2], "num_res_blocks": 1}


def _tiny_pair():
    """A tiny U-Net and an EMA whose weights differ from it (all ones)."""
    torch.manual_seed(0)
    model = UNet(**TINY)
    ema = EMA(model)
    for v in ema.shadow.values():
        if v.is_floating_point():
            v.fill_(1.0)
    return model, ema


# ----------------------------------------------------------------------------- load_predictor


def test_load_predictor_gives_the_ema_weights_by_default_and_the_raw_ones_on_request(tmp_path):
    model, ema = _tiny_pair()
    ck = save_checkpoint(tmp_path / "ck.pt", model, ema, None, 1, {})
    got = load_predictor(ck)
    for k, v in got.state_dict().items():
        assert torch.equal(v, ema.shadow[k]), k
    raw = load_predictor(ck, ema=False)
    for k, v in raw.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_load_predictor_without_ema_weights_refuses_ema_true(tmp_path):
    """Was: ``ema=True`` (the default) silently gave the raw training weights when the
    checkpoint held no EMA, although the docstring promises the EMA weights."""
    model, _ = _tiny_pair()
    ck = save_checkpoint(tmp_path / "no_ema.pt", model, None, None, 1, {})
    with pytest.raises(ConfigError, match=r"ema=True.*no_ema\.pt.*ema=False") as err:
        load_predictor(ck)
    assert "\n" not in str(err.value)
    raw = load_predictor(ck, ema=False)  # asked for explicitly: the raw weights
    for k, v in raw.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


@pytest.mark.parametrize("ema", [None, 1, "yes"])
def test_load_predictor_refuses_an_ema_flag_that_is_not_a_bool(tmp_path, ema):
    model, e = _tiny_pair()
    ck = save_checkpoint(tmp_path / "ck.pt", model, e, None, 1, {})
    with pytest.raises(ConfigError, match="ema"):
        load_predictor(ck, ema=ema)


# ----------------------------------------------------------------------------- shipped weights


def _damaged(tmp_path):
    """Files a damaged installation can hold in place of a shipped weights file."""
    import collections

    from flowrestore.pretrained import pretrained_info

    src = torch.load(_shipped_path("indi-deblur"), weights_only=True)
    good = _shipped_path("indi-deblur").read_bytes()
    files = {
        "empty": b"",
        "lfs-pointer": b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
        "truncated": good[: len(good) // 2],
    }
    out = {}
    for label, data in files.items():
        (tmp_path / f"{label}.pt").write_bytes(data)
        out[label] = tmp_path / f"{label}.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled-module.pt")
    out["pickled-module"] = tmp_path / "pickled-module.pt"
    torch.save([torch.zeros(2)], tmp_path / "a-list.pt")
    out["a-list"] = tmp_path / "a-list.pt"
    other = collections.OrderedDict((k, v[..., :1].clone()) for k, v in src.items())
    torch.save(other, tmp_path / "other-shapes.pt")
    out["other-shapes"] = tmp_path / "other-shapes.pt"
    out["missing"] = tmp_path / "missing.pt"
    return out, pretrained_info("indi-deblur")["unet"]


def _shipped_path(name):
    from importlib import resources

    from flowrestore.pretrained import pretrained_info

    return resources.files("flowrestore.pretrained").joinpath(pretrained_info(name)["file"])


def test_a_damaged_weights_file_is_a_one_line_config_error(tmp_path, monkeypatch):
    """Was: torch's multi-line UnpicklingError / RuntimeError / EOFError / FileNotFoundError, or
    (a list) an AttributeError from load_state_dict."""
    P = sys.modules["flowrestore.pretrained"]  # the module (the package attribute is the loader)
    files, _ = _damaged(tmp_path)
    real = P._registry()["indi-deblur"]
    for label, path in files.items():
        for checked in (True, False):  # with the registry's SHA-256, and without (older entries)
            entry = {**real, "file": str(path)}  # an absolute path: joinpath keeps it
            if not checked:
                entry.pop("sha256")
            monkeypatch.setattr(P, "_registry", lambda entry=entry: {"indi-deblur": entry})
            with pytest.raises(ConfigError, match=r"indi-deblur.*reinstall") as err:
                P.pretrained("indi-deblur")
            assert "\n" not in str(err.value), label
            assert path.name in str(err.value), label


def test_a_flipped_byte_in_the_shipped_weights_is_refused(tmp_path, monkeypatch):
    """Was: a weights file with one byte changed inside a tensor loaded without complaint (the
    zip archive does not check it) and restored with a wrong weight."""
    P = sys.modules["flowrestore.pretrained"]
    data = bytearray(_shipped_path("indi-deblur").read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "indi-deblur.pt"
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch alone does not notice
    entry = {**P._registry()["indi-deblur"], "file": str(path)}
    monkeypatch.setattr(P, "_registry", lambda: {"indi-deblur": entry})
    with pytest.raises(ConfigError, match=r"SHA-256.*reinstall"):
        P.pretrained("indi-deblur")


def test_the_shipped_weights_files_load_as_the_registry_declares():
    from flowrestore.pretrained import _read_weights, list_pretrained, pretrained_info

    for name in list_pretrained():
        info = pretrained_info(name)
        data = _shipped_path(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        model = _read_weights(_shipped_path(name), name, info["unet"], info["sha256"])
        assert sum(p.numel() for p in model.parameters()) == info["parameters"]
        assert {p.dtype for p in model.parameters()} == {torch.float32}


# ----------------------------------------------------------------------------- train_all


@pytest.fixture
def train_all(monkeypatch, tmp_path):
    """``flowrestore.pretrained.train_all`` writing into ``tmp_path/pkg``, never starting a real
    trainer (a ``Popen`` that is reached fails the test)."""
    import flowrestore.pretrained.train_all as T

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    monkeypatch.setattr(T, "HERE", pkg)

    def no_training(*a, **k):
        raise AssertionError("a trainer was started")

    monkeypatch.setattr(T.subprocess, "Popen", no_training)
    return T


@pytest.mark.parametrize(
    "argv",
    [
        ["--parallel", "0"],  # was: accepted (max(0, 1)) and training started
        ["--parallel", "-2"],
        ["--parallel", "two"],
        ["--export-only", "--no-export"],  # was: accepted, doing nothing at all
        ["--rescore", "--no-export"],
        ["--only", "indi-deblur", "indi-deblur"],  # was: two trainers on one checkpoint
    ],
)
def test_train_all_refuses_wrong_requests_before_any_work(train_all, tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as err:
        train_all.main([*argv, "--out-dir", str(tmp_path / "ck")])
    assert err.value.code == 2
    assert not (tmp_path / "ck").exists()


def test_train_all_records_the_commands_the_registry_holds():
    """Was: ``python -m flowrestore.training ...`` against the registry's (and its tests')
    ``python -m flowrestore.training.trainer ...``: a re-export changed every command."""
    from flowrestore.pretrained import list_pretrained, pretrained_info
    from flowrestore.pretrained.train_all import MODELS, command_text, trainer_argv

    assert sorted(MODELS) == list_pretrained()
    for name in MODELS:
        assert command_text(name) == pretrained_info(name)["train"]["command"]
        argv = trainer_argv(name, Path("build/pretrained"))  # runs what it records
        assert "python " + " ".join(argv[1:3]) == command_text(name).split(" --")[0]


def _tiny_checkpoint(path, *, with_ema=True):
    from flowrestore.training.trainer import TrainConfig

    cfg = TrainConfig(task="denoise", steps=2, batch_size=2, patch_size=16, unet=TINY)
    model, ema = _tiny_pair()
    return save_checkpoint(path, model, ema if with_ema else None, None, 2, cfg, history=[0.5])


def test_export_refuses_a_checkpoint_without_ema_weights(train_all, tmp_path):
    """Was: TypeError 'NoneType' object is not subscriptable."""
    ck = _tiny_checkpoint(tmp_path / "indi-deblur.ckpt", with_ema=False)
    with pytest.raises(ConfigError, match=r"indi-deblur\.ckpt.*no EMA"):
        train_all.export("indi-deblur", ck)
    assert list((tmp_path / "pkg").iterdir()) == []


def test_export_writes_the_weights_only_once_the_entry_is_scored(train_all, tmp_path, monkeypatch):
    """Was: the shipped ``.pt`` was replaced before the held-out scoring ran, so a failure there
    left new weights under the old registry entry."""
    ck = _tiny_checkpoint(tmp_path / "indi-deblur.ckpt")
    old = tmp_path / "pkg" / "indi-deblur.pt"
    old.write_bytes(b"the shipped weights")

    def scoring_fails(model, spec):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(train_all, "heldout_scores", scoring_fails)
    with pytest.raises(RuntimeError, match="scoring failed"):
        train_all.export("indi-deblur", ck)
    assert old.read_bytes() == b"the shipped weights"
    monkeypatch.setattr(train_all, "heldout_scores", lambda model, spec: {"results": []})
    entry = train_all.export("indi-deblur", ck)
    assert entry["sha256"] == hashlib.sha256(old.read_bytes()).hexdigest()
    state = torch.load(old, weights_only=True)
    _, ema = _tiny_pair()
    assert state.keys() == ema.shadow.keys()
    assert all(torch.equal(state[k], ema.shadow[k].float()) for k in state)
    assert entry["file"] == "indi-deblur.pt" and entry["parameters"] == sum(
        v.numel() for k, v in state.items() if "num_batches" not in k
    )
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["indi-deblur.pt"]  # no temp left


def test_a_trainer_failing_stops_the_others(train_all, tmp_path, monkeypatch):
    """Was: ``main`` returned the failing trainer's exit code and left the other trainers
    running in the background."""
    started = []

    def popen(cmd, **kw):
        proc = _POPEN(cmd, **kw)
        started.append(proc)
        return proc

    scripts = {"indi-deblur": "import time; time.sleep(120)", "indi-sr4": "raise SystemExit(3)"}
    monkeypatch.setattr(
        train_all, "trainer_argv", lambda name, out: [sys.executable, "-c", scripts[name]]
    )
    monkeypatch.setattr(train_all.subprocess, "Popen", popen)
    argv = ["--only", "indi-deblur", "indi-sr4", "--parallel", "2", "--no-export"]
    try:
        assert train_all.main([*argv, "--out-dir", str(tmp_path / "ck")]) == 3
        assert len(started) == 2
        assert started[0].poll() is not None, "the other trainer is still running"
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_full_disk_leaves_the_registry_whole(tmp_path):
    """Was: ``path.write_text`` truncated ``registry.json`` in place, so a write that failed
    half way (a full disk, a size limit) left it unreadable. Checked in a child process with a
    file-size limit below the new registry's size."""
    registry = tmp_path / "registry.json"
    original = '{"format": "flowrestore-pretrained/1", "models": {}}\n'
    registry.write_text(original)
    child = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        import flowrestore.pretrained.train_all as T
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        T.HERE = Path({str(tmp_path)!r})
        try:
            T.write_registry({{"m": {{"description": "x" * 20000}}}})
        except OSError as exc:
            print("failed:", exc.errno)
        """
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert "failed:" in out.stdout, out.stdout + out.stderr
    assert registry.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["registry.json"]


# ----------------------------------------------------------------------------- fit_grids


@pytest.fixture
def fit_grids(monkeypatch, tmp_path):
    """``flowrestore.pretrained.fit_grids`` on a copy of the registry in ``tmp_path``, with a
    stub fit (a real one takes minutes)."""
    from importlib import resources

    import flowrestore.pretrained.fit_grids as G

    registry = tmp_path / "registry.json"
    real_files = resources.files
    registry.write_text(real_files("flowrestore.pretrained").joinpath("registry.json").read_text())

    def files(package):
        return tmp_path if package == "flowrestore.pretrained" else real_files(package)

    monkeypatch.setattr(G.resources, "files", files)
    return G, registry


def test_fit_grids_keeps_what_was_recorded_during_the_fit_and_restores_threads(
    fit_grids, monkeypatch
):
    """Was: the registry read before the fits (minutes each) was written back whole, dropping
    what another tool recorded meanwhile; torch's thread count stayed at ``--threads``."""
    G, registry = fit_grids

    def fit_model(name):
        data = json.loads(registry.read_text())  # another tool records spacings meanwhile
        data["models"]["indi-sr4"]["spacings"]["chosen"] = "meanwhile"
        registry.write_text(json.dumps(data))
        return {"solver": "SemiLinearMultistep()", "times": {}, "fitted": name}

    monkeypatch.setattr(G, "fit_model", fit_model)
    threads = torch.get_num_threads()
    G.main(["--models", "indi-deblur", "--threads", str(threads + 1)])
    assert torch.get_num_threads() == threads
    data = json.loads(registry.read_text())
    assert data["models"]["indi-deblur"]["grids"]["fitted"] == "indi-deblur"
    assert data["models"]["indi-sr4"]["spacings"]["chosen"] == "meanwhile"
    assert sorted(p.name for p in registry.parent.iterdir()) == ["registry.json"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--models", "indi-deblur", "indi-deblur"],  # was: fitted twice (20 minutes)
        ["--models", "dirac-deblur"],
        ["--threads", "0"],
    ],
)
def test_fit_grids_refuses_wrong_requests_before_any_fit(fit_grids, monkeypatch, argv):
    G, registry = fit_grids
    before = registry.read_text()

    def fit_model(name):
        raise AssertionError("a fit was started")

    monkeypatch.setattr(G, "fit_model", fit_model)
    with pytest.raises(SystemExit) as err:
        G.main(argv)
    assert err.value.code == 2
    assert registry.read_text() == before


# ----------------------------------------------------------------------------- diagnostics


def test_check_endpoint_a_flow_without_drift_has_a_limit():
    """``D(x, t) = x``: the drift is 0, the flow stands still and trivially has a limit. Was:
    the zero residual was floored to 1e-300, fitted slope 0, reported "No limit ... moves about
    inf dB per decade" with ``t_min = 0.1``."""
    import flowrestore as fr

    y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rep = fr.check_endpoint(fr.InDIFlow(lambda x, t: x), y)
    assert rep.residual == [0.0] * len(rep.times)
    assert rep.has_limit and rep.t_min is None and rep.cost_db is None
    assert "has a limit" in str(rep)


def test_check_endpoint_a_nan_estimate_at_a_measuring_time_is_a_non_finite_error():
    """The estimate at the last measuring time is evaluated only by the check itself. Was: the
    NaN residual reached ``torch.linalg.lstsq`` (an internal assertion from LAPACK)."""
    import flowrestore as fr
    from flowrestore.errors import NonFiniteError

    def predictor(x, t):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        return torch.where(t < 1.0001e-4, torch.full_like(x, float("nan")), 0.9 * x)

    y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(NonFiniteError, match=r"t = 0\.0001"):
        fr.check_endpoint(fr.InDIFlow(predictor), y)


# ----------------------------------------------------------------------------- scores


@pytest.mark.parametrize("seed", [1.5, True, "0", -1, 2**70])
def test_evaluate_refuses_a_seed_that_is_not_a_non_negative_int(seed):
    """Was: torch's RuntimeError 'manual_seed expected a long' / ValueError 'Overflow', or a
    negative seed taken."""
    import flowrestore.pretrained.scores as S
    from flowrestore.pretrained import pretrained

    with pytest.raises(ConfigError, match=r"seed"):
        S.evaluate(pretrained("indi-deblur"), torch.rand(1, 3, 16, 16), [], seed=seed)


# ----------------------------------------------------------------------------- runtime


@pytest.mark.parametrize("device", ["gpu", None, "cuda:x", 0])
def test_set_threads_refuses_a_device_name_before_changing_threads(device):
    """Was: torch's RuntimeError (or a TypeError for ``None``) from ``torch.device``."""
    from flowrestore.runtime import set_threads

    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match="device"):
        set_threads(before + 1, device)
    assert torch.get_num_threads() == before


def test_set_threads_applies_on_cpu_only():
    from flowrestore.runtime import set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(before + 1, torch.device("cuda", 0)) == before + 1
        assert torch.get_num_threads() == before  # a GPU run leaves the CPU threads alone
        assert set_threads(before + 1, torch.device("cpu")) == before + 1
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


def test_a_cuda_index_past_the_last_device_says_what_to_do():
    """The docstring promises the hint with every refusal; was: missing for the index check."""
    from unittest import mock

    from flowrestore.runtime import resolve_device

    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=1),
        pytest.raises(ConfigError, match=r"only 1 CUDA device.*use device='cpu'"),
    ):
        resolve_device("cuda:1", hint="use device='cpu'")


@pytest.mark.parametrize("out_dir", [None, 3, ["out"]])
def test_check_output_dir_refuses_what_is_not_a_path(out_dir):
    """Was: a bare TypeError from ``Path``."""
    from flowrestore.paths import check_output_dir

    with pytest.raises(ConfigError, match="output folder"):
        check_output_dir(out_dir)


def test_export_reads_the_training_time_from_the_last_complete_log_line(tmp_path):
    """Was: a JSONDecodeError (after the whole training) when the trainer's log ended with a
    line cut short, e.g. by a killed run resumed later."""
    from flowrestore.pretrained.train_all import _logged_seconds

    log = tmp_path / "m.log"
    log.write_text(
        '{"steps": 100, "seconds_per_step": 0.5}\nstep 200 loss 0.1\n'
        '{"steps": 200, "seconds_per_step": 0.4'
    )
    assert _logged_seconds(log) == 50.0
    log.write_text('{"seconds_per_step": 0.5, "steps": null}\n')
    assert _logged_seconds(log) is None
    assert _logged_seconds(tmp_path / "none.log") is None


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_load_predictor_refuses_a_device_it_cannot_use(tmp_path, device):
    """Was: torch's RuntimeError / TypeError from ``.to``."""
    model, ema = _tiny_pair()
    ck = save_checkpoint(tmp_path / "ck.pt", model, ema, None, 1, {})
    with pytest.raises(ConfigError, match="device"):
        load_predictor(ck, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_predictor_on_cuda_without_cuda_is_a_config_error(tmp_path):
    """Was: torch's AssertionError 'Torch not compiled with CUDA enabled'."""
    model, ema = _tiny_pair()
    ck = save_checkpoint(tmp_path / "ck.pt", model, ema, None, 1, {})
    with pytest.raises(ConfigError, match="device='cuda'"):
        load_predictor(ck, device="cuda")


def test_the_registry_declares_what_the_module_documents():
    """Each InDI entry: a grid for each of 3..10 steps (N + 1 decreasing times from 1 to 0),
    recorded only where the check found it no worse than the generic grid, and a spacing for
    each documented solver; every entry's file is its name's, hashed."""
    from flowrestore.pretrained import list_pretrained, pretrained_info

    documented = {"Euler", "Midpoint", "Heun", "RK4", "IPNDM", "DataIPNDM", "Bosh3", "Dopri5"}
    for name in list_pretrained():
        info = pretrained_info(name)
        assert info["file"] == f"{name}.pt" and len(info["sha256"]) == 64
        if info["method"] != "indi":
            continue
        grids = info["grids"]
        assert sorted(map(int, grids["times"])) == list(range(3, 11))
        for n, times in grids["times"].items():
            assert len(times) == int(n) + 1 and times[0] == 1.0 and times[-1] == 0.0
            assert all(a > b for a, b in zip(times, times[1:], strict=False))
            check = grids["check_worst_psnr"][n]
            assert check["fitted_db"] >= check["generic_db"]
        assert set(info["spacings"]["per_solver"]) == documented
