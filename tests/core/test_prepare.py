"""``fr.integrate.prepare``: a solve checked and planned once, run on many start states (BIRD's
inner solve). Each call equals ``fr.solve`` with the same arguments; a start state of another
shape, dtype or device is refused; refusals of ``solve`` happen at planning time."""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr


def _flow():
    return fr.InDIFlow(lambda x, t: 0.5 * x + 0.1 * torch.sin(x))


@pytest.mark.parametrize(
    "solver,kw",
    [(fr.Heun(), {"steps": 4}), (fr.InDISampler(eps=0.1), {"steps": 3}), (fr.Dopri5(), {})],
    ids=["Heun", "InDISampler", "Dopri5"],
)
def test_each_call_equals_solve(solver, kw):
    y = torch.randn(3, 5, dtype=torch.float64)
    plan = fr.integrate.prepare(_flow(), solver, y, **kw)
    for seed in (0, 1):
        y2 = y + seed
        got = plan(y2, seeds=[seed, 5, 6])
        want = fr.solve(_flow(), solver, y2, seeds=[seed, 5, 6], **kw)
        assert torch.equal(got.x, want.x)
        assert torch.equal(got.stats.nfe, want.stats.nfe)


def test_other_start_states_are_refused():
    y = torch.randn(3, 5)
    plan = fr.integrate.prepare(_flow(), fr.Euler(), y, steps=2)
    for bad in (torch.randn(2, 5), y.double()):
        with pytest.raises(fr.ConfigError, match="planned shape, dtype and device"):
            plan(bad)


def test_refusals_happen_at_planning_time():
    with pytest.raises(fr.ConfigError, match="output"):
        fr.integrate.prepare(_flow(), fr.Euler(), torch.randn(2, 3), steps=2, output="mean")
