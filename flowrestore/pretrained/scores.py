"""Score a predictor on held-out images: degrade as trained, restore with named solvers, measure.

The registry's held-out numbers (``python -m flowrestore.pretrained.train_all``) and the photo demo
(``flowrestore demo``) both come from :func:`evaluate`. :data:`SOLVERS` is the one table of the
solver names the command line, the demo and the registry use, read from the method records.
"""

from __future__ import annotations

import copy
import itertools
import numbers
import time

import torch

from flowrestore.errors import ConfigError, describe
from flowrestore.methods import make_solver, solver_table

__all__ = ["SOLVERS", "evaluate", "make_solver"]

#: solver name -> (methods it applies to, description): the one table of solver names the command
#: line, the demo and the registry use, read from the method records (:mod:`flowrestore.methods`).
SOLVERS: dict[str, tuple[tuple[str, ...], str]] = solver_table()


def _check_run(run, method) -> tuple:
    """``run`` as ``(solver, steps, output, t_end)``, refused with a :class:`ConfigError` that
    names it unless its solver is the method's (or ``"phi"``), ``steps`` a positive int, ``output``
    ``"last"`` or ``"posterior_mean"`` and ``t_end`` ``None`` or a number in ``[0, 1)``."""
    ok = isinstance(run, (tuple, list)) and len(run) in (3, 4)
    if ok:
        solver_name, steps, output = run[:3]
        t_end = run[3] if len(run) > 3 else None
        ok = (
            (solver_name == "phi" or solver_name in method.solver_names())
            and isinstance(steps, int)
            and not isinstance(steps, bool)
            and steps >= 1
            and output in ("last", "posterior_mean")
            and (
                t_end is None
                or (
                    isinstance(t_end, numbers.Real)
                    and not isinstance(t_end, bool)
                    and 0 <= t_end < 1
                )
            )
        )
    if not ok:
        raise ConfigError(
            f"runs: each run must be (solver, steps, output[, t_end]) with solver 'phi' or one "
            f"of {sorted(method.solver_names())}, steps a positive int, output 'last' or "
            f"'posterior_mean' and t_end None or in [0, 1); got {describe(run)}"
        )
    return solver_name, steps, output, t_end


def _on_device(model, device: torch.device):
    """``model`` on ``device``, leaving the caller's module where it was: the module itself when
    all its parameters and buffers are there already, else a copy whose tensors are moved there
    (each copied once, straight to ``device``). A model that is not a module is used as it is."""
    if not isinstance(model, torch.nn.Module):
        return model
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # where .to("cuda") goes
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    if all(t.device == device for t in tensors):
        return model
    memo = {}
    for t in tensors:
        moved = t.detach().to(device, copy=True)
        if isinstance(t, torch.nn.Parameter):
            moved = torch.nn.Parameter(moved, requires_grad=t.requires_grad)
        memo[id(t)] = moved
    return copy.deepcopy(model, memo).to(device)  # .to: tensors held outside parameters/buffers


def _check_clean(clean) -> None:
    """``clean`` must be a floating-point batch of images ``[N, C, H, W]`` with ``N >= 1``."""
    if not (
        isinstance(clean, torch.Tensor)
        and clean.is_floating_point()
        and clean.dim() == 4
        and clean.shape[0] >= 1
    ):
        raise ConfigError(
            "evaluate: clean must be a floating-point tensor of images [N, C, H, W] with N >= 1 "
            f"(values in [0, 1]), got {describe(clean)}"
        )


def evaluate(
    model, clean: torch.Tensor, runs, *, seed: int = 0, device="cpu", keep_images: bool = False
) -> list[dict]:
    """Degrade ``clean`` ([N, C, H, W]) as the model was trained, restore with each run, score.

    ``runs``: ``(solver_name, steps, output[, t_end])`` (names of :data:`SOLVERS`; ``output``
    ``"last"`` or ``"posterior_mean"``; ``t_end`` stops early, default 0). ``seed``: a
    non-negative int (the degradation's noise uses it, the solvers' noise ``seed + 1``).
    ``solver="phi"`` is the one-shot clean estimate ``F(y, 1)`` / ``Φ(y, 1)`` (1 NFE). The first
    row is the degraded input (``solver="input"``, NFE 0). Rows: mean PSNR/SSIM over the images,
    per-image PSNR, NFE, seconds per image, high-frequency energy relative to the clean image's
    (``hf_ratio``). The runs use the model on ``device``: the caller's module itself when it is
    there already, else a copy moved there (the caller's module is never moved).
    """
    from flowrestore.integrate import solve
    from flowrestore.metrics import high_frequency_energy, psnr, ssim
    from flowrestore.pretrained import degrade_for, flow_for, model_spec
    from flowrestore.runtime import resolve_device

    method = model_spec(model).method
    _check_clean(clean)
    runs = [_check_run(run, method) for run in runs]  # every run, before any work
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63 - 1:
        raise ConfigError(f"evaluate: seed must be an int in [0, 2**63 - 1), got {describe(seed)}")
    device = resolve_device(device, hint="use device='cpu'")
    model = _on_device(model, device)  # not model.to(device): that moved the caller's module
    x = clean.to(device)
    gen = torch.Generator().manual_seed(seed)
    y = degrade_for(model, x.cpu(), generator=gen).to(device)
    hf_clean = high_frequency_energy(x)

    def score(out, **kw):
        out = out.clamp(0.0, 1.0)
        p = psnr(out, x)
        row = {
            **kw,
            "psnr": float(p.mean()),
            "psnr_per_image": [round(float(v), 3) for v in p],
            "ssim": float(ssim(out, x).mean()),
            "hf_ratio": float((high_frequency_energy(out) / hf_clean).mean()),
        }
        if keep_images:
            row["images"] = out.cpu()
        return row

    rows = [score(y, solver="input", steps=0, output="-", t_end=None, nfe=0, seconds_per_image=0.0)]
    flow = flow_for(model)
    for solver_name, steps, output, t_end in runs:
        g = torch.Generator(device=device).manual_seed(seed + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if solver_name == "phi":
            with torch.no_grad():
                out, nfe = flow.denoise(torch.ones(y.shape[0], device=device), y), 1
        else:
            solver = method.solver(solver_name)
            sol = solve(flow, solver, y, steps=steps, output=output, generator=g, t_end=t_end)
            out, nfe = sol.x, int(sol.stats.nfe.max())  # includes the posterior-mean evaluation
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = (time.perf_counter() - t0) / x.shape[0]
        rows.append(
            score(
                out,
                solver=solver_name,
                steps=steps,
                output=output,
                t_end=t_end,
                nfe=nfe,
                seconds_per_image=sec,
            )
        )
    return rows
