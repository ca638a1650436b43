"""Guided baselines, second review: the circular blur's transfer function follows its operator
(an in-place kernel change, a width that requires grad) and is not pickled; DiffPIR's ``ρ_t`` at
``t = 0`` for a noiseless measurement; ``lam`` as a numpy number; a non-finite measurement
refused when built; a measurement on another device copied once, not at every step; DDRM's
gradient with a noiseless measurement; DPS and ``torch.inference_mode``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from syncs import ZeroNoise, loop_work

import flowrestore as fr
from flowrestore.degradations import Blur, Diagonal, Downsample, GaussianBlur, Inpainting
from flowrestore.flows.spectral import CircularBlurForm
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import F64, SHAPE


def _net(x, t):
    return 0.3 * x


def _model():
    return fr.DiffusionFlow(_net, alphas_cumprod=linear_alphas_cumprod())


def _dense_transfer(kernel: torch.Tensor, shape) -> torch.Tensor:
    """``Ĥ`` of the circular cross-correlation by ``kernel`` from its definition: the response to
    a unit impulse at the origin is ``k`` laid around it, reflected (``A δ [i] = k[c − i]``)."""
    h, w = shape[-2:]
    kh, kw = kernel.shape
    response = torch.zeros(h, w, dtype=F64)
    for u in range(kh):
        for v in range(kw):
            response[(kh // 2 - u) % h, (kw // 2 - v) % w] += kernel[u, v]
    return torch.fft.fft2(response)


def test_circular_blur_transfer_follows_an_in_place_kernel_change():
    """A blind or learned kernel updated in place (an optimiser's step) changes ``A``: the SVD
    DDRM and DiffPIR use must be the new operator's, not the one cached at the first call."""
    kernel = torch.zeros(3, 3, dtype=F64)
    kernel[1, 1] = 1.0
    op = Blur(kernel, padding="circular")
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=F64)
    flow = fr.DiffPIRFlow(_model(), op, op.A(x), noise_std=0.1)
    t = torch.tensor(0.3, dtype=F64)
    flow.denoise(t, x)  # fills the cache with the identity kernel's transfer
    with torch.no_grad():
        kernel.copy_(torch.rand(3, 3, generator=torch.Generator().manual_seed(1), dtype=F64))
    form = flow.spectral("DiffPIR")
    want = _dense_transfer(kernel, SHAPE)
    torch.testing.assert_close(form.singular_values(x), want.abs().expand(2, *SHAPE))
    fresh = fr.DiffPIRFlow(
        _model(), Blur(kernel.clone(), padding="circular"), flow.measurement, noise_std=0.1
    )
    torch.testing.assert_close(flow.denoise(t, x), fresh.denoise(t, x))


def test_circular_blur_width_requiring_grad_differentiates_every_solve():
    """A blur width that requires grad (a blind problem's estimate): each DiffPIR evaluation is
    differentiable in it — a second backward used to hit the first one's freed graph — and the
    gradient is the central difference."""
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=F64)
    y = GaussianBlur(1.2, kernel_size=5, padding="circular").A(x)
    t = torch.tensor(0.2, dtype=F64)

    def value(width):
        op = GaussianBlur(width, kernel_size=5, padding="circular")
        flow = fr.DiffPIRFlow(_model(), op, y, noise_std=0.05)
        return flow, (flow.denoise(t, x) ** 2).sum()

    w = torch.tensor(0.9, dtype=F64, requires_grad=True)
    flow, loss = value(w)
    (g1,) = torch.autograd.grad(loss, w)
    (g2,) = torch.autograd.grad((flow.denoise(t, x) ** 2).sum(), w)  # the same flow again
    eps = 1e-5
    with torch.no_grad():
        up, down = (value(torch.tensor(0.9 + e, dtype=F64))[1] for e in (eps, -eps))
        fd = (up - down) / (2 * eps)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(g1, fd, rtol=1e-6, atol=1e-9)


def test_circular_blur_form_pickles_without_its_transfer():
    """A flow saved after a GPU run must load without that GPU: the form's per-device ``Ĥ``
    stays behind (as the operators' copies and the block DCT do), and is rebuilt the same."""
    op = GaussianBlur(1.0, kernel_size=5, padding="circular")
    form = CircularBlurForm(op)
    x = torch.randn(2, *SHAPE, dtype=F64)
    s = form.singular_values(x)
    assert "_cache" in vars(form)
    loaded = pickle.loads(pickle.dumps(form))
    assert "_cache" not in vars(loaded)
    torch.testing.assert_close(loaded.singular_values(x), s)


