"""Review (third pass): method and task records refuse what they would use wrongly later, and
a task added as README's "Add a task or a method" says works end to end."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flowrestore.errors import ArgumentTypeError, ConfigError
from flowrestore.methods import METHODS, ModelSpec, Showcase, get_method
from flowrestore.tasks import TASKS, Task, TaskParam, get_task

DIRAC = {"sigma_min": 0.01, "sigma_max": 0.05, "lookahead": 1.0}


def _dirac(**settings):
    return {"method": "dirac", "task": "deblur", "task_params": {"noise": 0.0}, "dirac": settings}


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({**DIRAC, "sigma_max": float("nan")}, "sigma_max"),  # observe() filled images with NaN
        ({**DIRAC, "sigma_max": -1.0}, "sigma_max"),  # a negative input noise, accepted
        ({**DIRAC, "sigma_max": "0.05"}, "sigma_max"),  # a string, read as 0.05 by input_noise
        ({**DIRAC, "sigma_min": 0.0}, "sigma_min"),  # refused only when the flow was built
        ({**DIRAC, "sigma_min": 0.5}, "sigma_min"),  # σ decreasing in t: not a forward SDE
        ({**DIRAC, "lookahead": 2.0}, "lookahead"),
    ],
)
def test_dirac_settings_are_checked_by_name_when_the_spec_is_read(settings, key):
    with pytest.raises(ConfigError, match=key):
        ModelSpec.of(_dirac(**settings))
    config = {"method": "dirac", "task": "deblur", **settings}
    with pytest.raises(ConfigError, match=key):
        ModelSpec.from_train_config(config)


def test_dirac_settings_block_must_be_a_dict_and_good_ones_pass():
    meta = {**_dirac(), "dirac": [0.01, 0.05]}
    with pytest.raises(ConfigError, match="'dirac' must be a dict"):  # was a bare TypeError
        ModelSpec.of(meta)
    from flowrestore.pretrained import pretrained_info

    shipped = ModelSpec.of(pretrained_info("dirac-deblur"))  # extra keys (its 'family') pass
    assert shipped.input_noise == shipped.settings["sigma_max"] > 0
    spec = ModelSpec.of(_dirac(sigma_min=1, sigma_max=1))  # ints, σ constant: a valid SDE
    assert spec.input_noise == 1.0


def test_dirac_flow_names_its_options():
    spec = ModelSpec.of(_dirac(**DIRAC))
    net = lambda y, t: y  # noqa: E731
    # was "DiracSDE() got an unexpected keyword argument 'grids'", naming none it takes
    with pytest.raises(ArgumentTypeError, match=r"takes no \['grids'\].*'observation'"):
        spec.flow(net, grids=None)
    # was a bare "got multiple values for keyword argument 'name'"
    with pytest.raises(ArgumentTypeError, match=r"takes no \['name'\].*'guidance'"):
        spec.flow(net, name="x")
    with pytest.raises(ConfigError, match="DiracStep"):  # step options still point to the step
        spec.flow(net, increment="exact")
    assert spec.flow(net, guidance=None, check_outputs=False).check_outputs is False


def test_a_model_without_a_name_is_not_named_none():
    spec = ModelSpec.of({"method": "indi", "task": "deblur", "name": None})
    assert spec.name == ""  # was "None", shown in messages and written back by metadata()
    assert ModelSpec.of(spec.metadata()).name == ""
    with pytest.raises(ConfigError, match="name must be a string"):
        ModelSpec.of({"method": "indi", "task": "deblur", "name": ["a"]})


def _dim(p):
    return lambda x: x * p["gain"]


def _dim_family(p):
    from flowrestore.tasks.blend import BlendFamily

    return BlendFamily(_dim(p))


def _dim_task(**changes) -> Task:
    fields = {
        "name": "dim",
        "summary": "dimming",
        "params": (
            TaskParam("gain", 0.5, lambda v: isinstance(v, float) and 0 < v <= 1, "in (0, 1]"),
            TaskParam("noise", 0.0, lambda v: isinstance(v, float) and v >= 0, "a float >= 0"),
        ),
        "operator": _dim,
        "family": _dim_family,
        "expects": lambda p: f"an image dimmed to {p['gain']:g}",
        "note": lambda p: "on a brighter image it saturates",
    }
    return Task(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"noise_param": "sigma"}, "noise_param 'sigma'"),  # was a KeyError at input_noise
        ({"params": (TaskParam("noise", 2.0, lambda v: v <= 1, "<= 1"),)}, "default of noise"),
        ({"params": (TaskParam("noise", 0.0, lambda v: True, "any"),) * 2}, "more than once"),
        ({"operator": "scale"}, "operator must be callable"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_a_task_record_is_refused_when_built_not_when_first_used(changes, what):
    with pytest.raises(ConfigError, match=what):
        _dim_task(**changes)


def test_a_task_added_as_the_readme_says_works_end_to_end(monkeypatch):
    import flowrestore as fr
    from flowrestore.training.data import make_degradation, make_family

    monkeypatch.setitem(TASKS, "dim", _dim_task())
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = make_degradation("dim", gain=0.25)(x)
    torch.testing.assert_close(y, 0.25 * x)  # A x, no noise
    fam = make_family("dim", gain=0.25)
    t = torch.full((2,), 0.5)
    torch.testing.assert_close(fam(x, t), 0.625 * x)  # (1 - t) x + t A x
    spec = ModelSpec.of({"method": "indi", "task": "dim", "task_params": {"gain": 0.25}})
    assert spec.input_noise == 0.0 and "dimmed to 0.25" in spec.expects()
    # an exact predictor of the clean image: InDI's flow lands on it (F = x0 → x(0) = x0)
    sol = fr.solve(spec.flow(lambda z, tt: x, check_outputs=False), fr.Euler(), y, steps=3)
    torch.testing.assert_close(sol.x, x)


def test_a_registry_key_must_name_its_own_record(monkeypatch):
    # the record's own name is what specs, degradations and checkpoints record: a second key
    # for one record made a predictor whose metadata named the other task (or method)
    monkeypatch.setitem(TASKS, "blur", TASKS["deblur"])
    with pytest.raises(ConfigError, match="TASKS\\['blur'\\] holds the Task named 'deblur'"):
        get_task("blur")
    monkeypatch.setitem(TASKS, "dim", "not a task")
    with pytest.raises(ConfigError, match="must be a Task record"):
        get_task("dim")
    monkeypatch.setitem(METHODS, "indi2", METHODS["indi"])
    with pytest.raises(ConfigError, match="METHODS\\['indi2'\\] holds the Method named 'indi'"):
        ModelSpec.of({"method": "indi2", "task": "deblur"})
    renamed = dataclasses.replace(METHODS["indi"], name="indi2")
    monkeypatch.setitem(METHODS, "indi2", renamed)
    assert get_method("indi2") is renamed


def test_task_noise_reads_unresolved_parameters():
    deblur = get_task("deblur")
    assert deblur.noise({}) == deblur.resolve({})["noise"] > 0  # was KeyError('noise')
    assert deblur.noise({"noise": 0.2}) == 0.2
    assert get_task("denoise").noise({"sigma": 0.3}) == 0.3
    with pytest.raises(ConfigError, match="noise must be"):
        deblur.noise({"noise": -1.0})


@pytest.mark.parametrize("t_end", ["0.5", 1.5, -0.1, True])
def test_a_showcase_run_checks_its_stop_time(t_end):
    # was accepted, failing (or running past the start) only when the demo reached the row
    with pytest.raises(ConfigError, match="t_end"):
        Showcase(
            runs=(("euler", 2, "last", t_end),),
            quick_runs=(),
            steps=(1,),
            quick_steps=(1,),
            heldout=(),
        )
    Showcase(
        runs=(("euler", 2, "last", 0.5),),
        quick_runs=(),
        steps=(1,),
        quick_steps=(1,),
        heldout=(("phi", 1, "last", 0.0),),
    )


def test_a_method_cannot_offer_one_name_for_two_solvers():
    indi = get_method("indi")
    twice = dataclasses.replace(indi.solvers[1], description="another euler")
    # the command line listed 'euler' once and always built the first of the two
    with pytest.raises(ConfigError, match="more than once: \\['euler'\\]"):
        dataclasses.replace(indi, solvers=(*indi.solvers, twice))


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        ({"solvers": ["Euler"], "spacing": {"Power": {"rh": 2.0}}}, "among \\['rho'\\]"),
        ({"per_solver": {"Euler": {"Uniform": None}}}, "Uniform takes a dict"),
        (["Euler"], "needs \\{'per_solver'"),
    ],
)
def test_a_declared_spacing_with_wrong_parameters_names_them(entry, what):
    from flowrestore.methods.indi import _declared_spacings

    # were bare TypeErrors (unexpected keyword, ** of None) and an AttributeError (list.get)
    with pytest.raises(ConfigError, match=what):
        _declared_spacings({"spacings": entry})
    good = _declared_spacings({"spacings": {"per_solver": {"Euler": {"Power": {"rho": 2.0}}}}})
    assert [(c.__name__, s.rho) for c, s in good.items()] == [("Euler", 2.0)]
