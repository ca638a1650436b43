"""Autograd and memory: no graph by default, gradients with ``differentiable=True``, and a
constant number of live states whatever the number of steps."""

import gc
import weakref

import pytest
import torch

import flowrestore as fr

from .helpers import F64

SOLVERS = {
    "Euler": fr.Euler,
    "Heun": fr.Heun,
    "RK4": fr.RK4,
    "Dopri5": lambda: fr.Dopri5(rtol=1e-4),
    "InDISampler": lambda: fr.InDISampler(eps=0.1, brownian=True),
    "NaiveSampler": fr.NaiveSampler,
    "Torchdiffeq-rk4": lambda: fr.Torchdiffeq("rk4"),
    "Torchdiffeq-dopri5": lambda: fr.Torchdiffeq("dopri5", rtol=1e-4, atol=1e-6),
}


class Net(torch.nn.Module):
    """A tiny learned-looking predictor F(x, t) = (1 − t)(W x + b) + t x; records what it saw."""

    def __init__(self, dim=4, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(dim, dim, dtype=dtype)
        with torch.no_grad():
            self.lin.weight.copy_(
                torch.eye(dim, dtype=dtype) * 0.8
                + 0.05 * torch.randn(dim, dim, generator=g, dtype=dtype)
            )
            self.lin.bias.copy_(0.1 * torch.randn(dim, generator=g, dtype=dtype))
        self.grad_enabled: list[bool] = []
        self.refs: list[weakref.ref] = []

    def forward(self, x, t):
        self.grad_enabled.append(torch.is_grad_enabled())
        self.refs.append(weakref.ref(x))
        tt = t[:, None]
        return (1 - tt) * self.lin(x) + tt * x


def _solve(net, solver, x0, steps=5, **kw):
    if not solver.adaptive:
        kw["steps"] = steps
    return fr.solve(fr.InDIFlow(net), solver, x0, **kw)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_no_graph_by_default(name):
    net = Net()
    x0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    sol = _solve(net, SOLVERS[name](), x0)
    assert sol.x.grad_fn is None and not sol.x.requires_grad
    assert net.grad_enabled and not any(net.grad_enabled)


@pytest.mark.parametrize(
    "name", ["Euler", "Heun", "RK4", "Dopri5", "InDISampler", "Torchdiffeq-rk4"]
)
def test_gradients_flow_when_differentiable(name):
    net = Net()
    x0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    solver = SOLVERS[name]()
    sol = _solve(net, solver, x0, differentiable=True, generator=torch.Generator().manual_seed(0))
    # adaptive: Hairer's start-step probe only chooses a step size and runs without a graph
    assert net.grad_enabled.count(False) == (1 if isinstance(solver, fr.Dopri5) else 0)
    sol.x.square().sum().backward()
    assert x0.grad is not None and float(x0.grad.abs().sum()) > 0
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters())


@pytest.mark.parametrize("name", ["Heun", "RK4", "InDISampler"])
def test_gradient_matches_finite_differences(name):
    """float64 gradcheck of the solve map (x0, W) ↦ x_0 on a tiny problem."""
    net = Net(dim=3)
    x0 = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    solver = SOLVERS[name]() if name != "InDISampler" else fr.InDISampler()
    weight = net.lin.weight

    def run(x, w):
        with torch.no_grad():
            weight.copy_(w.detach())
        pred = lambda xx, t: (1 - t[:, None]) * (xx @ w.T + net.lin.bias) + t[:, None] * xx  # noqa: E731
        return fr.solve(fr.InDIFlow(pred), solver, x, steps=4, differentiable=True).x

    w0 = weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(run, (x0, w0), eps=1e-6, atol=1e-8)


def test_adaptive_gradient_matches_finite_differences_in_x0():
    """Adaptive: the gradient of a smooth loss matches a central difference to the step control's
    tolerance (the accepted step sizes depend on x0 only through the error norms)."""
    net = Net(dim=3)
    x0 = torch.randn(1, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    solver = fr.Dopri5(rtol=1e-8, atol=1e-10)

    def loss(x):
        return _solve(net, solver, x, differentiable=True).x.sum()

    xg = x0.clone().requires_grad_()
    loss(xg).backward()
    eps = 1e-5
    for j in range(3):
        e = torch.zeros_like(x0)
        e[0, j] = eps
        with torch.no_grad():
            fd = (float(loss(x0 + e)) - float(loss(x0 - e))) / (2 * eps)
        assert abs(fd - float(xg.grad[0, j])) < 1e-4 * max(1.0, abs(fd))


@pytest.mark.parametrize("name", ["Euler", "Heun", "RK4", "Dopri5", "InDISampler", "NaiveSampler"])
def test_live_states_do_not_grow_with_steps(name):
    net = Net()
    x0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    solver = SOLVERS[name]()
    kw = {} if solver.adaptive else {"steps": 50}
    if solver.adaptive:
        solver = fr.Dopri5(rtol=1e-9, atol=1e-11)  # many steps
    sol = fr.solve(fr.InDIFlow(net), solver, x0, **kw)
    gc.collect()
    alive = sum(r() is not None for r in net.refs)
    assert len(net.refs) >= 50
    assert alive <= 3, f"{alive} of {len(net.refs)} states seen by the predictor are still alive"
    del sol


def test_live_state_check_can_fail():
    """A callback that keeps every state keeps them alive, and the weakref count sees it."""
    net = Net()
    x0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    kept = []
    fr.solve(fr.InDIFlow(net), fr.Euler(), x0, steps=50, callback=lambda i, t, x: kept.append(x))
    gc.collect()
    assert sum(r() is not None for r in net.refs) >= 50


@pytest.mark.parametrize("dump_slot", [None, 3])
def test_the_saved_states_buffer_has_one_slot_per_save_time_and_one_dump_slot(dump_slot):
    """The trajectory buffer holds ``n_slots`` saved states, plus one dump slot only for a run that
    saves per row (``ControllerRun.dump_slot``): ``(n_slots + 1) × state`` memory at most. The
    start state sits in its slot; every other slot is NaN until a sample reaches it."""
    from types import SimpleNamespace

    from flowrestore.integrate.stepping import trajectory_buffer

    x = torch.randn(2, 5, dtype=F64)
    schedule = SimpleNamespace(save_times=torch.zeros(3), n_slots=3, start_slot=0)
    traj = trajectory_buffer(schedule, SimpleNamespace(dump_slot=dump_slot), x)
    assert traj.shape == (3 + (dump_slot is not None), 2, 5)
    torch.testing.assert_close(traj[0], x)
    assert traj[1:].isnan().all()
    no_saves = SimpleNamespace(save_times=None, n_slots=0, start_slot=None)
    assert trajectory_buffer(no_saves, SimpleNamespace(dump_slot=dump_slot), x) is None