@pytest.mark.parametrize("model_name", ["diffusion", "flow_matching"])
def test_diffpir_noiseless_measurement_at_t0_is_exact_consistency(model_name):
    """``σ_y = 0``: ``ρ = 0`` at every ``t``, so ``x̂_0`` is the observed coefficient ``ȳ = y/s``
    at ``t = 0`` as just above it (``ρ_0`` was ``0 · ∞ = NaN``, and the prox returned
    ``D + s (y − s D)``); ``σ_y > 0``: ``ρ_0 = ∞`` and ``x̂_0 = D``."""
    model = _model() if model_name == "diffusion" else fr.FlowMatchingFlow(lambda x, t: 0.3 * x)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, *SHAPE, generator=g, dtype=F64), torch.randn(2, *SHAPE, generator=g)
    y = y.to(F64)
    zero, small = torch.tensor(0.0, dtype=F64), torch.tensor(1e-7, dtype=F64)
    flow = fr.DiffPIRFlow(model, Diagonal(0.5), y, noise_std=0.0)
    assert float(flow.rho(zero)) == 0.0
    torch.testing.assert_close(flow.denoise(zero, x), y / 0.5)
    torch.testing.assert_close(flow.denoise(small, x), y / 0.5)
    noisy = fr.DiffPIRFlow(model, Diagonal(0.5), y, noise_std=0.1)
    assert float(noisy.rho(zero)) == float("inf")
    torch.testing.assert_close(noisy.denoise(zero, x), model.denoise(zero, x))


def test_lam_takes_numpy_numbers_and_names_itself():
    y = torch.zeros(1, *SHAPE, dtype=F64)
    op = Inpainting(torch.ones(SHAPE, dtype=F64))
    t = torch.tensor(0.4, dtype=F64)
    want = fr.DiffPIRFlow(_model(), op, y, noise_std=0.1, lam=7.0).rho(t)
    for lam in (np.float32(7.0), np.int64(7)):
        torch.testing.assert_close(
            fr.DiffPIRFlow(_model(), op, y, noise_std=0.1, lam=lam).rho(t), want
        )
    for bad in (True, 0.0, -1.0, float("inf"), "7"):
        with pytest.raises(fr.ConfigError, match="lam"):
            fr.DiffPIRFlow(_model(), op, y, noise_std=0.1, lam=bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_measurement_is_refused_before_any_evaluation(bad):
    """Missing pixels marked by NaN in an inpainting measurement made every DPS and DiffPIR
    sample NaN (``y − m ⊙ x`` and ``sign(m) y`` are NaN where ``m = 0``)."""
    calls = []

    def net(x, t):
        calls.append(1)
        return 0.3 * x

    model = fr.DiffusionFlow(net, alphas_cumprod=linear_alphas_cumprod())
    mask = torch.ones(SHAPE, dtype=F64)
    mask[..., 0, 0] = 0.0
    y = torch.zeros(1, *SHAPE, dtype=F64)
    y[..., 0, 0] = bad
    for cls in (fr.GuidedFlow, fr.DiffPIRFlow):
        with pytest.raises(fr.ConfigError, match="measurement must be finite"):
            cls(model, Inpainting(mask), y, noise_std=0.1)
    assert not calls


@pytest.mark.parametrize("method", ["DPS", "DDRM", "DiffPIR"])
def test_a_measurement_on_the_host_is_copied_once_not_at_every_step(monkeypatch, method):
    """A measurement built on the CPU for a state on a GPU was copied to the device at every
    step (a wait on CUDA from pageable memory); the state on the ``meta`` device shows it: no op
    on a CPU tensor inside the loop after a warm-up solve. The copy is not pickled."""
    op = Downsample(2)
    y = op.A(torch.ones(2, *SHAPE, dtype=F64))  # on the host
    cls = fr.DiffPIRFlow if method == "DiffPIR" else fr.GuidedFlow
    step = {"DPS": fr.DPSStep, "DDRM": fr.DDRMStep, "DiffPIR": fr.DiffPIRStep}[method]()
    flow, x = cls(_model(), op, y, noise_std=0.05), torch.ones(2, *SHAPE, dtype=F64, device="meta")

    def solve():
        return fr.solve(flow, step, x, steps=4, noise=ZeroNoise(), check_finite=False)

    solve()
    with loop_work(monkeypatch) as seen:
        solve()
    assert seen.count == 0, dict(seen.ops)
    assert "_resident" in vars(flow)
    assert "_resident" not in vars(pickle.loads(pickle.dumps(flow)))


def test_a_restricted_flow_uses_its_own_rows_of_a_copied_measurement():
    """The per-device copy belongs to the measurement it was made from: a flow restricted to
    some rows (per-sample control) steps with those rows, not the full batch's cached copy."""
    g = torch.Generator().manual_seed(4)
    y = torch.randn(3, *SHAPE, generator=g).to(torch.float32)  # another dtype: copied
    flow = fr.GuidedFlow(_model(), Inpainting(torch.ones(SHAPE, dtype=F64)), y, noise_std=0.1)
    like = torch.zeros(3, *SHAPE, dtype=F64)
    torch.testing.assert_close(flow.measurement_for(like), y.to(F64))
    rows = torch.tensor([2, 0])
    sub = flow.restrict(rows)
    torch.testing.assert_close(sub.measurement_for(like[rows]), y[rows].to(F64))
    torch.testing.assert_close(flow.measurement_for(like), y.to(F64))


def test_a_shared_measurement_copy_serves_the_restricted_flows():
    """One measurement for the whole batch: a flow restricted to some rows reuses the copy the
    full flow made (per-sample control restricts at every step) and gets the same values."""
    y = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(5)).to(torch.float32)
    flow = fr.GuidedFlow(_model(), Inpainting(torch.ones(SHAPE, dtype=F64)), y, noise_std=0.1)
    like = torch.zeros(3, *SHAPE, dtype=F64)
    full = flow.measurement_for(like)
    sub = flow.restrict(torch.tensor([1, 2]))
    assert sub.measurement_for(like[1:]) is full
    torch.testing.assert_close(full, y.to(F64))


