"""The closed-form SVDs of the operators and the linear-Gaussian posterior oracle.

Both are checked against what they must be, never against the code's own numbers: an SVD
``A = U S Vᵀ`` has an orthonormal ``V`` (``‖Vᵀx‖ = ‖x‖``, ``V Vᵀ = I``), ``Uᵀ A x = S Vᵀ x`` and
``‖A x‖ = ‖S Vᵀ x‖``; the oracle's posterior equals docs/math.md §10's dense formula
``Σ_post = (Σ⁻¹ + AᵀA/σ_y²)⁻¹``, ``μ_post = Σ_post(Σ⁻¹ μ + Aᵀ y/σ_y²)`` (in its Kalman form, which
holds at σ_y = 0 too) built from the operator's matrix (so the oracle's ``A`` is the operator's).
"""

from __future__ import annotations

import pytest
import torch

import flowrestore as fr
from flowrestore.degradations import JPEG, Diagonal, GaussianBlur, Identity, MotionBlur
from flowrestore.flows.spectral import spectral_form

from .helpers import F64, SHAPE, dense, operators, posterior, prior, skewed_blur


def _cases():
    ops = operators()
    ops.update(
        diagonal=Diagonal(torch.linspace(-1.5, 2.0, 64, dtype=F64).reshape(SHAPE)),
        identity=Identity(),
        downsample4=fr.degradations.Downsample(4),
        blur_kernel=skewed_blur(),
    )
    return ops


@pytest.mark.parametrize("name", list(_cases()))
def test_spectral_form_is_an_svd(name):
    op = _cases()[name]
    form = spectral_form(op)
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    c = form.to_spectral(x)
    norm = lambda v: v.abs().pow(2).flatten(1).sum(1).sqrt()  # noqa: E731
    torch.testing.assert_close(norm(c), norm(x))  # V orthonormal
    torch.testing.assert_close(form.from_spectral(c), x)  # V Vᵀ = I
    s = form.singular_values(x)
    assert bool((s >= 0).all())
    ax = op.A(x)
    torch.testing.assert_close(form.project_measurement(ax, x), s * c)  # Uᵀ A x = S Vᵀ x
    torch.testing.assert_close(norm(ax), norm(s * c))  # U orthonormal on the range


def test_block_average_form_refuses_an_indivisible_size_by_name():
    """Every entry point of the block-average SVD names the size and factor (the singular values
    and the measurement projection reshaped first and raised a bare RuntimeError)."""
    form = spectral_form(fr.degradations.Downsample(4))
    x = torch.zeros(1, 1, 10, 8, dtype=F64)
    calls = (form.to_spectral, form.from_spectral, form.singular_values,
             lambda v: form.project_measurement(torch.zeros(1, 1, 2, 2, dtype=F64), v))  # fmt: skip
    for call in calls:
        with pytest.raises(fr.ShapeError, match=r"\(10, 8\).*factor=4"):
            call(x)


def test_operators_without_svd_are_refused_by_name():
    for op in (GaussianBlur(1.0), MotionBlur(torch.ones(3, 3) / 9), JPEG(50), lambda x: x):
        with pytest.raises(fr.IncompatibleOperatorError) as err:
            spectral_form(op, "DDRM")
        assert "DDRM" in str(err.value) and repr(op) in str(err.value)
    assert "padding='circular'" in str(pytest.raises(fr.IncompatibleOperatorError, spectral_form,
                                                     GaussianBlur(1.0)).value)  # fmt: skip


@pytest.mark.parametrize("name", ["inpainting", "downsample", "blur", "skewed_blur"])
@pytest.mark.parametrize("noise_std", [0.1, 0.0])
def test_posterior_oracle_is_the_dense_formula(name, noise_std):
    op = skewed_blur() if name == "skewed_blur" else operators()[name]
    mean, std = prior(name)
    oracle = posterior(name, op, mean=mean, std=std, noise_std=noise_std)
    A = dense(op.A, SHAPE)
    x, y = oracle.sample(3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(oracle.apply(x), op.A(x))  # the oracle's A is the operator
    # §10 in its Kalman form (the same posterior by the matrix inversion lemma), which also
    # holds at σ_y = 0: K = ΣAᵀ(AΣAᵀ + σ_y² I)⁺, μ_post = μ + K(y − Aμ), Σ_post = Σ − KAΣ
    cov0 = torch.diag((std.expand(SHAPE) ** 2).flatten())
    gram = A @ cov0 @ A.T + noise_std**2 * torch.eye(A.shape[0], dtype=F64)
    gain = cov0 @ A.T @ torch.linalg.pinv(gram, hermitian=True, rtol=1e-12)
    mu = mean.flatten() + (y.flatten(1) - mean.flatten() @ A.T) @ gain.T
    cov = cov0 - gain @ A @ cov0
    tol = {"rtol": 1e-6, "atol": 1e-9}
    torch.testing.assert_close(oracle.posterior_mean(y).flatten(1), mu, **tol)
    torch.testing.assert_close(oracle.posterior_var().flatten(), torch.diagonal(cov), **tol)
    fit = (y.flatten(1) - (A @ mu.T).T).pow(2).sum(1)
    torch.testing.assert_close(
        oracle.expected_residual(y),
        fit + torch.trace(A @ cov @ A.T),
        rtol=1e-6,
        atol=1e-9 if noise_std else 1e-6,
    )


def test_expected_residual_averages_to_the_noise_level():
    """Posterior samples with their measurements have the joint law of (x, y), so
    ``E_y E[‖y − A x‖² | y] = m σ_y²`` (the target of 'data consistency at the noise level')."""
    op = operators()["downsample"]
    mean, std = prior("downsample")
    oracle = posterior("downsample", op, mean=mean, std=std, noise_std=0.2)
    _, y = oracle.sample(40000, generator=torch.Generator().manual_seed(3))
    m = y[0].numel()
    avg = float(oracle.expected_residual(y).mean())
    assert abs(avg - m * 0.04) < 4 * 0.04 * (2 * m / 40000) ** 0.5, (avg, m * 0.04)


def test_oracle_refuses_what_is_not_diagonal():
    with pytest.raises(fr.ConfigError, match="constant on each block"):
        fr.oracles.LinearGaussianPosterior.block_average(
            mean=0.0, std=torch.rand(SHAPE, dtype=F64) + 0.1, factor=2, noise_std=0.1,
            event_shape=SHAPE,
        )  # fmt: skip
    with pytest.raises(fr.ConfigError, match="std"):
        fr.oracles.LinearGaussianPosterior.circular_blur(
            mean=0.0, std=torch.ones(SHAPE), kernel=torch.ones(3, 3), noise_std=0.1,
            event_shape=SHAPE,
        )  # fmt: skip


@pytest.mark.parametrize("shape", [(1, 0, 4), (0, 4, 4), (4, 4), (1, 1, 4, 4)])
def test_oracle_refuses_an_event_shape_that_is_not_an_image(shape):
    """``event_shape`` is ``(C, H, W)`` with every size ≥ 1: an empty axis is refused by name
    (a random mutation accepting size 0 went unseen)."""
    with pytest.raises(fr.ConfigError, match=r"event_shape must be \(C, H, W\)"):
        fr.oracles.LinearGaussianPosterior.masked(
            mean=0.0, std=1.0, mask=1.0, noise_std=0.1, event_shape=shape
        )
