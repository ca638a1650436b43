"""Whole-solve capture and ``fr.solve(..., compile=...)`` on the diffusion and Dirac flows
(issue 17, item 3): what the core's tests check on InDIFlow, for ``DiffusionFlow`` (ε and v, with
the clean-estimate clip) and ``DiracSDE`` (a Gaussian-blur family, guidance, the data-consistency
record) under their native fixed-step solvers.

Compiled with the ``eager``/``aot_eager`` backends: the tracing is what is tested (the inductor
run of the same code is in tests/core/test_compile.py, marked slow).
"""

from __future__ import annotations

import pytest
import torch
from versions import COMPILE_TRACES_ALL, needs_torch_2_13

import flowrestore as fr
from flowrestore.oracles.diffusion import linear_alphas_cumprod

F64 = torch.float64
ABAR = linear_alphas_cumprod()


def _model(x, k):
    return torch.tanh(x) * (1 + k.reshape(-1, *([1] * (x.dim() - 1))) / 1000)


def _y():
    return torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=F64)


@pytest.mark.parametrize(
    "ptype,solver",
    [("epsilon", fr.Euler()), ("v_prediction", fr.SemiLinearMultistep())],
    ids=["eps-Euler", "v-multistep"],
)
def test_diffusion_whole_solve_fullgraph_matches_eager(ptype, solver):
    flow = fr.DiffusionFlow(_model, alphas_cumprod=ABAR, prediction_type=ptype,
                            clip=fr.ClipSample(1.0))  # fmt: skip

    def run(x):
        return fr.solve(flow, solver, x, steps=5, check_finite=False).x

    x = _y()
    torch._dynamo.reset()
    out = torch.compile(run, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, run(x), rtol=1e-5, atol=1e-5)


def _dirac(guidance):
    A = fr.degradations.GaussianBlurFamily(kernel_size=5, width=fr.schedules.Linear(0.3, 2.0))
    return fr.DiracSDE(
        lambda y, t: 0.9 * y + 0.1 * torch.tanh(y) * t.reshape(-1, 1, 1, 1), A,
        sigma=fr.schedules.Geometric(0.01, 0.05), guidance=guidance,
    )  # fmt: skip


@needs_torch_2_13
def test_dirac_whole_solve_fullgraph_matches_eager():
    """No generator inside the graph (torch.compile cannot create one): the global RNG."""
    sde = _dirac(None)

    def run(y):
        return fr.solve(sde, fr.DiracStep(), y, steps=5, check_finite=False).x

    y = _y()
    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="eager")
    torch.manual_seed(3)
    out = compiled(y)
    torch.manual_seed(3)
    torch.testing.assert_close(out, run(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "guidance,solver,noise",
    [
        (0.5, fr.DiracStep(), "seeds"),
        (None, fr.DiracStep(), "generator"),
        (None, fr.EulerMaruyama(), "seeds"),
        (None, fr.SRA1(), "generator"),
    ],
    ids=["DiracStep-guided-seeds", "DiracStep-generator", "EM-seeds", "SRA1-generator"],
)
def test_compiled_dirac_solve_equals_eager(guidance, solver, noise):
    """The noise is drawn before the compiled steps from the solver's declared draws; guidance
    (an autograd gradient through Φ inside the step) is traced too."""
    sde, y = _dirac(guidance), _y()

    def solve(**extra):
        kw = (
            {"seeds": [1, 2]}
            if noise == "seeds"
            else {"generator": torch.Generator().manual_seed(5)}
        )
        return fr.solve(sde, solver, y, steps=5, **kw, **extra)

    eager = solve()
    if guidance is not None and not COMPILE_TRACES_ALL:  # requires_grad_ untraced before 2.13
        with pytest.raises(fr.ConfigError, match="could not capture this solve"):
            solve(compile={"backend": "eager"})
        return
    comp = solve(compile={"backend": "eager"})
    assert torch.equal(comp.x, eager.x)
    for name, values in eager.records.items():
        assert torch.equal(comp.records[name], values), name
    assert bool(torch.isfinite(eager.x).all())


@pytest.mark.parametrize("solver", [fr.Euler(), fr.Heun(), fr.IPNDM()], ids=repr)
def test_compiled_flow_matching_solve_on_its_default_grid_equals_eager(solver):
    """The flow-matching default grid (``Shifted`` with ``end_shift``: its exponent depends on the
    number of steps) is planned on the host, so ``compile=`` traces the steps and agrees with the
    eager solve; the grid is the one ``steps=N`` lays eagerly."""
    flow = fr.FlowMatchingFlow(lambda x, k: torch.tanh(x) * (1 - k.reshape(-1, 1, 1, 1) / 2000),
                               shift=3.0)  # fmt: skip
    x = _y()
    eager = fr.solve(flow, solver, x, steps=5, save_at="steps")
    torch._dynamo.reset()
    comp = fr.solve(flow, solver, x, steps=5, save_at="steps", compile={"backend": "eager"})
    torch.testing.assert_close(comp.x, eager.x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(comp.ts, eager.ts, rtol=0, atol=0)
    assert float(eager.ts[-2]) < fr.Shifted(3.0, 2.0)(eager.ts.numel() - 1, 1.0, 0.0)[-2]


def test_flow_matching_whole_solve_fullgraph_matches_eager():
    """A whole flow-matching solve traced as one graph: the default grid's ``ρ_N`` is computed
    from Python numbers while tracing (no graph break) and the answer is the eager one."""
    flow = fr.FlowMatchingFlow(lambda x, k: torch.tanh(x) * (1 - k.reshape(-1, 1, 1, 1) / 2000),
                               shift=3.0)  # fmt: skip

    def run(x):
        return fr.solve(flow, fr.IPNDM(), x, steps=5, check_finite=False).x

    x = _y()
    torch._dynamo.reset()
    out = torch.compile(run, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, run(x), rtol=1e-5, atol=1e-5)
