"""Property tests (hypothesis, bounded finite inputs): batch-split invariance, reproducible noise,
and the a-priori error bound C·h^p on random Gaussian oracles."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowrestore as fr

from .helpers import F64, grid_only

SETTINGS = settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def gaussian_problems(draw, max_batch=6, dim_range=(1, 12)):
    """A random GaussianOracle (diagonal h optional) and a batch of finite observations."""
    dim = draw(st.integers(*dim_range))
    batch = draw(st.integers(2, max_batch))
    seed = draw(st.integers(0, 2**31 - 1))
    lo = draw(st.floats(0.2, 1.0))
    hi = lo + draw(st.floats(0.0, 1.0))
    noise = draw(st.floats(0.2, 1.5))
    with_h = draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(dim, generator=g, dtype=F64) * draw(st.floats(0.0, 3.0))
    std = lo + (hi - lo) * torch.rand(dim, generator=g, dtype=F64)
    kw = {"h": 0.2 + 0.8 * torch.rand(dim, generator=g, dtype=F64)} if with_h else {}
    oracle = fr.oracles.GaussianOracle(mean=mean, std=std, noise_std=noise, **kw)
    y = oracle.sample(batch, generator=g)[1]
    return oracle, y


FIXED = [
    fr.Euler(),
    fr.Heun(),
    fr.RK4(),
    grid_only(fr.Dopri5()),
    fr.InDISampler(),
    fr.NaiveSampler(),
    fr.ColdDiffusionSampler(),
]


@SETTINGS
@given(
    problem=gaussian_problems(),
    steps=st.integers(1, 12),
    solver=st.sampled_from(FIXED),
    split=st.integers(1, 5),
)
def test_fixed_step_batch_split_invariance(problem, steps, solver, split):
    oracle, y = problem
    split = min(split, y.shape[0] - 1)
    flow = fr.InDIFlow(oracle)
    whole = fr.solve(flow, solver, y, steps=steps).x
    parts = torch.cat(
        [
            fr.solve(flow, solver, y[:split], steps=steps).x,
            fr.solve(flow, solver, y[split:], steps=steps).x,
        ]
    )
    assert torch.equal(whole, parts)


@SETTINGS
@given(
    problem=gaussian_problems(max_batch=5),
    rtol=st.sampled_from([1e-3, 1e-5, 1e-7]),
    solver_cls=st.sampled_from([fr.Bosh3, fr.Dopri5]),
    split=st.integers(1, 4),
    t_end=st.sampled_from([None, 0.3]),
)
def test_adaptive_batch_split_invariance(problem, rtol, solver_cls, split, t_end):
    oracle, y = problem
    split = min(split, y.shape[0] - 1)
    solver = solver_cls(rtol=rtol, atol=rtol * 1e-3)
    flow = fr.InDIFlow(oracle)
    whole = fr.solve(flow, solver, y, t_end=t_end)
    a = fr.solve(flow, solver, y[:split], t_end=t_end)
    b = fr.solve(flow, solver, y[split:], t_end=t_end)
    assert torch.equal(whole.x, torch.cat([a.x, b.x]))
    assert torch.equal(whole.stats.nfe, torch.cat([a.stats.nfe, b.stats.nfe]))


@SETTINGS
@given(
    problem=gaussian_problems(),
    steps=st.integers(1, 10),
    eps=st.floats(0.01, 1.0),
    brownian=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_same_generator_same_output(problem, steps, eps, brownian, seed):
    oracle, y = problem
    solver = fr.InDISampler(eps=eps, brownian=brownian)

    def run():
        return fr.solve(
            fr.InDIFlow(oracle),
            solver,
            y,
            steps=steps,  # noqa: E731
            generator=torch.Generator().manual_seed(seed),
        ).x

    first = run()
    assert torch.equal(first, run())
    other = fr.solve(
        fr.InDIFlow(oracle),
        solver,
        y,
        steps=steps,
        generator=torch.Generator().manual_seed(seed + 1),
    ).x
    assert not torch.equal(first, other)


@SETTINGS
@given(
    problem=gaussian_problems(),
    steps=st.integers(1, 10),
    eps=st.floats(0.01, 1.0),
    brownian=st.booleans(),
    data=st.data(),
)
def test_per_sample_seeds_are_batch_invariant(problem, steps, eps, brownian, data):
    oracle, y = problem
    B = y.shape[0]
    seeds = data.draw(st.lists(st.integers(0, 2**31 - 1), min_size=B, max_size=B, unique=True))
    rows = data.draw(st.permutations(range(B)))[: data.draw(st.integers(1, B))]
    solver = fr.InDISampler(eps=eps, brownian=brownian)
    flow = fr.InDIFlow(oracle)
    whole = fr.solve(flow, solver, y, steps=steps, seeds=seeds).x
    sub = fr.solve(flow, solver, y[rows], steps=steps, seeds=[seeds[r] for r in rows]).x
    assert torch.equal(whole[rows], sub)


@SETTINGS
@given(
    problem=gaussian_problems(max_batch=3, dim_range=(4, 12)),
    case=st.sampled_from([("Euler", 1, 32), ("Heun", 2, 32), ("RK4", 4, 16), ("Midpoint", 2, 32)]),
)
def test_error_bound_c_h_p(problem, case):
    """err(h) ≤ 2 C h^p on [1, 0.05], with C = err(h_ref)/h_ref^p from a reference level."""
    oracle, y = problem
    name, p, n_ref = case
    solver = getattr(fr, name)()
    exact = oracle.ode_solution(y, 0.05)
    scale = float((y - exact).abs().max()) + 1e-300

    def err(n):
        return float(
            (fr.solve(fr.InDIFlow(oracle), solver, y, steps=n, t_end=0.05).x - exact).abs().max()
        )

    c = max(err(n_ref), 1e-13 * scale) * n_ref**p  # h = 1/n up to the constant span 0.95
    for n in (2 * n_ref, 4 * n_ref):
        assert err(n) <= 2 * c * n ** (-p) + 1e-12 * scale
