"""Typed pairings: every wrong solver–flow (or controller) pairing is refused before anything is
evaluated, naming both and the solvers to use instead; every legitimate pairing runs."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr

F64 = torch.float64


class Counter:
    """A predictor / drift that counts its evaluations."""

    def __init__(self):
        self.calls = 0

    def __call__(self, a, b):
        self.calls += 1
        x = b if isinstance(a, torch.Tensor) and a.dim() == 1 else a
        return 0.9 * x


def _flows(counter):
    sigma = fr.schedules.Geometric(0.1, 0.5)
    return {
        "InDIFlow": fr.InDIFlow(counter),
        "DiracSDE": fr.DiracSDE(counter, lambda x, t: x, sigma),
        "ODEFlow": fr.ODEFlow(lambda t, x: counter(x, t)),
        "SDEFlow": fr.SDEFlow(lambda t, x: counter(x, t), lambda t, x: 0.1 * x),
    }


SOLVERS = {
    "Euler": fr.Euler,
    "RK4": fr.RK4,
    "Dopri5": fr.Dopri5,
    "InDISampler": fr.InDISampler,
    "NaiveSampler": fr.NaiveSampler,
    "ColdDiffusionSampler": fr.ColdDiffusionSampler,
    "SemiLinearMultistep": fr.SemiLinearMultistep,
    "EulerMaruyama": fr.EulerMaruyama,
    "SRA1": fr.SRA1,
    "DiracStep": fr.DiracStep,
    "Torchdiffeq": lambda: fr.Torchdiffeq("rk4"),
    "Torchsde": lambda: fr.Torchsde("euler"),
}

# the pairings that make sense (SRA1 needs additive noise: SDEFlow here is diagonal)
VALID = {
    "InDIFlow": {
        "Euler",
        "RK4",
        "Dopri5",
        "InDISampler",
        "NaiveSampler",
        "ColdDiffusionSampler",
        "SemiLinearMultistep",
        "Torchdiffeq",
    },
    "ODEFlow": {"Euler", "RK4", "Dopri5", "Torchdiffeq"},
    "DiracSDE": {"EulerMaruyama", "SRA1", "DiracStep", "Torchsde"},
    "SDEFlow": {"EulerMaruyama", "Torchsde"},
}


@pytest.mark.parametrize("flow_name", list(VALID))
@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_pairing_is_refused_before_any_evaluation_or_runs(flow_name, solver_name):
    counter = Counter()
    flow = _flows(counter)[flow_name]
    solver = SOLVERS[solver_name]()
    y = torch.rand(2, 3, dtype=F64) + 0.5
    kw = {"t_span": (1.0, 0.0)} if flow_name in ("ODEFlow", "SDEFlow") else {}
    if solver_name != "Dopri5":
        kw["steps"] = 4
    call = lambda: fr.solve(flow, solver, y, generator=torch.Generator().manual_seed(0), **kw)  # noqa: E731
    if solver_name in VALID[flow_name]:
        sol = call()
        assert sol.x.shape == y.shape and counter.calls > 0
        return
    with pytest.raises(fr.IncompatibleSolverError) as info:
        call()
    assert counter.calls == 0, "refused after evaluating"
    msg = str(info.value)
    assert solver_name.split("(")[0] in msg or type(solver).__name__ in msg
    assert type(flow).__name__ in msg and "use " in msg


def test_wrong_controller_and_missing_observation_are_refused_before_evaluation():
    counter = Counter()
    flow = fr.InDIFlow(counter)
    y = torch.rand(2, 3, dtype=F64) + 0.5
    with pytest.raises(fr.IncompatibleSolverError, match="no embedded error estimate"):
        fr.solve(flow, fr.Heun(), y, controller=fr.PIController())
    with pytest.raises(fr.IncompatibleSolverError, match="no embedded error estimate"):
        fr.solve(flow, fr.Torchdiffeq("rk4"), y, controller=fr.PIController())
    for sampler in (fr.NaiveSampler(), fr.ColdDiffusionSampler()):
        with pytest.raises(fr.ConfigError, match="observation"):
            fr.solve(flow, sampler, y, grid=[0.8, 0.4, 0.0])
    sde = fr.DiracSDE(counter, lambda x, t: x, fr.schedules.Geometric(0.1, 0.5), guidance=1.0)
    with pytest.raises(fr.ConfigError, match="guidance needs the measurement"):
        fr.solve(sde, fr.DiracStep(), y, grid=[0.8, 0.4, 0.0])
    assert counter.calls == 0
    # with the observation given explicitly, a solve from t = 0.8 runs
    sol = fr.solve(fr.InDIFlow(counter, observation=y), fr.NaiveSampler(), y, grid=[0.8, 0.0])
    assert torch.allclose(sol.x, 0.9 * y)


def test_each_methods_showcase_lists_every_setting_once():
    """The demo's rows, its quick rows and the registry's held-out rows name each
    ``(solver, steps, output[, t_end])`` once; the step lists are increasing."""
    from flowrestore.methods.registry import get_method, method_names

    for name in method_names():
        show = get_method(name).showcase
        for runs in (show.runs, show.quick_runs, show.heldout):
            assert len(set(runs)) == len(runs), (name, runs)
        for steps in (show.steps, show.quick_steps):
            assert list(steps) == sorted(set(steps)), (name, steps)