def test_a_differentiable_noiseless_ddrm_solve_has_the_closed_form_gradient():
    """``σ_y = 0``, ``A = diag(a)`` with every ``a_i > 0``: every coefficient is drawn around
    ``ȳ = y/a`` (eq. 8, third case), so with ``η_b = 1`` the last step returns ``y/a`` exactly,
    and ``∂ Σ x_0 / ∂ a = −y/a²``. The last step's ``√(σ_s² − 0)`` at ``σ_s = 0`` made it NaN."""
    g = torch.Generator().manual_seed(6)
    y = torch.randn(2, *SHAPE, generator=g, dtype=F64)
    a = (0.3 + torch.rand(1, *SHAPE, generator=g, dtype=F64)).requires_grad_(True)
    x = torch.randn(2, *SHAPE, generator=g, dtype=F64)
    flow = fr.GuidedFlow(_model(), Diagonal(a), y, noise_std=0.0)
    out = fr.solve(flow, fr.DDRMStep(), x, steps=4, seeds=[0, 1], differentiable=True).x
    torch.testing.assert_close(out, (y / a).expand_as(out))
    (grad,) = torch.autograd.grad(out.sum(), a)
    torch.testing.assert_close(grad, (-y / a**2).sum(0, keepdim=True))


def test_dps_under_inference_mode_is_refused_before_any_evaluation():
    """DPS's measurement gradient needs autograd: under ``torch.inference_mode()`` the solve
    stopped after one evaluation with autograd's "does not require grad" RuntimeError."""
    calls = []

    def net(x, t):
        calls.append(1)
        return 0.3 * x

    model = fr.DiffusionFlow(net, alphas_cumprod=linear_alphas_cumprod())
    flow = fr.GuidedFlow(model, Inpainting(torch.ones(SHAPE)), torch.ones(1, *SHAPE), noise_std=0.1)
    with torch.inference_mode(), pytest.raises(fr.ConfigError, match="inference_mode"):
        fr.solve(flow, fr.DPSStep(), torch.randn(1, *SHAPE), steps=3, seeds=[0])
    assert not calls


def test_dps_takes_a_start_made_under_inference_mode():
    """Images loaded under ``torch.inference_mode()`` and solved outside it: the step cannot set
    ``requires_grad`` on such a tensor (it raised); it steps a copy, with the same result."""
    model = fr.FlowMatchingFlow(_net)
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(2, *SHAPE, generator=g), torch.randn(2, *SHAPE, generator=g)
    with torch.inference_mode():
        x_inf, y_inf = x.clone(), y.clone()
    op = Inpainting(torch.ones(SHAPE))
    want = fr.solve(
        fr.GuidedFlow(model, op, y, noise_std=0.1), fr.DPSStep(), x, steps=3, seeds=[0, 1]
    )
    got = fr.solve(
        fr.GuidedFlow(model, op, y_inf, noise_std=0.1), fr.DPSStep(), x_inf, steps=3, seeds=[0, 1]
    )
    torch.testing.assert_close(got.x, want.x, rtol=0, atol=0)


def test_dps_steps_each_sample_by_its_own_residual():
    """The normalised step ``ζ ∇‖y − A D‖`` is each sample's: a batch solve (seeded per sample)
    equals every sample solved alone (one norm over the batch would couple their step sizes)."""
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(2, *SHAPE, generator=g, dtype=F64), torch.randn(2, *SHAPE, generator=g)
    y = y.to(F64)
    y[1] *= 30.0  # a residual far larger than the other sample's
    op = Inpainting((torch.rand(SHAPE, generator=g) < 0.5).to(F64))
    both = fr.solve(
        fr.GuidedFlow(_model(), op, y, noise_std=0.1), fr.DPSStep(), x, steps=4, seeds=[3, 4]
    )
    for i, seed in enumerate((3, 4)):
        alone = fr.GuidedFlow(_model(), op, y[i : i + 1], noise_std=0.1)
        one = fr.solve(alone, fr.DPSStep(), x[i : i + 1], steps=4, seeds=[seed])
        torch.testing.assert_close(both.x[i : i + 1], one.x, rtol=1e-12, atol=1e-12)


def test_a_diffpir_flows_repr_shows_its_lam():
    """Two DiffPIR flows that differ only in ``λ`` print differently (the refusal messages and
    logs print the flow)."""
    y, op = torch.zeros(1, *SHAPE), Inpainting(torch.ones(SHAPE))
    text = repr(fr.DiffPIRFlow(_model(), op, y, noise_std=0.05, lam=7.0))
    assert text.startswith("DiffPIRFlow(") and text.endswith("noise_std=0.05, lam=7)"), text
