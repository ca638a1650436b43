"""Dirac's observation follows the rows the loop steps (``DiracSDE.per_sample_fields``).

When a sample fails mid-solve (``on_failure='return'``) the loop steps the survivors only, with the
flow restricted to their rows (:meth:`Flow.restrict`): guidance and the data-consistency trace must
use each survivor's own measurement, exactly as when that sample is solved alone.
"""

from __future__ import annotations

import torch

import flowrestore as fr

F64 = torch.float64


def _phi(y, t):
    # Rows marked by a large mean turn non-finite below t = 0.5: they fail mid-solve.
    bad = (y.mean(dim=(1, 2, 3)) > 50) & (t < 0.5)
    return torch.where(bad.reshape(-1, 1, 1, 1), torch.nan, 0.9 * y)


def _sde(observation):
    return fr.DiracSDE(
        _phi, lambda x, t: x, sigma=fr.schedules.Geometric(0.01, 0.05), guidance=0.5,
        observation=observation,
    )  # fmt: skip


def test_survivors_of_a_failure_use_their_own_observation():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 1, 4, 4, generator=g, dtype=F64)
    y[1] += 100.0  # fails once t < 0.5
    obs = y + 0.1 * torch.randn(3, 1, 4, 4, generator=g, dtype=F64)
    seeds = [11, 12, 13]
    sol = fr.solve(_sde(obs), fr.DiracStep(), y, steps=10, seeds=seeds, on_failure="return")
    assert sol.success.tolist() == [True, False, True]
    dc = sol.records["data_consistency"]
    for i in (0, 2):
        alone = fr.solve(_sde(obs[i : i + 1]), fr.DiracStep(), y[i : i + 1], steps=10,
                         seeds=[seeds[i]])  # fmt: skip
        torch.testing.assert_close(sol.x[i], alone.x[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(
            dc[:, i], alone.records["data_consistency"][:, 0], rtol=0, atol=1e-12
        )


def test_restrict_selects_the_observation_rows():
    """The loop's subset rule (landing of survivors, per-sample control) applied to Dirac."""
    obs = torch.arange(4.0, dtype=F64).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    rows = torch.tensor([3, 1])
    sub = _sde(obs).restrict(rows)
    torch.testing.assert_close(sub.observation_rows(obs[rows]), obs[rows], rtol=0, atol=0)
