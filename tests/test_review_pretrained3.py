"""Third review of the shipped predictors' tooling: ``scores.evaluate`` leaves the caller's
module where it was and refuses a wrong ``clean`` by name, ``fit_grids`` writes only JSON into
the registry, a model's name passed where the model goes says how to load it, and loading
never reaches the network."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.pretrained import (
    default_solver,
    degrade_for,
    flow_for,
    heldout_crops,
    list_pretrained,
    pretrained,
)
from flowrestore.pretrained.scores import evaluate

# ----------------------------------------------------------------------------- scores.evaluate


def test_evaluate_does_not_convert_the_callers_module(monkeypatch):
    """Was: ``model = model.to(device)`` converted the caller's module in place (``Module.to``
    moves its parameters): after ``evaluate(model, ..., device="cuda")`` a CPU model the caller
    kept using was on the GPU. A model already on the device is used as it is, never ``.to``'d."""
    model = pretrained("indi-deblur")
    calls = []
    real = model._apply
    monkeypatch.setattr(model, "_apply", lambda *a, **k: calls.append(a) or real(*a, **k))
    clean = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rows = evaluate(model, clean, [("euler", 1, "last")], device="cpu")
    assert calls == []
    assert [r["solver"] for r in rows] == ["input", "euler"]


def test_a_model_elsewhere_is_copied_to_the_device_and_the_callers_stays():
    """The copy path (to ``meta``, a device every build has): the caller's parameters keep
    their device, values and identity; the copy's are on the device, with the metadata."""
    from flowrestore.pretrained.scores import _on_device

    model = pretrained("indi-deblur")
    before = {k: (v, v.clone()) for k, v in model.state_dict(keep_vars=True).items()}
    moved = _on_device(model, torch.device("meta"))
    assert moved is not model and moved.metadata == model.metadata
    assert {t.device.type for t in [*moved.parameters(), *moved.buffers()]} == {"meta"}
    assert all(not p.requires_grad for p in moved.parameters())
    for k, v in model.state_dict(keep_vars=True).items():
        assert v is before[k][0] and v.device.type == "cpu" and torch.equal(v, before[k][1]), k
    assert _on_device(model, torch.device("cpu")) is model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluate_on_cuda_leaves_a_cpu_model_on_the_cpu_and_scores_as_on_the_cpu():
    model = pretrained("indi-deblur")
    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runs = [("euler", 2, "last")]
    gpu = evaluate(model, clean, runs, device="cuda")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    cpu = evaluate(model, clean, runs, device="cpu")
    for a, b in zip(gpu, cpu, strict=True):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-2)
    on_gpu = pretrained("indi-deblur", device="cuda")
    evaluate(on_gpu, clean, runs, device="cpu")
    assert {p.device.type for p in on_gpu.parameters()} == {"cuda"}


@pytest.mark.parametrize(
    "clean",
    [[[0.5]], torch.rand(3, 16, 16), torch.zeros(1, 3, 16, 16, dtype=torch.uint8)],
    ids=["list", "3d", "uint8"],
)
def test_evaluate_refuses_a_clean_batch_that_is_not_float_images_by_name(clean):
    """Was: AttributeError "'list' object has no attribute 'to'", or the flow's error about an
    ``x`` the caller never passed."""
    with pytest.raises(ConfigError, match=r"evaluate: clean must be .*\[N, C, H, W\]"):
        evaluate(pretrained("indi-deblur"), clean, [("euler", 1, "last")])


# ----------------------------------------------------------------------------- fit_grids


