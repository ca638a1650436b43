"""The loop's host-synchronisation contract (issue 17), counted on the CPU.

A host synchronisation is an op that reads a device value on the host (``.item()``, ``bool(t)``,
``nonzero``, boolean masks, ... — :class:`syncs.SyncCounter`) or a copy of a device tensor's
values to the host (``.tolist()``, ``.numpy()``, counted here by patching them). On a GPU each one
stalls the stream; none can be captured in a CUDA graph.

* every fixed-grid pairing of the core's solvers, on ``InDIFlow`` and ``ODEFlow``: **0 inside the
  step loop and its landing step** onto a singular end, and the whole solve costs the same
  number at ``N`` and ``2N`` steps (planning and the final checks do not grow with the steps);
* under per-sample error control: one per step (the controller's decision, ``HostCopy.read``),
  nothing else — at most one per accepted step on these problems;
* for every other pairing (Dirac, Euler–Maruyama, SRA1, diffusion flows) the loop adds nothing:
  every sync inside the loop happens inside the solver's own step.

Predictors here are plain tensor expressions (the oracles validate their ``t`` on the host).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from syncs import SyncCounter

import flowrestore as fr
import flowrestore.integrate.finish as finish_module
import flowrestore.integrate.loop as loop_module
from flowrestore.controllers.base import HostCopy

from .helpers import grid_only

F64 = torch.float64


class HostReads(SyncCounter):
    """:class:`SyncCounter` plus host copies of tensor values (``tolist``, ``numpy``)."""

    def __enter__(self):
        self._patched = []
        for name in ("tolist", "numpy"):
            original = getattr(torch.Tensor, name)

            def counted(t, *a, _orig=original, _name=name, **k):
                self.ops[f"Tensor.{_name}"] += 1
                return _orig(t, *a, **k)

            self._patched.append((name, original))
            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._patched:
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)


@contextlib.contextmanager
def in_loop(monkeypatch):
    """Count host reads inside the step loop and its landing step onto a singular end only, and
    the error controller's decision reads."""
    seen = {"loop": HostReads(), "decisions": 0, "inside": False}

    def counted(step_fn):
        def run(*a, **k):
            seen["inside"] = True
            try:
                with seen["loop"]:
                    return step_fn(*a, **k)
            finally:
                seen["inside"] = False

        return run

    read = HostCopy.read

    def counted_read(self):
        seen["decisions"] += seen["inside"]
        return read(self)

    monkeypatch.setattr(loop_module, "steps", counted(loop_module.steps))
    monkeypatch.setattr(finish_module, "land_all", counted(finish_module.land_all))
    monkeypatch.setattr(HostCopy, "read", counted_read)
    yield seen


def _gaussian(dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(dim, generator=g, dtype=F64)
    sc = 0.5 + torch.rand(dim, generator=g, dtype=F64)
    sn = 0.8

    def posterior_mean(x, t):  # E[x | x_t] of the Gaussian denoising oracle, tensor ops only
        tt = t[:, None] ** 2 * sn**2
        return (sc**2 * x + tt * c) / (sc**2 + tt)

    y = c + sc * torch.randn(6, dim, generator=g, dtype=F64)
    y = y + sn * torch.randn(6, dim, generator=g, dtype=F64)
    return posterior_mean, y


INDI_SOLVERS = {
    "Euler": fr.Euler,
    "Midpoint": fr.Midpoint,
    "Heun": fr.Heun,
    "RK4": fr.RK4,
    "Bosh3": lambda: grid_only(fr.Bosh3()),
    "Dopri5": lambda: grid_only(fr.Dopri5()),
    "InDISampler": fr.InDISampler,
    "InDISampler-eps": lambda: fr.InDISampler(eps=0.1),
    "InDISampler-brownian": lambda: fr.InDISampler(eps=0.1, brownian=True),
    "Naive": fr.NaiveSampler,
    "ColdDiffusion": fr.ColdDiffusionSampler,
    "Multistep-1": lambda: fr.SemiLinearMultistep(order=1),
    "Multistep-2": lambda: fr.SemiLinearMultistep(order=2),
    "Multistep-3": lambda: fr.SemiLinearMultistep(order=3),
    "Multistep-3-log": lambda: fr.SemiLinearMultistep(power=0),  # the landing picked on device
    "IPNDM": fr.IPNDM,
    "IPNDM-landing-4": lambda: fr.IPNDM(landing_order=4),  # the landing picked on the device
    "DataIPNDM": fr.DataIPNDM,
    # torchdiffeq's fixed-grid Runge-Kutta steps (its Adams methods compare times and test
    # convergence on the host inside their own step: see fr.Torchdiffeq's docstring)
    "Torchdiffeq-rk4": lambda: fr.Torchdiffeq("rk4"),
    "Torchdiffeq-midpoint": lambda: fr.Torchdiffeq("midpoint"),
    "Torchdiffeq-heun3": lambda: fr.Torchdiffeq("heun3"),
}


def _counts(monkeypatch, fn):
    with in_loop(monkeypatch) as seen, HostReads() as whole:
        fn()
    return seen["loop"].count + seen["decisions"], whole.count, dict(seen["loop"].ops)


@pytest.mark.parametrize("name", list(INDI_SOLVERS))
@pytest.mark.parametrize("noise", ["generator", "seeds"])
@pytest.mark.parametrize("check_finite", [True, False])
def test_fixed_grid_indi_pairings_never_sync_per_step(monkeypatch, name, noise, check_finite):
    F, y = _gaussian()
    kw = {"generator": torch.Generator().manual_seed(0)} if noise == "generator" else {}
    if noise == "seeds":
        kw["seeds"] = list(range(y.shape[0]))

    def solve(n):
        return lambda: fr.solve(
            fr.InDIFlow(F), INDI_SOLVERS[name](), y, steps=n, check_finite=check_finite, **kw
        )

    inside, few, ops = _counts(monkeypatch, solve(5))
    assert inside == 0, f"{name}: {ops} inside the step loop"
    _, many, _ = _counts(monkeypatch, solve(10))
    assert many == few, f"{name}: {few} host reads at 5 steps but {many} at 10"


@pytest.mark.parametrize(
    "name", ["Euler", "Midpoint", "Heun", "RK4", "Bosh3", "Dopri5", "Torchdiffeq-rk4"]
)
def test_fixed_grid_odeflow_pairings_never_sync_per_step(monkeypatch, name):
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=F64)
    flow = fr.ODEFlow(lambda t, x: x @ A.T + torch.sin(t)[:, None])
    x0 = torch.ones(3, 2, dtype=F64)

    def solve(n):
        return lambda: fr.solve(flow, INDI_SOLVERS[name](), x0, t_span=(0.0, 1.0), steps=n)

    inside, few, ops = _counts(monkeypatch, solve(5))
    assert inside == 0, ops
    assert _counts(monkeypatch, solve(10))[1] == few


