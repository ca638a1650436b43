"""Review: the method/task registry and the shipped predictors refuse wrong inputs with typed
errors that name the argument, before any work."""

from __future__ import annotations

import pytest
import torch

from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError
from flowrestore.methods import ModelSpec
from flowrestore.pretrained import degrade_for, flow_for, pretrained, pretrained_info
from flowrestore.tasks import get_task

DIRAC_SETTINGS = {"sigma_min": 0.01, "sigma_max": 0.05, "lookahead": 1.0}


@pytest.mark.parametrize("task", ["deblur", "sr4", "denoise", "jpeg"])
def test_dirac_spec_without_settings_is_refused_by_name(task):
    # was a bare KeyError('sigma_min') when the flow was built (or the noise asked for)
    with pytest.raises(ConfigError, match="sigma_min"):
        ModelSpec.of({"method": "dirac", "task": task})
    spec = ModelSpec.of({"method": "dirac", "task": task, "dirac": DIRAC_SETTINGS})
    assert spec.input_noise == 0.05
    spec.flow(lambda y, t: y)


def test_dirac_train_config_without_settings_is_refused_by_name():
    with pytest.raises(ConfigError, match="missing \\['sigma_max'\\]"):
        ModelSpec.from_train_config({"method": "dirac", "task": "deblur", "sigma_min": 0.01})
    with pytest.raises(ConfigError, match="'method' and 'task'"):
        ModelSpec.from_train_config({"task": "deblur"})
    spec = ModelSpec.from_train_config({"method": "dirac", "task": "deblur", **DIRAC_SETTINGS})
    assert spec.settings == DIRAC_SETTINGS


@pytest.mark.parametrize("params", ["abc", [("blur_sigma", 1.0)], 3])
def test_task_params_must_be_a_mapping(params):
    # a string was a bare ValueError from dict(); a list of pairs was silently accepted
    with pytest.raises(ConfigError, match="params must be a dict"):
        get_task("deblur").resolve(params)


def test_pretrained_info_refuses_a_non_string_name():
    with pytest.raises(ConfigError, match="no shipped predictor named"):
        pretrained_info(["indi-deblur"])  # was TypeError: unhashable type: 'list'


@pytest.fixture(scope="module")
def models():
    return {name: pretrained(name) for name in ("indi-deblur", "indi-sr4", "dirac-deblur")}


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4", "dirac-deblur"])
def test_degrade_for_checks_its_inputs(models, name):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    # a single image [C, H, W]: was degraded as a batch of C grey images (or a bare ValueError)
    with pytest.raises(ShapeError, match=r"\[B, C, H, W\]"):
        degrade_for(models[name], x[0])
    with pytest.raises(ArgumentTypeError, match="generator"):
        degrade_for(models[name], x, generator=3)
    with pytest.raises(ArgumentTypeError, match="floating-point"):
        degrade_for(models[name], (x * 255).to(torch.uint8))
    y = degrade_for(models[name], x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape


def test_indi_flow_for_names_an_unknown_keyword(models):
    # was a bare TypeError from InDIFlow.__init__; the Dirac flow's is an ArgumentTypeError
    with pytest.raises(ArgumentTypeError, match="guidance"):
        flow_for(models["indi-deblur"], guidance=1.0)
    flow_for(models["indi-deblur"], grids=None, spacings=None, check_outputs=False)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"data_range": 0}, "data_range"),  # was a math domain error after the whole solve
        ({"data_range": -1.0}, "data_range"),  # was accepted: PSNRs of a negative peak
        ({"data_range": "1"}, "data_range"),  # was a TypeError after the whole solve
        ({"times": None}, "times"),  # was TypeError: 'NoneType' object is not iterable
        ({"times": "abc"}, "times"),  # was ValueError: could not convert string to float
    ],
)
def test_check_endpoint_refuses_bad_arguments_before_solving(kwargs, name):
    import flowrestore as fr
    from flowrestore.diagnostics import check_endpoint

    calls = []

    def predictor(x, t):
        calls.append(1)
        return x * 0.5

    y = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=name):
        check_endpoint(fr.InDIFlow(predictor), y, **kwargs)
    assert not calls


@pytest.mark.parametrize(
    "bad",
    [
        ("eulr", 2, "last"),  # unknown solver
        ("em", 2, "last"),  # Dirac's solver on an InDI predictor
        ("euler", 2, "mean"),  # unknown output
        ("euler", 0, "last"),  # no steps
        ("euler", 3),  # was a bare ValueError (unpacking)
        ("euler", 3, "last", 1.5),  # t_end past the start
    ],
)
def test_evaluate_refuses_every_run_before_any_solve(models, monkeypatch, bad):
    # the runs before a bad one were solved (and scored) first, then it failed mid-way
    import flowrestore.integrate as integrate
    from flowrestore.pretrained.scores import evaluate

    solves = []
    real = integrate.solve

    def counting(*args, **kwargs):
        solves.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(integrate, "solve", counting)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="runs: each run"):
        evaluate(models["indi-deblur"], x, [("euler", 2, "last"), bad])
    assert not solves
    rows = evaluate(models["indi-deblur"], x, [("euler", 2, "last"), ("phi", 1, "last", 0.0)])
    assert [r["solver"] for r in rows] == ["input", "euler", "phi"] and len(solves) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--models", "indi-deblur", "indi-sr2"],  # failed after fitting indi-deblur (~10 min)
        ["--models", "dirac-deblur"],  # Dirac has no fitted grids
        ["--threads", "0"],  # a bare RuntimeError from torch
    ],
)
def test_fit_grids_refuses_bad_arguments_before_fitting(args, monkeypatch, capsys):
    from flowrestore.pretrained import fit_grids

    fits = []
    monkeypatch.setattr(fit_grids, "fit_model", lambda name, **kw: fits.append(name) or {})
    with pytest.raises(SystemExit) as exc:
        fit_grids.main([*args, "--dry-run"])
    assert exc.value.code == 2 and "error: --" in capsys.readouterr().err
    assert not fits


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
def test_evaluate_refuses_an_unusable_device(models, device):
    from flowrestore.pretrained.scores import evaluate

    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="device"):  # was torch's bare RuntimeError
        evaluate(models["indi-deblur"], x, [("euler", 2, "last")], device=device)


def test_module_functions_reach_through_fr_pretrained():
    # README: ``flowrestore.pretrained.flow_for(...)``; after ``import flowrestore`` that name is
    # the callable ``fr.pretrained``, which had no ``flow_for`` (AttributeError)
    import flowrestore
    import flowrestore.pretrained as P

    assert flowrestore.pretrained.flow_for is flow_for
    assert P.degrade_for is degrade_for and P.list_pretrained() == P.list()
    assert callable(P.scores.evaluate)
    assert not hasattr(P, "no_such_name")
