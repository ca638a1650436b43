"""``Context.steps_left``: on a fixed grid the loop tells each step how many steps follow it, the
landing step onto a singular end included (a host int: what diffusers' ``lower_order_final``
reads from its step index); under error control it is ``None``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

import flowrestore as fr

F64 = torch.float64


def _recording(base, attribute="steps_left"):
    """``base`` that records ``ctx.<attribute>`` at every step."""

    @dataclass(repr=False)
    class Recording(base):
        seen: list = field(default_factory=list)

        def step(self, flow, t, x, h, state, ctx):
            self.seen.append(getattr(ctx, attribute))
            return super().step(flow, t, x, h, state, ctx)

    return Recording


def _indi():
    return fr.InDIFlow(lambda x, t: 0.5 * x)


def _ode():
    return fr.ODEFlow(lambda t, x: -x)


@pytest.mark.parametrize("steps", [1, 3, 6])
def test_a_fixed_grid_counts_down_to_its_last_step(steps):
    x = torch.ones(2, 3, dtype=F64)
    on_ode = _recording(fr.Euler)()
    fr.solve(_ode(), on_ode, x, steps=steps, t_span=(0.0, 1.0))
    assert on_ode.seen == list(range(steps - 1, -1, -1))
    # a singular end: the landing step (the solver's own: Euler's stage is inside) is the last
    landing = _recording(fr.Euler)()
    fr.solve(_indi(), landing, x, steps=steps)
    assert landing.seen == list(range(steps - 1, -1, -1))


def test_a_denoising_landing_counts_as_a_step():
    """RK4 lands on ``t = 0`` by the denoising step (its last stage is at the end): its own last
    step still has one step after it."""
    rk4 = _recording(fr.RK4)()
    fr.solve(_indi(), rk4, torch.ones(2, 3, dtype=F64), steps=4)
    assert rk4.seen == [3, 2, 1]


def test_error_control_knows_nothing_in_advance():
    solver = _recording(fr.Dopri5)()
    control = fr.PIController(rtol=1e-4, atol=1e-6)
    fr.solve(_ode(), solver, torch.ones(2, 3, dtype=F64), t_span=(0.0, 1.0), controller=control)
    assert solver.seen and set(solver.seen) == {None}


def test_the_landing_step_leaves_the_callers_context_alone():
    """``land`` tells the solver it is the last step on a copy of the context: the grid fitter
    steps other rows on with the same context after a landing (``flowrestore.integrate.gits``)."""
    from flowrestore.integrate.endpoint import land
    from flowrestore.solvers import Context

    flow, x = _indi(), torch.ones(2, 3, dtype=F64)
    solver = _recording(fr.Euler)()
    ctx = Context()
    x0, state = solver.init(flow, torch.tensor(0.5, dtype=F64), x, ctx)
    land(flow, solver, torch.tensor(0.5, dtype=F64), x0, state, ctx)
    assert solver.seen == [0] and ctx.steps_left is None


@pytest.mark.parametrize("steps", [1, 3, 5])
@pytest.mark.parametrize("compiled", [False, True])
def test_step_index_counts_the_steps_before_each_the_landing_included(steps, compiled):
    """``Context.step_index`` is the number of steps taken before this one — on the landing step
    onto ``t = 0`` too (the loop takes it after its grid's other steps)."""
    solver = _recording(fr.Euler, "step_index")()
    kw = {"compile": {"backend": "eager"}} if compiled else {}
    fr.solve(_indi(), solver, torch.ones(2, 3, dtype=F64), steps=steps, **kw)
    assert solver.seen == list(range(steps))
