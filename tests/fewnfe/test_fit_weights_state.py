"""FittedMultistep carries only the clean estimates a later step combines."""

import torch

import flowrestore as fr
from flowrestore.solvers.fitted import FittedState


def test_the_state_keeps_only_what_a_later_step_combines():
    """Weights using 1, 2, 1, 1 estimates: after step 0 one estimate is carried (step 1 uses
    it), after steps 1 and 2 none (no later step looks back)."""
    weights = [(1.0,), (1.5, -0.5), (1.0,), (1.0,)]
    solver = fr.FittedMultistep(weights=weights, times=(1.0, 0.7, 0.4, 0.2, 0.0))
    flow = fr.InDIFlow(lambda x, t: 0.5 * x)
    x = torch.ones(2, 3, dtype=torch.float64)
    state = FittedState()
    grid = [1.0, 0.7, 0.4, 0.2]
    kept = []
    for k, t in enumerate(grid[:-1]):
        tt = torch.tensor(t, dtype=torch.float64)
        h = torch.tensor(grid[k + 1] - t, dtype=torch.float64)
        res = solver.step(flow, tt, x, h, state, None)
        x, state = res.x, res.state
        kept.append(len(state.values))
    assert kept == [1, 0, 0]