def test_fit_model_records_a_failed_check_as_json_null_not_infinity(monkeypatch):
    """A grid whose solve of the check crops fails scores ``inf`` (``integrate.fit_grids``).
    Was: ``round(-inf, 2)`` went into the entry and ``json.dumps`` wrote ``-Infinity`` into
    ``registry.json``: not JSON (strict readers refuse the whole registry)."""
    import flowrestore.integrate as integrate
    import flowrestore.pretrained.fit_grids as G

    records = [
        {
            "steps": 3,
            "default": -40.0,
            "fits": {"default": math.inf, "long": -41.0},
            "kept": "long",
        },
        {
            "steps": 4,
            "default": math.inf,
            "fits": {"default": -42.5, "long": math.inf},
            "kept": None,
        },
    ]

    def fit_grids(flow, solver, warm, steps, *, log, **kw):
        for r in records:
            log({**r, "seconds": 1.0})
        return fr.FittedGrids(solver=repr(solver), times={3: [1.0, 0.6, 0.2, 0.0]})

    monkeypatch.setattr(integrate, "fit_grids", fit_grids)
    monkeypatch.setattr(fr, "solve", lambda flow, solver, y, **kw: SimpleNamespace(x=y))
    monkeypatch.setattr(G, "crops", lambda spec: torch.rand(1, 3, 16, 16))
    entry = G.fit_model("indi-deblur", steps=(3, 4), log=lambda line: None)
    text = json.dumps(entry, allow_nan=False)  # raised ValueError: Out of range float values
    check = json.loads(text)["check_worst_psnr"]
    assert check["3"] == {
        "generic_db": 40.0,
        "fitted_db": 41.0,
        "fit": "long",
        "tries_db": {"default": None, "long": 41.0},
    }
    assert check["4"]["generic_db"] is None and check["4"]["tries_db"]["long"] is None
    assert check["4"]["fitted_db"] == 42.5
    assert fr.FittedGrids.from_dict(json.loads(text)).steps() == (3,)  # a plain record


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("fn", [flow_for, default_solver])
def test_a_models_name_where_the_model_goes_says_how_to_load_it(fn):
    """Was: "expected a shipped predictor (with .metadata) or its registry entry, got
    'indi-deblur'" (no word of ``pretrained(name)`` nor of the other names)."""
    with pytest.raises(ConfigError, match=r"'indi-deblur'.*pretrained\(name\).*indi-sr4"):
        fn("indi-deblur")
    with pytest.raises(ConfigError, match=r"pretrained\(name\)"):
        degrade_for("indi-sr4", torch.rand(1, 3, 8, 8))


# ----------------------------------------------------------------------------- no network


def test_loading_the_predictors_and_the_heldout_photos_never_reaches_the_network(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name in list_pretrained():
        assert not pretrained(name).training
    names, x = heldout_crops(8)
    assert x.shape == (len(names), 3, 8, 8)


# ----------------------------------------------------------------------------- registry cache


@pytest.fixture
def registry_copy(monkeypatch, tmp_path):
    """The package's registry read from a copy in ``tmp_path`` (``importlib.resources.files``
    patched, as the tools reach it); the registry cache is emptied before and after."""
    import sys
    from importlib import resources

    P = sys.modules["flowrestore.pretrained"]
    real_files = resources.files
    registry = tmp_path / "registry.json"
    package = real_files("flowrestore.pretrained")
    registry.write_text(package.joinpath("registry.json").read_text())
    for name in list_pretrained():  # the shipped weights, beside the copy
        file = P._registry()[name]["file"]
        (tmp_path / file).symlink_to(Path(str(package.joinpath(file))))

    def files(package):
        return tmp_path if package == "flowrestore.pretrained" else real_files(package)

    monkeypatch.setattr(resources, "files", files)
    P._registry.cache_clear()
    yield registry
    P._registry.cache_clear()


def test_what_a_tool_writes_into_the_registry_is_what_this_process_loads_next(
    registry_copy, monkeypatch
):
    """Was: the registry read once stayed cached, so in the process that re-fitted the grids
    (or exported new weights: their new SHA-256) ``pretrained`` went on with the old entry:
    ``flow_for`` declared the old grids, and new weights were refused as a damaged install."""
    import flowrestore.pretrained.fit_grids as G
    from flowrestore.pretrained import pretrained_info

    old = pretrained_info("indi-deblur")["grids"]  # read (and cached) before the fit
    new = {"solver": old["solver"], "times": {"3": [1.0, 0.7, 0.3, 0.0]}, "t_span": [1.0, 0.0]}
    monkeypatch.setattr(G, "fit_model", lambda name: new)
    G.main(["--models", "indi-deblur", "--threads", "1"])
    assert json.loads(registry_copy.read_text())["models"]["indi-deblur"]["grids"] == new
    assert pretrained_info("indi-deblur")["grids"] == new
    assert flow_for(pretrained("indi-deblur")).grids.steps() == (3,)
