"""CUDA across the library: every flow family and solver computes on the GPU what it computes on
the CPU, and adds no host synchronisation per step.

Skipped without a CUDA device (``pytest.mark.cuda``). ``test_cuda.py`` covers the core loop with
the oracles; this file covers what came after it: every fixed-grid InDI pairing of
``test_syncs.INDI_SOLVERS``, diffusion / flow-matching / EDM-denoiser flows with the semi-linear
and fitted solvers, ``fit_grid`` and ``fit_weights`` run on a CUDA warm-up batch, Dirac's SDE, the
guided baselines (DPS, DDRM, DiffPIR), BIRD's blind inversion, and the shipped U-Net through
``flowrestore restore --device cuda``.

Float64 everywhere except the U-Net, so CPU and CUDA agree to rounding; noise is drawn from CPU
generators or per-sample seeds (both draw on the host and copy the draws to the device), so the
noisy solvers agree too. Per-step synchronisation is counted with
``torch.cuda.set_sync_debug_mode("warn")`` at two step counts: the count must not grow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from syncs import cuda_syncs

import flowrestore as fr
from flowrestore.oracles.diffusion import linear_alphas_cumprod

from .helpers import FEW_STEP, model_flows
from .test_syncs import INDI_SOLVERS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

F64 = torch.float64


def _close(gpu: torch.Tensor, cpu: torch.Tensor, tol: float = 1e-10) -> None:
    assert gpu.device.type == "cuda"
    scale = float(cpu.abs().max()) + 1e-30
    err = float((gpu.cpu() - cpu).abs().max()) / scale
    assert err <= tol, f"CUDA differs from CPU by {err:.3e} (relative to max |x|)"


def _syncs(fn) -> int:
    return cuda_syncs(fn)


def _posterior_mean(device):
    """The Gaussian denoising posterior mean as plain tensor ops on ``device``."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(16, generator=g, dtype=F64)
    sc = 0.5 + torch.rand(16, generator=g, dtype=F64)
    c, sc = c.to(device), sc.to(device)

    def F(x, t):
        tt = t.reshape(-1, 1) ** 2 * 0.64
        return (sc**2 * x + tt * c) / (sc**2 + tt)

    return F


def _y():
    return torch.randn(6, 16, generator=torch.Generator().manual_seed(1), dtype=F64)


@pytest.mark.parametrize("name", list(INDI_SOLVERS))
def test_every_indi_pairing_matches_the_cpu_and_never_syncs_per_step(name):
    y = _y()

    def solve(device, steps=6):
        flow = fr.InDIFlow(_posterior_mean(device))
        return fr.solve(
            flow, INDI_SOLVERS[name](), y.to(device), steps=steps, seeds=range(6),
            check_finite=False,
        )  # fmt: skip

    cpu, gpu = solve("cpu"), solve("cuda")
    _close(gpu.x, cpu.x)
    assert torch.equal(gpu.stats.nfe.cpu(), cpu.stats.nfe.cpu())
    few, many = _syncs(lambda: solve("cuda", 5)), _syncs(lambda: solve("cuda", 10))
    assert many <= few, f"{name}: {few} syncs at 5 steps, {many} at 10"


@pytest.mark.parametrize("solver", list(FEW_STEP))
@pytest.mark.parametrize("family", ["diffusion-eps", "diffusion-v", "flow-matching", "denoiser"])
def test_model_flows_match_the_cpu_and_never_sync_per_step(family, solver):
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(2), dtype=F64)

    def solve(device, steps=6):
        flow = model_flows(device)[family]
        return fr.solve(flow, FEW_STEP[solver](), x.to(device), steps=steps, check_finite=False)

    _close(solve("cuda").x, solve("cpu").x, tol=1e-9)
    few, many = _syncs(lambda: solve("cuda", 5)), _syncs(lambda: solve("cuda", 10))
    assert many <= few, f"{family}/{solver}: {few} syncs at 5 steps, {many} at 10"


def test_fit_grid_and_fit_weights_on_a_cuda_warmup_batch():
    """Fitting runs where the warm-up batch lives; the fitted grid and weights then solve on
    either device, and the CUDA solve equals the CPU one."""
    flow_gpu = model_flows("cuda")["diffusion-eps"]
    flow_cpu = model_flows("cpu")["diffusion-eps"]
    warm = torch.randn(8, 16, generator=torch.Generator().manual_seed(3), dtype=F64)
    grid = fr.integrate.fit_grid(flow_gpu, fr.DataIPNDM(), warm.cuda(), 5)
    fitted = fr.integrate.fit_weights(flow_gpu, warm.cuda(), 5, iterations=4)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(4), dtype=F64)
    for solver, kw in ((fr.DataIPNDM(), {"spacing": grid}), (fitted, {})):
        cpu = fr.solve(flow_cpu, solver, x, steps=5, **kw)
        gpu = fr.solve(flow_gpu, solver, x.cuda(), steps=5, **kw)
        _close(gpu.x, cpu.x, tol=1e-9)
    few = _syncs(lambda: fr.solve(flow_gpu, fitted, x.cuda(), steps=5, check_finite=False))
    again = fr.integrate.fit_weights(flow_gpu, warm.cuda(), 6, iterations=2)
    many = _syncs(lambda: fr.solve(flow_gpu, again, x.cuda(), steps=6, check_finite=False))
    assert many <= few


