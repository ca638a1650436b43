"""BIRD (flowrestore.inversion) as a user drives it: half precision, and run()'s arguments refused
before any evaluation with a typed error that names them (review findings)."""

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError


def _problem(calls=None):
    g = torch.Generator().manual_seed(0)
    prior = fr.oracles.GaussianGenerativeOracle(mean=torch.rand(1, 16, 16, generator=g), std=0.02)

    def predictor(x, t):
        if calls is not None:
            calls.append(1)
        return prior.posterior_mean(x, t)

    x = prior.sample(2, generator=g)
    y = fr.degradations.GaussianBlur(2.0)(x) + 0.01 * torch.randn(x.shape, generator=g)
    blur = fr.BlindOperator(
        fr.degradations.GaussianBlur, width=fr.Param(init=1.0, bounds=(0.1, 5.0))
    )
    inv = fr.BlindInversion(
        fr.InDIFlow(predictor), solver=fr.Euler(), steps=3, degradation=blur, iterations=4
    )
    return inv, y.float()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gradient", ["exact", "detached"])
def test_half_precision_observation_runs_finite(dtype, gradient):
    # float16: Adam's second moment and eps flushed to zero, the first update made z NaN and the
    # run stopped with NonFiniteError at iteration 2
    inv, y = _problem()
    inv.gradient = gradient
    ref = inv.run(y, generator=torch.Generator().manual_seed(1))
    res = inv.run(y.to(dtype), generator=torch.Generator().manual_seed(1))
    assert res.x.dtype == dtype  # Ψ ran in the flow's (the observation's) dtype
    assert res.latent.dtype == torch.float32 and res.params["width"].dtype == torch.float32
    assert bool(torch.isfinite(res.history.loss).all())
    # the unknown moves as in float32 (Adam's steps of 1e-2 survive)
    torch.testing.assert_close(res.params["width"], ref.params["width"], atol=2e-3, rtol=0)


def test_gradients_of_half_observation_are_float32_and_finite():
    inv, y = _problem()
    z = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    g_z, g_p = inv.gradients(y.half(), z, {"width": torch.ones(2)})
    assert g_z.dtype == torch.float32 and bool(torch.isfinite(g_z).all())
    assert bool(torch.isfinite(g_p["width"]).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"generator": 5}, ArgumentTypeError, "generator"),
        ({"callback": 5}, ArgumentTypeError, "callback"),
        ({"image_shape": (1, -16, 16)}, ShapeError, "image_shape"),
        ({"image_shape": (1, 16.0, 16)}, ShapeError, "image_shape"),
        ({"image_shape": ()}, ShapeError, "image_shape"),
        ({"params": torch.ones(2)}, ArgumentTypeError, "params"),
        ({"latent": torch.full((2, 1, 16, 16), float("nan"))}, ConfigError, "latent"),
        ({"latent": torch.zeros(2, 1, 16, 16)}, ConfigError, "latent"),
    ],
)
def test_run_refuses_bad_arguments_before_any_evaluation(kwargs, error, name):
    # generator=5 was an AttributeError, callback=5 a TypeError after a whole iteration, a
    # negative image_shape a RuntimeError from torch.randn, a NaN latent a NonFiniteError that
    # blamed the learning rates, and an all-zero latent ran off the sphere silently
    calls = []
    inv, y = _problem(calls)
    with pytest.raises(error, match=name):
        inv.run(y, **kwargs)
    assert calls == []


def test_run_accepts_numpy_image_shape():
    np = pytest.importorskip("numpy")
    inv, y = _problem()
    inv.iterations = 1
    res = inv.run(y, generator=torch.Generator().manual_seed(0), image_shape=np.array([1, 16, 16]))
    assert res.x.shape == y.shape


def test_callback_states_kept_by_the_user_do_not_change_afterwards():
    # the state's latent and params were views of the tensors Adam updates in place: a list of
    # kept states held the final values k times
    inv, y = _problem()
    seen = []
    res = inv.run(
        y, generator=torch.Generator().manual_seed(0), callback=lambda k, s: seen.append(s)
    )
    widths = torch.stack([s.params["width"] for s in seen])
    torch.testing.assert_close(widths, res.history["width"][1:])
    assert not torch.equal(seen[0].latent, res.latent)
    torch.testing.assert_close(seen[-1].latent, res.latent)


def test_a_flow_the_solver_cannot_step_is_refused_when_built():
    # was accepted by BlindInversion(...) and refused only by run(), with the observation loaded
    from flowrestore.errors import IncompatibleSolverError
    from flowrestore.oracles.diffusion import linear_alphas_cumprod

    flow = fr.DiffusionFlow(
        lambda x, t: torch.zeros_like(x), alphas_cumprod=linear_alphas_cumprod()
    )
    blur = fr.BlindOperator(fr.degradations.GaussianBlur, width=fr.Param(init=1.0))
    with pytest.raises(IncompatibleSolverError, match="DiffusionSDE"):
        fr.BlindInversion(flow.reverse_sde(), solver=fr.Euler(), steps=3, degradation=blur)


def test_diffpir_flow_over_an_edm_denoiser_starts_from_its_noise_scale():
    # DiffPIRFlow declares no latent_std: BIRD started Ψ from z (std 1), not from σ_max·z
    def den(x, sigma):
        return x * 0.25 / (0.25 + sigma.reshape(-1, 1, 1, 1) ** 2)

    edm = fr.DenoiserFlow(den, sigma_max=80.0)
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    flow = fr.DiffPIRFlow(edm, fr.degradations.Inpainting(torch.ones(1, 8, 8)), y, noise_std=0.05)
    blur = fr.BlindOperator(fr.degradations.GaussianBlur, width=fr.Param(init=1.0))
    inv = fr.BlindInversion(flow, solver=fr.Euler(), steps=3, degradation=blur)
    assert inv.latent_std == 80.0
    z = torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(inv.start(z), 80.0 * z)
