"""Break a numerical rule on purpose in a scratch copy and check that a default-suite test fails.

``python tools/mutate.py [NAME ...] [--list] [--full]`` copies the working tree to a temporary
folder once per mutation, applies one textual change (which must match exactly once), runs the
tests named for it (``--full``: the whole default suite) with ``-x``, and reports which test
caught it. A mutation that no test catches is a rule without a test. Exit code 1 if any survives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (file, old text, new text, tests that should catch it)
MUTATIONS: dict[str, tuple[str, str, str, list[str]]] = {
    "indi-sampler-no-step-noise": (
        "flowrestore/solvers/indi.py",
        "            x_next = x_next + scale * ctx.noise.normal(x, ctx.index)",
        "            x_next = x_next + 0 * scale * ctx.noise.normal(x, ctx.index)",
        ["tests/core/test_rules.py"],
    ),
    "indi-sampler-double-initial-noise": (
        "flowrestore/solvers/indi.py",
        "        scale = bcast(t_start * self.eps_at(t_start), x_start)",
        "        scale = bcast(2 * t_start * self.eps_at(t_start), x_start)",
        ["tests/core/test_rules.py"],
    ),
    "dirac-half-guidance": (
        "flowrestore/flows/dirac.py",
        "        if est.guidance is not None:\n            score = score + est.guidance\n"
        "        return score",
        "        if est.guidance is not None:\n            score = score + 0.5 * est.guidance\n"
        "        return score",
        ["tests/core/test_rules.py", "tests/dirac/test_dirac_step.py"],
    ),
    "bosh3-a32": (
        "flowrestore/solvers/tableau.py",
        "a=((0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),",
        "a=((0.5,), (0.0001, 0.7499), (2 / 9, 1 / 3, 4 / 9)),",
        ["tests/core/test_tableaus.py"],
    ),
    "bosh3-bhat": (
        "flowrestore/solvers/tableau.py",
        "b_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),",
        "b_error=(2 / 9 - 7 / 24, 1 / 3 - 0.25002, 4 / 9 - 1 / 3, -1 / 8),",
        ["tests/core/test_tableaus.py"],
    ),
    "pi-k-max": (
        "flowrestore/integrate/loop.py",
        "k = min(solver.order, solver.error_order) + 1",
        "k = max(solver.order, solver.error_order) + 1",
        ["tests/core/test_rules.py"],
    ),
    "pi-reject-exponent": (
        "flowrestore/controllers.py",
        "rej = self.safety * e ** (-1.0 / k)",
        "rej = self.safety * e ** (-0.7 / k)",
        ["tests/core/test_rules.py"],
    ),
    "pi-start-exponent": (
        "flowrestore/controllers.py",
        "(0.01 / dmax) ** (1.0 / k)",
        "(0.01 / dmax) ** (1.0 / (k + 1))",
        ["tests/core/test_rules.py"],
    ),
    "semilinear-phi1": (
        "flowrestore/solvers/semilinear.py",
        "        return -torch.special.xlogy(r, r)",
        "        return -0.9 * torch.special.xlogy(r, r)",
        ["tests/core/test_rules.py", "tests/test_semilinear.py"],
    ),
    "scheduling-index-midpoint": (
        "flowrestore/degradations/scheduling.py",
        "            chosen = sorted([*chosen, split(i, j)])",
        "            chosen = sorted([*chosen, (i + j) // 2])",
        ["tests/degradations/test_scheduling.py"],
    ),
    "scheduling-middle-interval": (
        "flowrestore/degradations/scheduling.py",
        "            i, j = max(pairs, key=lambda p: (d(*p), -p[0]))",
        "            i, j = pairs[len(pairs) // 2]",
        ["tests/degradations/test_scheduling.py"],
    ),
    "sra1-stage-g-start": (
        "flowrestore/solvers/sde.py",
        "stage = x + 0.75 * hb * f1 + 1.5 * g_end * dzh",
        "stage = x + 0.75 * hb * f1 + 1.5 * g_start * dzh",
        ["tests/core/test_rules.py", "tests/dirac"],
    ),
    # ---- further rules of the core, each of which a default-suite test must catch
    "noise-increment-scale": (
        "flowrestore/noise.py",
        "        return self.normal(like, index) * (t1 - t0).abs().sqrt()",
        "        return self.normal(like, index) * (t1 - t0).abs()",
        ["tests/dirac/test_sde_orders.py", "tests/dirac/test_dirac_oracles.py"],
    ),
    "noise-area-variance": (
        "flowrestore/noise.py",
        "        dz = 0.5 * h * (dw + (h / 3).sqrt() * self.normal(like, index))",
        "        dz = 0.5 * h * (dw + (h / 4).sqrt() * self.normal(like, index))",
        ["tests/dirac/test_dirac_step.py"],
    ),
    "naive-sampler-sign": (
        "flowrestore/solvers/indi.py",
        "        return StepResult(f + s * (state - f), state, 1)",
        "        return StepResult(f + s * (f - state), state, 1)",
        ["tests/core/test_identities.py"],
    ),
    "cold-diffusion-sign": (
        "flowrestore/solvers/indi.py",
        "        return StepResult(x - bcast(h, x) * (f - state), state, 1)",
        "        return StepResult(x + bcast(h, x) * (f - state), state, 1)",
        ["tests/core/test_identities.py"],
    ),
    "multistep-corrector-node": (
        "flowrestore/solvers/semilinear.py",
        "            m = min(self.nodes + 1, len(hist_t) + 1)",
        "            m = min(self.nodes, len(hist_t) + 1)",
        ["tests/test_semilinear.py"],
    ),
    "default-grid-rho": (
        "flowrestore/integrate/endpoint.py",
        "        return Power(rho=solver.order / 2)",
        "        return Power(rho=solver.order / 3)",
        ["tests/core/test_orders.py"],
    ),
    "pi-error-norm-scale": (
        "flowrestore/controllers.py",
        "        scale = self.atol + self.rtol * torch.maximum(x.abs(), x_new.abs())",
        "        scale = self.atol + self.rtol * x.abs()",
        ["tests/core/test_rules.py"],
    ),
    "torchsde-diffusion-scale": (
        "flowrestore/solvers/torchsde_adapter.py",
        "            return (cell.h.abs().sqrt() * g).expand(shape).reshape(B, -1)",
        "            return (cell.h.abs() * g).expand(shape).reshape(B, -1)",
        ["tests/dirac/test_torchsde_adapter.py"],
    ),
    "bird-sphere-radius": (
        "flowrestore/inversion/blind.py",
        "        flat.mul_(math.sqrt(flat.shape[1]) / norm)",
        "        flat.mul_(flat.shape[1] ** 0.45 / norm)",
        ["tests/inversion"],
    ),
    "dirac-score-variance": (
        "flowrestore/flows/dirac.py",
        "        return (a_t_phi - y) / bcast(self.sigma2(t), y)",
        "        return (a_t_phi - y) / bcast(self.sigma2(t).sqrt(), y)",
        ["tests/dirac/test_dirac_step.py"],
    ),
    "controlled-keep-clipped-step": (
        "flowrestore/integrate/drivers.py",
        "accept & clip, self.sign * torch.maximum(h_new.abs(), ha.abs()), h_new",
        "accept & clip, self.sign * torch.minimum(h_new.abs(), ha.abs()), h_new",
        ["tests/core/test_adaptive.py"],
    ),
    "endpoint-always-denoise": (
        "flowrestore/integrate/endpoint.py",
        "    if lands_by_denoising(solver):\n",
        "    if True:\n",
        ["tests/core/test_orders.py", "tests/test_semilinear.py"],
    ),
    # ---- issue 11: diffusion models as residual flows (docs/math.md §8)
    "diffusion-eps-to-clean": (
        "flowrestore/flows/diffusion.py",
        "            return x - sigma * out\n",
        "            return x - 0.999 * sigma * out\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "diffusion-v-to-clean": (
        "flowrestore/flows/diffusion.py",
        "            return a * a * x - sigma * a * out\n",
        "            return a * x - sigma * a * out\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "diffusion-eps-velocity": (
        "flowrestore/flows/diffusion.py",
        "            return self.sigma_max * out\n",
        "            return 0.999 * self.sigma_max * out\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "diffusion-timestep-linear-in-sigma": (
        "flowrestore/flows/diffusion.py",
        "        tau = j.to(sigma.dtype) + (mu - lo) / (hi - lo)\n",
        "        tau = j.to(sigma.dtype) + (sigma - (lo / 2).exp())"
        " / ((hi / 2).exp() - (lo / 2).exp())\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "diffusion-state-scale": (
        "flowrestore/flows/diffusion.py",
        "        return x * math.sqrt(1.0 + (float(t) * self.sigma_max) ** 2)\n",
        "        return x * (1.0 + float(t) * self.sigma_max)\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "diffusion-grid-off-by-one": (
        "flowrestore/flows/diffusion.py",
        "        grid = self.sigma_at(tau) / self.sigma_max\n",
        "        grid = self.sigma_at(tau - 1) / self.sigma_max\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "diffusion-karras-rho": (
        "flowrestore/grids.py",
        "        grid = (t0**r + u * (end**r - t0**r)) ** self.rho\n",
        "        grid = (t0**r + u * (end**r - t0**r)) ** (self.rho - 2)\n",
        ["tests/diffusion/test_flow.py"],
    ),
    "oracle-epsilon-denominator": (
        "flowrestore/oracles/diffusion.py",
        "        return b * (x - a * c) / (a * a * var + b * b)\n",
        "        return b * (x - a * c) / (a * var + b * b)\n",
        ["tests/diffusion/test_oracle.py"],
    ),
    "oracle-schedule-interpolation": (
        "flowrestore/oracles/diffusion.py",
        "    lam_t = lam[k] + f * (lam[k + 1] - lam[k])\n",
        "    lam_t = lam[k] + f * f * (lam[k + 1] - lam[k])\n",
        ["tests/diffusion/test_oracle.py"],
    ),
    "oracle-flow-map": (
        "flowrestore/oracles/diffusion.py",
        "        return c + sc * (x - a * c) / torch.sqrt(a * a * sc * sc + b * b)\n",
        "        return c + sc * (x - a * c) / torch.sqrt(a * sc * sc + b * b)\n",
        ["tests/diffusion/test_oracle.py"],
    ),
    "motion-kernel-not-centred": (
        "flowrestore/degradations/motion.py",
        "    path -= ((path[:-1] + path[1:]) / 2 * seg).sum() / max(seg.sum(), _EPS)",
        "    path -= path[0]",
        ["tests/diffusion/test_motion.py"],
    ),
    "per-sample-seed-depends-on-batch": (
        "flowrestore/noise.py",
        "        self.generators = [torch.Generator(device=device).manual_seed(s) for s in values]",
        "        self.generators = [\n"
        "            torch.Generator(device=device).manual_seed(s + len(values)) for s in values\n"
        "        ]",
        ["tests/test_seeds_pretrained.py"],
    ),
    "posterior-mean-rescaled-like-the-state": (
        "flowrestore/integrate/loop.py",
        '    if output != "posterior_mean":  # a clean estimate is already in the data\'s units\n'
        "        x = flow.from_state(x, plan.t1)",
        "    x = flow.from_state(x, plan.t1)",
        ["tests/diffusion/test_flow.py"],
    ),
    # ---- issues 15/17 (dirac helper): Dirac's step, schedules/families, clipping, BIRD
    "dirac-step-noise-scale": (
        "flowrestore/solvers/dirac.py",
        "bcast(dvar.abs().sqrt(), x) * z",
        "bcast(dvar.abs().sqrt(), x) * z * 1.001",
        ["tests/dirac/test_dirac_step.py"],
    ),
    "dirac-look-back-no-reflection": (
        "flowrestore/solvers/dirac.py",
        "        p = torch.where((p < 0) | (p > 1), 2 * t - p, p).clamp(0.0, 1.0)",
        "        p = p.clamp(0.0, 1.0)",
        ["tests/dirac/test_dirac_step.py"],
    ),
    "callable-schedule-variance-fd": (
        "flowrestore/schedules/library.py",
        "        return ((self.value(hi) ** 2 - self.value(lo) ** 2) / dt).to(t.dtype)",
        "        return ((self.value(hi) ** 2 - self.value(lo) ** 2) / (2 * dt)).to(t.dtype)",
        ["tests/degradations/test_schedules.py"],
    ),
    "schedule-probe-allows-zero-sigma": (
        "flowrestore/schedules/base.py",
        "        bad |= ~(v > 0)",
        "        bad |= ~(v >= 0)",
        ["tests/dirac/test_dirac_step.py"],
    ),
    "family-every-time-shared": (
        "flowrestore/degradations/base.py",
        "    return tt.shape[0] == 1 or tt.stride(0) == 0",
        "    return True",
        ["tests/degradations/test_families.py"],
    ),
    "clip-sample-fixed-range": (
        "flowrestore/flows/estimates.py",
        "        return x0.clamp(-self.range, self.range)",
        "        return x0.clamp(-1.0, 1.0)",
        ["tests/diffusion/test_diffusers.py"],
    ),
    "dynamic-threshold-no-rescale": (
        "flowrestore/flows/estimates.py",
        "        return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(x0.dtype)",
        "        return torch.clamp(flat, -s, s).reshape(x0.shape).to(x0.dtype)",
        ["tests/diffusion/test_diffusers.py"],
    ),
    "diffusion-preferred-t-min": (
        "flowrestore/flows/diffusion.py",
        "        return self.t_of_sigma(min(float(self.sigmas[0]), math.sqrt(rtol) / 10))",
        "        return self.t_of_sigma(min(float(self.sigmas[0]), math.sqrt(rtol) / 8))",
        ["tests/diffusion/test_syncs.py"],
    ),
    "bird-final-solve-uncounted": (
        "flowrestore/inversion/blind.py",
        "            nfe=int(torch.stack([ev.nfe.cpu() for ev, _ in rows]).sum()),",
        "            nfe=int(torch.stack([ev.nfe.cpu() for ev, _ in rows[:-1]]).sum()),",
        ["tests/inversion/test_run_records.py"],
    ),
    "schedule-reads-its-time": (
        "flowrestore/schedules/library.py",
        "        return torch.exp((1 - t) * torch.log(s) + t * torch.log(e))",
        "        assert bool((t <= 1).all())\n"
        "        return torch.exp((1 - t) * torch.log(s) + t * torch.log(e))",
        ["tests/dirac/test_syncs.py"],
    ),
    "blur-family-reads-its-width": (
        "flowrestore/degradations/families.py",
        "            w = self.width.value(tt[:1])",
        "            w = self.width.value(tt[:1]) + 0 * float(tt[0])",
        ["tests/dirac/test_syncs.py"],
    ),
    "diffusion-timestep-reads-sigma": (
        "flowrestore/flows/diffusion.py",
        "        mu = 2 * torch.log(sigma)\n",
        "        mu = 2 * torch.log(sigma) + 0 * float(sigma.reshape(-1)[0])\n",
        ["tests/diffusion/test_syncs.py"],
    ),
    "fm-denoise-sign": (
        "flowrestore/flows/flow_matching.py",
        "        return x - bcast(t, x) * self.predict(t, x)",
        "        return x + bcast(t, x) * self.predict(t, x)",
        ["tests/models/test_flow_matching.py"],
    ),
    "fm-timestep-scale": (
        "flowrestore/flows/flow_matching.py",
        "        timestep = batch_time(t, x) * self.num_train_timesteps",
        "        timestep = batch_time(t, x) * (self.num_train_timesteps - 1)",
        ["tests/models/test_flow_matching_diffusers.py"],
    ),
    "fm-shift-map": (
        "flowrestore/grids.py",
        "        grid = s * u / (1 + (s - 1) * u)",
        "        grid = s * u / (1 + (s - 1.001) * u)",
        ["tests/models/test_flow_matching.py"],
    ),
    "fm-default-rho": (
        "flowrestore/flows/flow_matching.py",
        "        return Shifted(shift=self.shift, rho=2.0)",
        "        return Shifted(shift=self.shift, rho=1.0)",
        ["tests/models/test_flow_matching.py"],
    ),
    "fm-dynamic-shift": (
        "flowrestore/flows/flow_matching.py",
        "        return math.exp(mu)",
        "        return math.exp(1.01 * mu)",
        ["tests/models/test_flow_matching_diffusers.py"],
    ),
    "fm-oracle-velocity": (
        "flowrestore/oracles/flow_matching.py",
        "        return (t - (1 - t) * var) * dev / V - c",
        "        return (t - (1 - t) * var * 1.001) * dev / V - c",
        ["tests/models/test_flow_matching.py"],
    ),
    "edm-default-grid": (
        "flowrestore/flows/denoiser.py",
        "        return Karras(rho=7.0, t_min=self.sigma_min / self.sigma_max)",
        "        return Karras(rho=7.0)",
        ["tests/models/test_denoiser.py"],
    ),
    "edm-oracle-denoiser": (
        "flowrestore/oracles/flow_matching.py",
        "        return c + var * (x - c) / (var + s * s)",
        "        return c + var * (x - c) / (var + 1.001 * s * s)",
        ["tests/models/test_denoiser.py"],
    ),
    "svd-block-singular": (
        "flowrestore/flows/spectral.py",
        "        return self._dc(x) / self.operator.factor",
        "        return self._dc(x) / self.operator.factor**2",
        ["tests/guided/test_spectral_and_oracle.py"],
    ),
    "svd-blur-phase": (
        "flowrestore/flows/spectral.py",
        "h.conj() / nonzero(mag)",
        "h / nonzero(mag)",
        ["tests/guided/test_spectral_and_oracle.py"],
    ),
    "posterior-blur-flip": (
        "flowrestore/oracles/posterior.py",
        "                response[(ph - u) % h, (pw - v) % w] += k[u, v]",
        "                response[(u - ph) % h, (v - pw) % w] += k[u, v]",
        ["tests/guided/test_spectral_and_oracle.py"],
    ),
    "posterior-block-gain": (
        "flowrestore/oracles/posterior.py",
        "            gain = vb / (vb + f * f * sy2)",
        "            gain = vb / (vb + f * sy2)",
        ["tests/guided/test_spectral_and_oracle.py"],
    ),
    "diffpir-rho-power": (
        "flowrestore/flows/guided.py",
        "        return self.lam * self.noise_std**2 * (alpha / sigma) ** 2",
        "        return self.lam * self.noise_std**2 * (alpha / sigma)",
        ["tests/guided/test_diffpir.py"],
    ),
    "diffpir-renoise-sqrt": (
        "flowrestore/solvers/guided.py",
        "            eps = math.sqrt(1 - self.zeta) * eps + math.sqrt(self.zeta) * z",
        "            eps = (1 - self.zeta) * eps + math.sqrt(self.zeta) * z",
        ["tests/guided/test_diffpir.py"],
    ),
    "ddrm-weak-direction": (
        "flowrestore/solvers/guided.py",
        "        weak = as_ * d + keep * ss * (yu - sv * d) / (sy or 1.0) + noise",
        "        weak = as_ * d + 0.9 * keep * ss * (yu - sv * d) / (sy or 1.0) + noise",
        ["tests/guided/test_ddrm.py"],
    ),
    "ddrm-strong-eta-b": (
        "flowrestore/solvers/guided.py",
        "(as_ * self.eta_b * sy / nonzero(sv))",
        "(as_ * sy / nonzero(sv))",
        ["tests/guided/test_ddrm.py"],
    ),
    "ddrm-weak-threshold": (
        "flowrestore/solvers/guided.py",
        "        is_weak = (sv > 0) & (sv * ss < sy * as_)",
        "        is_weak = (sv > 0) & (sv * ss < 0.8 * sy * as_)",
        ["tests/guided/test_ddrm.py"],
    ),
    "ddrm-init-eq7": (
        "flowrestore/solvers/guided.py",
        "        std = (sigma**2 - (alpha * sy / nonzero(sv)) ** 2).clamp_min(0).sqrt()",
        "        std = sigma + 0 * sv",
        ["tests/guided/test_ddrm.py"],
    ),
    "dps-input-scale": (
        "flowrestore/solvers/guided.py",
        "        scale = bcast(flow.input_scale(t) * flow.input_scale(s), x)",
        "        scale = bcast(flow.input_scale(t), x)",
        ["tests/guided/test_dps.py"],
    ),
    "dps-ancestral-variance": (
        "flowrestore/solvers/guided.py",
        "    var = (eta * ss) ** 2 * (1 - ratio * ratio)",
        "    var = (eta * ss) ** 2 * (1 - ratio)",
        ["tests/guided/test_dps.py"],
    ),
    "guided-prox-float32": (
        "flowrestore/flows/guided.py",
        "/ nonzero(s * s + rho)",
        "/ (s * s + rho).clamp_min(1e-300)",
        ["tests/models/test_readme_models.py"],
    ),
    # ---- issue 18, second round: the model-flow protocol, conditioning, BIRD on every model flow
    "diffusion-state-sigma": (
        "flowrestore/flows/diffusion.py",
        "        return torch.ones_like(t), t * self.sigma_max",
        "        return torch.ones_like(t), 1.001 * t * self.sigma_max",
        ["tests/models/test_model_protocol.py"],
    ),
    "diffusion-input-scale": (
        "flowrestore/flows/diffusion.py",
        "        return torch.sqrt(1 + (t * self.sigma_max) ** 2)",
        "        return 1 + t * self.sigma_max",
        ["tests/models/test_model_protocol.py"],
    ),
    "model-cond-rows-swapped": (
        "flowrestore/flows/_model.py",
        "        out = model_output(self.model(x, time, **cond_for(self.cond, x)))",
        "        out = model_output(self.model(x, time, **{k: v.flip(0) for k, v in "
        "self.cond.items()}))",
        ["tests/models/test_model_protocol.py"],
    ),
    "bird-latent-unscaled": (
        "flowrestore/inversion/blind.py",
        "        return z if self.latent_std == 1.0 else self.latent_std * z",
        "        return z",
        ["tests/inversion/test_bird_models.py"],
    ),
    "edm-latent-std": (
        "flowrestore/flows/denoiser.py",
        "        return self.sigma_max\n",
        "        return 1.0\n",
        ["tests/inversion/test_bird_models.py"],
    ),
}


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def run(name: str, full: bool) -> bool:
    """Apply mutation ``name`` in a scratch copy; True if a test caught it."""
    path, old, new, tests = MUTATIONS[name]
    with tempfile.TemporaryDirectory(prefix=f"mut-{name}-") as tmp:
        dst = Path(tmp)
        _copy_tree(dst)
        text = (dst / path).read_text()
        if text.count(old) != 1:
            print(f"{name}: the text to mutate occurs {text.count(old)} times in {path}")
            return False
        (dst / path).write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(dst), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        cmd += [] if full else tests
        proc = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True)
        failed = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        caught = proc.returncode != 0
        print(f"{name}: {'caught by ' + failed[0] if caught and failed else 'SURVIVED'}")
        return caught


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="mutations to run (default: all)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--full", action="store_true", help="run the whole default suite")
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(MUTATIONS))
        return 0
    results = [run(n, a.full) for n in (a.names or MUTATIONS)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
