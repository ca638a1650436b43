"""Issue 16: ``fit_grids`` fits a solver's grids at several step counts, keeps a fit only where
check inputs confirm it against the flow's default grid, and returns ``FittedGrids`` a flow can
declare and JSON can hold."""

from __future__ import annotations

import json

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ConfigError
from flowrestore.integrate import fit_grid, fit_grids, relative_error
from flowrestore.oracles import GaussianOracle

F64 = torch.float64
QUICK = {"refine": 8, "teacher_steps": 24}


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    orc = GaussianOracle(
        mean=torch.randn(16, generator=g, dtype=F64),
        std=0.05 + torch.rand(16, generator=g, dtype=F64),
        noise_std=0.6,
    )
    _, warm = orc.sample(8, generator=torch.Generator().manual_seed(seed + 1))
    _, check = orc.sample(8, generator=torch.Generator().manual_seed(seed + 2))
    return orc, fr.InDIFlow(orc.posterior_mean), warm, check


def test_without_check_inputs_every_fit_is_declared_and_laid():
    _, flow, warm, check = _problem()
    solver = fr.SemiLinearMultistep()
    grids = fit_grids(flow, solver, warm, (3, 5), tries={"quick": QUICK})
    assert grids.solver == repr(solver) and grids.steps() == (3, 5)
    assert grids.t_span == (1.0, 0.0)
    declared = fr.InDIFlow(flow.predictor, grids=grids)
    for n in (3, 5):
        fitted = fit_grid(flow, solver, warm, n, **QUICK)  # deterministic: the same fit
        assert dict(grids.times)[n] == fitted.times
        a = fr.solve(declared, solver, check, steps=n).x
        b = fr.solve(flow, solver, check, steps=n, spacing=fitted).x
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_check_keeps_a_fit_only_where_it_is_not_worse_than_the_default():
    orc, flow, warm, check = _problem(1)
    solver = fr.SemiLinearMultistep()
    exact = orc.ode_solution(check, 0.0)
    records = []
    tries = {"quick": QUICK, "none": {"refine": 0, "teacher_steps": 24}}
    grids = fit_grids(
        flow,
        solver,
        warm,
        (3, 5),
        x_check=check,
        reference=exact,
        tries=tries,
        log=records.append,
    )
    assert [r["steps"] for r in records] == [3, 5]
    for r in records:
        n = r["steps"]
        generic = fr.solve(flow, solver, check, steps=n).x
        assert r["default"] == pytest.approx(float(relative_error(generic, exact).max()), rel=1e-12)
        for name, kw in tries.items():
            sp = fit_grid(flow, solver, warm, n, **kw)
            x = fr.solve(flow, solver, check, steps=n, spacing=sp).x
            assert r["fits"][name] == pytest.approx(
                float(relative_error(x, exact).max()), rel=1e-12
            )
        best = min(r["fits"], key=r["fits"].get)
        if r["fits"][best] <= r["default"]:
            assert r["kept"] == best
            assert dict(grids.times)[n] == fit_grid(flow, solver, warm, n, **tries[best]).times
        else:
            assert r["kept"] is None and n not in grids.steps()
    # the fits beat the default grid on this stiff prior at least once
    assert grids is not None and grids.steps()


def test_a_fit_worse_on_the_check_is_dropped_and_none_kept_gives_none():
    """An error measure that ranks closer answers as worse rejects every fit (each is at least as
    close as the default on the warm-up batch, so here it cannot win)."""
    orc, flow, warm, check = _problem(2)
    exact = orc.ode_solution(check, 0.0)
    records = []
    out = fit_grids(
        flow,
        fr.SemiLinearMultistep(),
        warm,
        (4,),
        x_check=check,
        reference=exact,
        error=lambda x, r: -relative_error(x, r),
        tries={"quick": QUICK},
        log=records.append,
    )
    assert records[0]["fits"]["quick"] > records[0]["default"]
    assert out is None


def test_the_default_reference_is_a_400_evaluation_rk4_solve():
    _, flow, warm, check = _problem(3)
    records = []
    fit_grids(
        flow,
        fr.SemiLinearMultistep(),
        warm,
        (4,),
        x_check=check,
        tries={"q": QUICK},
        log=records.append,
    )
    ref = fr.solve(flow, fr.RK4(), check, steps=100).x
    generic = fr.solve(flow, fr.SemiLinearMultistep(), check, steps=4).x
    assert records[0]["default"] == pytest.approx(
        float(relative_error(generic, ref).max()), rel=1e-12
    )


def test_grids_fitted_on_a_sub_span_declare_it():
    _, flow, warm, check = _problem(4)
    solver = fr.SemiLinearMultistep()
    grids = fit_grids(flow, solver, warm, (3,), t_span=(0.8, 0.0), tries={"q": QUICK})
    assert grids.t_span == (0.8, 0.0)
    declared = fr.InDIFlow(flow.predictor, grids=grids)
    tau = torch.tensor(dict(grids.times)[3], dtype=F64)
    a = fr.solve(declared, solver, check, steps=3, t_span=(0.8, 0.0)).x
    b = fr.solve(flow, solver, check, grid=0.8 * tau).x
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_json_round_trip():
    grids = fr.FittedGrids(
        solver="SemiLinearMultistep()", times={4: (1.0, 0.7, 0.4, 0.1, 0.0)}, t_span=(0.9, 0.0)
    )
    back = fr.FittedGrids.from_dict(json.loads(json.dumps(grids.to_dict())))
    assert back == grids
    with pytest.raises(ConfigError, match="needs 'solver' and 'times'"):
        fr.FittedGrids.from_dict({"times": {}})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": ()}, "steps must be distinct ints"),
        ({"steps": (3, 3)}, "steps must be distinct ints"),
        ({"steps": (0,)}, "steps must be distinct ints"),
        ({"steps": (True,)}, "steps must be distinct ints"),
        ({"steps": 4}, "steps must be distinct ints"),
        ({"tries": {"a": {}, "b": {}}}, "need x_check"),
        ({"reference": torch.zeros(8, 16, dtype=F64)}, "need x_check"),
        ({"tries": {}}, "tries must map names"),
        ({"tries": {"a": 3}}, "tries must map names"),
        ({"x_check": "check", "reference": torch.zeros(3, 16, dtype=F64)}, "x_check's shape"),
    ],
)
def test_wrong_requests_are_refused_before_any_fit(kwargs, match, monkeypatch):
    _, flow, warm, check = _problem()
    calls = []
    monkeypatch.setattr("flowrestore.integrate.fit_table.fit_grid", lambda *a, **k: calls.append(a))
    kwargs = {"steps": (3,), **kwargs}
    if kwargs.get("x_check") == "check":
        kwargs["x_check"] = check
    steps = kwargs.pop("steps")
    with pytest.raises(ConfigError, match=match):
        fit_grids(flow, fr.SemiLinearMultistep(), warm, steps, **kwargs)
    assert not calls
