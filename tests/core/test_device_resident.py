"""Steps do no work on the host when the state lives on a GPU (issue 17).

``tests/syncs.py``'s :class:`SyncCounter` sees device values read on the host; it cannot see the
other stall: a step that builds a table on the CPU, or copies a CPU mask or kernel to the state's
device, at every evaluation. On CUDA such a copy (pageable memory) makes the stream wait — found
on an H200 for DDRM and DiffPIR on a downsampling operator (a DCT matrix built on the CPU at each
step: 2 waits per step) and for masks built on the CPU (3 per DDRM step). Here every solve runs
with its state on the ``meta`` device (shapes only; any machine): after a warm-up solve of the
same flow and solver (tables are built and cached on first use), :class:`syncs.HostWork` must
count 0 ops on CPU tensors inside the step loop.
"""

from __future__ import annotations

import pytest
import torch
from syncs import ZeroNoise, loop_work

import flowrestore as fr
from flowrestore.degradations import Blur, Downsample, GaussianBlur, Inpainting
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import FEW_STEP, model_flows
from .test_syncs import INDI_SOLVERS

META, F64 = "meta", torch.float64


def _assert_no_host_work(monkeypatch, solve):
    solve()  # warm-up: per-device tables and copies are made and cached here
    with loop_work(monkeypatch) as seen:
        solve()
    assert seen.count == 0, dict(seen.ops)


def _weights(device):
    return torch.linspace(0.5, 1.5, 16, dtype=F64, device=device)


@pytest.mark.parametrize("name", list(INDI_SOLVERS))
def test_indi_pairings(monkeypatch, name):
    w = _weights(META)
    flow = fr.InDIFlow(lambda x, t: x * (1 - t.reshape(-1, 1)) * 0.9 + w)
    solver, x = INDI_SOLVERS[name](), torch.ones(4, 16, dtype=F64, device=META)
    _assert_no_host_work(
        monkeypatch,
        lambda: fr.solve(flow, solver, x, steps=5, noise=ZeroNoise(), check_finite=False),
    )


@pytest.mark.parametrize("solver", list(FEW_STEP))
@pytest.mark.parametrize("family", ["diffusion-eps", "diffusion-v", "flow-matching", "denoiser"])
def testmodel_flows(monkeypatch, family, solver):
    flow, x = model_flows(META)[family], torch.ones(4, 16, dtype=F64, device=META)
    made = FEW_STEP[solver]()
    _assert_no_host_work(monkeypatch, lambda: fr.solve(flow, made, x, steps=5, check_finite=False))