@pytest.mark.parametrize("solver", [fr.Bosh3, fr.Dopri5], ids=["Bosh3", "Dopri5"])
def test_error_control_syncs_once_per_step(monkeypatch, solver):
    F, y = _gaussian(seed=1)
    y[1] = y[1] * 1e-3  # samples that need different step counts
    with in_loop(monkeypatch) as seen:
        sol = fr.solve(fr.InDIFlow(F), solver(rtol=1e-6, atol=1e-8), y, t_end=0.05)
    # nothing but the decision: HostCopy.read's one host copy of the done flags per step
    assert dict(seen["loop"].ops) == {"Tensor.tolist": seen["decisions"]}
    assert len(set(sol.stats.steps.tolist())) > 1
    assert int(sol.stats.rejected.max()) == 0  # this problem: one read per accepted step
    assert seen["decisions"] == int(sol.stats.steps.max())
    # with rejections (a first step far too big): one read per attempted step
    with in_loop(monkeypatch) as seen:
        sol = fr.solve(fr.InDIFlow(F), solver(rtol=1e-6, atol=1e-8, dt0=0.5), y, t_end=0.05)
    assert int(sol.stats.rejected.max()) > 0
    assert seen["decisions"] == int((sol.stats.steps + sol.stats.rejected).max())


def test_the_loop_adds_nothing_to_sde_and_other_pairings(monkeypatch):
    """Every host read inside the loop happens inside a solver step (the flows of the Dirac and
    diffusion pairings read the host today; the loop around them must not)."""
    flow = fr.SDEFlow(lambda t, x: -x, lambda t, x: 0.3 * torch.ones_like(x), noise_type="additive")
    x0 = torch.ones(4, 3, dtype=F64)
    blur = fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 1.5))
    dirac = fr.DiracSDE(lambda v, t: 0.9 * v, blur, fr.schedules.Geometric(0.01, 0.05))
    y = torch.rand(2, 1, 8, 8, dtype=F64)
    cases = [
        (flow, fr.EulerMaruyama(), x0, {"t_span": (0.0, 1.0)}),
        (flow, fr.SRA1(), x0, {"t_span": (0.0, 1.0)}),
        (dirac, fr.DiracStep(), y, {}),
        (dirac, fr.EulerMaruyama(), y, {}),
    ]
    for fl, solver, x, kw in cases:
        inner = {"n": 0}
        step = type(solver).step

        def counted(self, *a, _step=step, _inner=inner, **k):
            with HostReads() as hr:
                out = _step(self, *a, **k)
            _inner["n"] += hr.count
            return out

        monkeypatch.setattr(type(solver), "step", counted)
        with in_loop(monkeypatch) as seen:
            fr.solve(fl, solver, x, steps=6, seeds=list(range(x.shape[0])), **kw)
        monkeypatch.setattr(type(solver), "step", step)
        assert seen["loop"].count == inner["n"], (type(solver).__name__, dict(seen["loop"].ops))
