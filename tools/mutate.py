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
        "        r_hat",
        "        if est.guidance is not None:\n            score = score + 0.5 * est.guidance\n"
        "        r_hat",
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
        "    need = (solver.order + 1) / 2  # last",
        "    need = (solver.order + 1) / 3  # last",
        ["tests/core/test_orders.py", "tests/fewnfe/test_grids.py"],
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
        "    if lands_by_denoising(solver, flow):\n",
        "    if True:\n",
        ["tests/core/test_orders.py", "tests/test_semilinear.py"],
    ),
    # ---- issue 16: few-step defaults, reciprocal stages, iPNDM, fitted grids
    "multistep-second-node": (
        "flowrestore/solvers/semilinear.py",
        "        ts, gs = (t, *hist_t), (g_t, *hist_g)",
        "        ts, gs = (t, *hist_t[::-1]), (g_t, *hist_g[::-1])",
        ["tests/test_semilinear.py"],
    ),
    "multistep-landing-nodes": (
        "flowrestore/solvers/semilinear.py",
        "        return self.final_nodes or (self.nodes + int(self.corrector))",
        "        return self.final_nodes or self.nodes",
        ["tests/test_semilinear.py"],
    ),
    "noise-levels-geometric-interpolation": (
        "flowrestore/grids.py",
        "        inner = np.exp(np.interp(u, tab_u, np.log(lv)))",
        "        inner = np.interp(u, tab_u, lv)",
        ["tests/fewnfe/test_grids.py"],
    ),
    "end-refined-exponent": (
        "flowrestore/grids.py",
        "        want = np.linspace(1.0, 0.0, steps + 1) ** self.rho",
        "        want = np.linspace(1.0, 0.0, steps + 1) ** (self.rho * 1.01)",
        ["tests/fewnfe/test_grids.py"],
    ),
    "reciprocal-stage-time": (
        "flowrestore/solvers/reciprocal.py",
        "        t_i = t * s / (s + c * (t - s))",
        "        t_i = t + c * (s - t)",
        ["tests/fewnfe/test_reciprocal.py"],
    ),
    "reciprocal-landing-line": (
        "flowrestore/solvers/reciprocal.py",
        "    return StepResult((d * v_prev - state.d_start * v) / (v_prev - v), None, 1)",
        "    return StepResult(d, None, 1)",
        ["tests/fewnfe/test_reciprocal.py"],
    ),
    "ipndm-coefficient": (
        "flowrestore/solvers/adams.py",
        "    (23 / 12, -16 / 12, 5 / 12),",
        "    (23 / 12, -16 / 12, 5.001 / 12),",
        ["tests/fewnfe/test_adams.py"],
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
        "flowrestore/flows/diffusion.py",
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