def test_fitted_weights_fitted_on_the_cpu_step_on_the_device(monkeypatch):
    """``fit_weights`` runs on a CPU warm-up batch; its solver then steps a device state."""
    warm = torch.randn(4, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    fitted = fr.integrate.fit_weights(
        model_flows("cpu")["diffusion-eps"], warm, 5, iterations=2, teacher_steps=16
    )
    flow, x = model_flows(META)["diffusion-eps"], torch.ones(4, 16, dtype=F64, device=META)
    _assert_no_host_work(
        monkeypatch, lambda: fr.solve(flow, fitted, x, steps=5, check_finite=False)
    )


def _operators():
    mask = (torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).to(F64)
    kernel = torch.rand(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    return {
        "inpainting-cpu-mask": Inpainting(mask),  # built on the CPU, applied on the device
        "downsample": Downsample(2),
        "blur": GaussianBlur(1.0, kernel_size=5, padding="circular"),
        "blur-cpu-kernel": Blur(kernel / kernel.sum(), padding="circular"),
    }


@pytest.mark.parametrize("method", ["DPS", "DDRM", "DiffPIR"])
@pytest.mark.parametrize("op_name", list(_operators()))
def test_guided_baselines(monkeypatch, op_name, method):
    op = _operators()[op_name]
    y = op.A(torch.ones(2, 1, 8, 8, dtype=F64, device=META))
    model = fr.DiffusionFlow(lambda x, k: 0.3 * x, alphas_cumprod=linear_alphas_cumprod())
    cls = fr.DiffPIRFlow if method == "DiffPIR" else fr.GuidedFlow
    step = {"DPS": fr.DPSStep, "DDRM": fr.DDRMStep, "DiffPIR": fr.DiffPIRStep}[method]()
    flow, x = cls(model, op, y, noise_std=0.05), torch.ones(2, 1, 8, 8, dtype=F64, device=META)
    _assert_no_host_work(
        monkeypatch,
        lambda: fr.solve(flow, step, x, steps=4, noise=ZeroNoise(), check_finite=False),
    )


def _phi(y, t):
    return 0.8 * y + 0.1 * torch.tanh(3 * y) * (1 + t.reshape(-1, 1, 1, 1))


DIRAC_FAMILIES = {
    "blur": lambda: fr.degradations.GaussianBlurFamily(
        kernel_size=5, width=fr.schedules.Linear(0.3, 2.0)
    ),
    "inpainting": lambda: fr.degradations.InpaintingFamily(size=fr.schedules.Linear(0.0, 4.0)),
    "downsample": lambda: fr.degradations.DownsampleFamily(factor=2),
}


@pytest.mark.parametrize("solver", ["DiracStep", "EulerMaruyama", "SRA1"])
@pytest.mark.parametrize("family", list(DIRAC_FAMILIES))
def test_dirac_sde(monkeypatch, family, solver):
    sde = fr.DiracSDE(
        _phi, DIRAC_FAMILIES[family](), fr.schedules.Geometric(0.01, 0.05), guidance=0.3
    )
    made = {"DiracStep": fr.DiracStep, "EulerMaruyama": fr.EulerMaruyama, "SRA1": fr.SRA1}[solver]
    y = torch.ones(3, 2, 8, 8, dtype=F64, device=META)
    _assert_no_host_work(
        monkeypatch,
        lambda: fr.solve(sde, made(), y, steps=5, noise=ZeroNoise(), check_finite=False),
    )


def test_the_counter_sees_a_cpu_table_copied_in_a_step(monkeypatch):
    """Not vacuous: a predictor that copies a CPU table to the state's device at each call."""
    table = _weights("cpu")
    flow = fr.InDIFlow(lambda x, t: x * table.to(x.device))
    x = torch.ones(4, 16, dtype=F64, device=META)
    with pytest.raises(AssertionError, match="_to_copy"):
        _assert_no_host_work(
            monkeypatch, lambda: fr.solve(flow, fr.Euler(), x, steps=3, check_finite=False)
        )


def test_a_resident_copy_follows_the_operator_tensor():
    """The cached device/dtype copy of a mask is refreshed when the mask changes in place, and a
    mask that requires grad is never cached (its gradient reaches it)."""
    mask = torch.ones(1, 4, 4, dtype=F64)
    op, x = Inpainting(mask), torch.ones(2, 1, 4, 4, dtype=torch.float32)
    assert torch.equal(op.A(x), x)
    mask[..., 0] = 0.0  # in place: a new version of the same tensor
    assert float(op.A(x)[..., 0].abs().max()) == 0.0 and float(op.A(x)[..., 1].min()) == 1.0
    learned = torch.ones(1, 4, 4, dtype=F64, requires_grad=True)
    op = Inpainting(learned)
    with torch.no_grad():  # a first evaluation without grad must not freeze a detached copy
        op.A(x)
    op.A(x).sum().backward()
    op.A(x).sum().backward()
    assert torch.equal(learned.grad, torch.full_like(learned, 4.0))  # 2 samples, 2 calls


def test_a_planned_solve_hashes_by_identity():
    """``torch.compile`` (2.11) hashes the ``PreparedSolve`` it calls; its fields (a dict) are
    not hashable, so a field-wise hash raised inside the tracer."""
    plan = fr.integrate.prepare(fr.InDIFlow(lambda x, t: x), fr.Euler(), torch.ones(2, 3), steps=2)
    assert plan == plan and plan != fr.integrate.prepare(
        fr.InDIFlow(lambda x, t: x), fr.Euler(), torch.ones(2, 3), steps=2
    )
    assert {plan: 1}[plan] == 1


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4"])
def test_the_shipped_unets(monkeypatch, name):
    """The shipped predictors (weights moved to the device, no compute on ``meta``) with the
    default and the multistep solver: the U-Net's time embedding and every layer stay on the
    state's device."""
    flow = fr.InDIFlow(fr.pretrained(name).to(META))
    x = torch.ones(1, 3, 32, 32, device=META)
    for solver in (fr.Euler(), fr.SemiLinearMultistep()):
        _assert_no_host_work(
            monkeypatch, lambda s=solver: fr.solve(flow, s, x, steps=4, check_finite=False)
        )


def test_saved_operators_leave_their_device_copies_behind():
    """An operator pickled after running elsewhere carries neither the copies of its tensors nor
    its spectral tables, and computes the same when loaded."""
    import pickle

    from flowrestore.flows.spectral import BlockAverageForm

    op, x = Inpainting(torch.rand(1, 4, 4, dtype=F64)), torch.rand(2, 1, 4, 4)
    want = op.A(x)  # float32 state: a float32 copy of the mask is cached
    form = BlockAverageForm(Downsample(2))
    spectral = form.to_spectral(x)
    assert "_resident" in vars(op) and "_dct" in vars(form)
    op2, form2 = pickle.loads(pickle.dumps(op)), pickle.loads(pickle.dumps(form))
    assert "_resident" not in vars(op2) and "_dct" not in vars(form2)
    assert torch.equal(op2.A(x), want) and torch.equal(form2.to_spectral(x), spectral)