def _phi(y, t):
    tt = t.reshape(-1, *([1] * (y.dim() - 1)))
    return 0.8 * y + 0.1 * torch.tanh(3 * y) * (1 + tt)


@pytest.mark.parametrize("solver", ["DiracStep", "EulerMaruyama", "SRA1"])
@pytest.mark.parametrize("family", ["blur", "inpainting", "downsample"])
def test_dirac_sde_matches_the_cpu_and_never_syncs_per_step(family, solver):
    fam = {
        "blur": lambda: fr.degradations.GaussianBlurFamily(
            kernel_size=5, width=fr.schedules.Linear(0.3, 2.0)
        ),
        "inpainting": lambda: fr.degradations.InpaintingFamily(size=fr.schedules.Linear(0.0, 4.0)),
        "downsample": lambda: fr.degradations.DownsampleFamily(factor=2),
    }[family]
    y = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=F64)
    sigma = fr.schedules.Geometric(0.01, 0.05)

    def solve(device, steps=6):
        sde = fr.DiracSDE(_phi, fam(), sigma, guidance=0.3)
        make = {"DiracStep": fr.DiracStep, "EulerMaruyama": fr.EulerMaruyama, "SRA1": fr.SRA1}
        return fr.solve(
            sde, make[solver](), y.to(device), steps=steps, seeds=[7, 8, 9], check_finite=False
        )

    _close(solve("cuda").x, solve("cpu").x)
    few, many = _syncs(lambda: solve("cuda", 5)), _syncs(lambda: solve("cuda", 10))
    assert many <= few, f"{family}/{solver}: {few} syncs at 5 steps, {many} at 10"


@pytest.mark.parametrize("method", ["DPS", "DDRM", "DiffPIR"])
@pytest.mark.parametrize("op_name", ["inpainting", "downsample", "blur"])
def test_guided_baselines_match_the_cpu_and_never_sync_per_step(op_name, method):
    from flowrestore.degradations import Downsample, GaussianBlur, Inpainting

    mask = (torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).to(F64)
    x0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6), dtype=F64)
    start = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(7), dtype=F64)

    def solve(device, steps=6):
        op = {
            "inpainting": lambda: Inpainting(mask.to(device)),
            "downsample": lambda: Downsample(2),
            "blur": lambda: GaussianBlur(1.0, kernel_size=5, padding="circular"),
        }[op_name]()
        model = fr.DiffusionFlow(lambda x, k: 0.3 * x, alphas_cumprod=linear_alphas_cumprod())
        y = op.A(x0.to(device))
        cls = fr.DiffPIRFlow if method == "DiffPIR" else fr.GuidedFlow
        step = {"DPS": fr.DPSStep, "DDRM": fr.DDRMStep, "DiffPIR": fr.DiffPIRStep}[method]
        flow = cls(model, op, y, noise_std=0.05)
        return fr.solve(
            flow, step(), start.to(device), steps=steps, seeds=[1, 2], check_finite=False
        )

    _close(solve("cuda").x, solve("cpu").x, tol=1e-9)
    few, many = _syncs(lambda: solve("cuda", 5)), _syncs(lambda: solve("cuda", 10))
    assert many <= few, f"{op_name}/{method}: {few} syncs at 5 steps, {many} at 10"


def test_blind_inversion_on_cuda_matches_the_cpu_and_reads_once_per_iteration():
    from flowrestore.degradations import GaussianBlur
    from flowrestore.inversion import BlindInversion, Param

    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)

    def run(device, iterations=4):
        flow = fr.DiffusionFlow(
            lambda x, k: torch.tanh(x) * 0.3, alphas_cumprod=linear_alphas_cumprod()
        )
        inv = BlindInversion(
            flow, solver=fr.Heun(), steps=3, iterations=iterations,
            degradation=fr.BlindOperator(
                GaussianBlur, kernel_size=5, width=Param(init=1.0, bounds=(0.1, 5.0))
            ),
        )  # fmt: skip
        return inv.run(y.to(device), generator=torch.Generator().manual_seed(1))

    cpu, gpu = run("cpu"), run("cuda")
    _close(gpu.x, cpu.x, tol=1e-8)
    run("cuda", 3)  # warm-up
    assert _syncs(lambda: run("cuda", 6)) - _syncs(lambda: run("cuda", 3)) <= 3


def test_restore_on_cuda_writes_what_the_cpu_writes(tmp_path):
    """``flowrestore restore --device cuda`` on a real photo crop: same file name, size, mode and
    bit depth as on the CPU, and the pixels within float32/TF32 rounding (≥ 45 dB)."""
    from PIL import Image
    from skimage import data

    from flowrestore.cli import main

    photo = tmp_path / "in" / "astronaut.png"
    photo.parent.mkdir()
    Image.fromarray(data.astronaut()[100:164, 180:260]).save(photo)
    outs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        argv = ["restore", str(photo), "-o", str(out), "--device", device, "--no-progress"]
        assert main(argv) == 0
        (written,) = sorted(out.iterdir())
        outs[device] = Image.open(written)
        outs[device].load()
        assert written.name == sorted((tmp_path / "cpu").iterdir())[0].name
    a, b = (np.asarray(outs[d], dtype=np.float64) / 255 for d in ("cpu", "cuda"))
    assert outs["cpu"].mode == outs["cuda"].mode and a.shape == b.shape
    psnr = -10 * np.log10(max(float(((a - b) ** 2).mean()), 1e-12))
    assert psnr >= 45, f"CUDA output is {psnr:.1f} dB from the CPU output"
