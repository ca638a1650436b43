"""Per-sample adaptive step control for embedded Runge–Kutta pairs (used by :func:`solve`).

Each sample has its own time, step size, error history and status. Every iteration steps only the
samples still running (finished ones stop costing evaluations), measures each one's RMS error norm
``‖err / (atol + rtol·max(|x|, |x_new|))‖``, accepts where it is ≤ 1, and sets the next step with
Hairer's PI controller ``h · safety · e^(−icoeff/k) · e_prev^(pcoeff/k)``, ``k`` the estimate's
order + 1. Steps are clipped to land exactly on save times and on the end time. A sample's result
therefore does not depend on the batch it is in.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowrestore.flows.base import Flow, bcast
from flowrestore.integrate.solution import MAX_STEPS, NONFINITE, UNDERFLOW, Stats
from flowrestore.solvers.base import StepContext


def _rms(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).pow(2).mean(1).sqrt()


def initial_step(
    flow: Flow, solver, t0: float, x0: Tensor, f0: Tensor, sign: float, span: float
) -> tuple[Tensor, int]:
    """Hairer's starting step per sample (one extra evaluation). Returns ``(|h| [B], nfe)``."""
    if solver.dt0 is not None:
        return torch.full(
            (x0.shape[0],), min(solver.dt0, span), dtype=x0.dtype, device=x0.device
        ), 0
    k = solver.error_exponent
    scale = solver.atol + solver.rtol * x0.abs()
    d0, d1 = _rms(x0 / scale), _rms(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    # a non-finite sample (failed by the caller) must not hand a NaN time to the predictor
    h0 = torch.where(torch.isfinite(h0), h0, torch.full_like(h0, 1e-6)).clamp(max=span)
    t1 = t0 + sign * h0
    f1 = flow.drift(t1, x0 + bcast(sign * h0, x0) * f0)
    d2 = _rms((f1 - f0) / scale) / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, (h0 * 1e-3).clamp_min(1e-6), (0.01 / dmax) ** (1.0 / k))
    return torch.minimum(100 * h0, h1).clamp(max=span), 1


def run_adaptive(
    flow: Flow,
    solver,
    x: Tensor,
    t0: float,
    targets: list[float],
    ctx: StepContext,
    stats: Stats,
    traj: Tensor | None,
    progress=None,
    callback=None,
) -> tuple[Tensor, Tensor]:
    """Integrate every sample from ``t0`` through ``targets`` (save times, then the end time).

    Fills ``stats`` and ``traj[j]`` (the state at ``targets[j]``, for ``j < len(traj)``).
    Returns ``(x, t)`` per sample; failed samples keep the state where they stopped.
    """
    B, dev, dt = x.shape[0], x.device, x.dtype
    t_end = targets[-1]
    sign = 1.0 if t_end > t0 else -1.0
    tgt = torch.tensor(targets, dtype=dt, device=dev)
    k = solver.error_exponent
    t0_dev = torch.tensor(t0, dtype=dt, device=dev)

    f0 = flow.drift(t0_dev, x)
    stats.nfe += 1
    # step-size control is not differentiated (as diffrax's stop_gradient): with
    # differentiable=True the gradient is that of the accepted discrete steps, and the control's
    # sqrt/pow/where at zero or non-finite errors cannot poison it with NaN
    with torch.no_grad():
        habs, extra = initial_step(flow, solver, t0, x, f0, sign, abs(t_end - t0))
    stats.nfe += extra
    h = sign * habs
    t = torch.full((B,), t0, dtype=dt, device=dev)
    state: dict[str, Tensor] = {"k1": f0}
    nxt = torch.zeros(B, dtype=torch.long, device=dev)
    err_prev = torch.ones(B, dtype=dt, device=dev)
    done = torch.zeros(B, dtype=torch.bool)
    # a non-finite start (state, first drift or starting step) fails at once: stepping it would
    # hand NaN times to the predictor and, with a NaN step size, never underflow
    start_bad = (~torch.isfinite(_rms(x) + _rms(f0) + habs)).cpu()
    if bool(start_bad.any()):
        stats.status[start_bad] = NONFINITE
        done |= start_bad
        h = torch.where(start_bad.to(dev), torch.zeros_like(h), h)
    tiny = 4 * torch.finfo(dt).eps
    last_progress = 0.0

    while not bool(done.all()):
        act_cpu = (~done).nonzero().squeeze(1)
        full = act_cpu.numel() == B
        act = act_cpu.to(dev)
        sel = (lambda v: v) if full else (lambda v, rows=act: v[rows])
        xa, ta, ha, na = sel(x), sel(t), sel(h), sel(nxt)
        target = tgt[na]
        dist = target - ta
        clip = ha.abs() >= dist.abs()
        hs = torch.where(clip, dist, ha)
        ctx.index = None if full else act
        res = solver.step(flow, ta, xa, hs, {kk: sel(v) for kk, v in state.items()}, ctx)
        stats.nfe[act_cpu] += res.nfe

        xd, xn, errd = xa.detach(), res.x.detach(), res.error.detach()
        scale = solver.atol + solver.rtol * torch.maximum(xd.abs(), xn.abs())
        en = _rms(errd / scale)
        finite = torch.isfinite(en)
        accept = finite & (en <= 1)
        en_safe = torch.where(finite, en.clamp_min(1e-10), torch.full_like(en, math.inf))
        fac_acc = (
            solver.safety * en_safe ** (-solver.icoeff / k) * sel(err_prev) ** (solver.pcoeff / k)
        )
        fac_rej = solver.safety * en_safe ** (-1.0 / k)
        fac = torch.where(
            accept,
            fac_acc.clamp(solver.dfactor, solver.ifactor),
            fac_rej.clamp(solver.dfactor, 1.0),
        )
        fac = torch.where(finite, fac, torch.full_like(fac, solver.dfactor))
        h_new = hs * fac
        # a step clipped to a target says nothing about the natural size: keep the larger one
        h_new = torch.where(accept & clip, sign * torch.maximum(h_new.abs(), ha.abs()), h_new)

        acc_b = bcast(accept, xa)
        x_new = torch.where(acc_b, res.x, xa)
        t_new = torch.where(accept, torch.where(clip, target, ta + hs), ta)
        hit = accept & clip
        if res.state:
            for kk, v in res.state.items():
                old = sel(state[kk])
                merged = torch.where(bcast(accept, v), v, old)
                if full:
                    state[kk] = merged
                else:
                    state[kk][act] = merged
        if traj is not None and bool(hit.any()):
            rows = hit.nonzero().squeeze(1)
            slots = na[rows]
            keep = slots < traj.shape[0]
            traj[slots[keep], act[rows[keep]]] = x_new[rows[keep]]
        na_new = na + hit.long()
        finished = hit & (na == len(targets) - 1)
        ep_new = torch.where(accept, en.clamp_min(1e-4), sel(err_prev))

        if full:
            x, t, h, nxt, err_prev = x_new, t_new, h_new, na_new, ep_new
        else:
            x[act], t[act], h[act], nxt[act], err_prev[act] = x_new, t_new, h_new, na_new, ep_new

        acc_cpu, fin_cpu = accept.cpu(), finished.cpu()
        stats.steps[act_cpu] += acc_cpu.long()
        stats.rejected[act_cpu] += (~acc_cpu).long()
        done[act_cpu[fin_cpu]] = True

        # failures of samples still running
        running = ~fin_cpu
        underflow = (
            (h_new.abs() < solver.min_step)
            | (h_new.abs() <= tiny * t_new.abs().clamp_min(1))
            | ~torch.isfinite(h_new)
        )
        underflow = underflow.cpu() & running
        nonfin = underflow & ~finite.cpu()
        stats.status[act_cpu[underflow & ~nonfin]] = UNDERFLOW
        stats.status[act_cpu[nonfin]] = NONFINITE
        out_of_steps = (
            running
            & ~underflow
            & (stats.steps[act_cpu] + stats.rejected[act_cpu] >= solver.max_steps)
        )
        stats.status[act_cpu[out_of_steps]] = MAX_STEPS
        done[act_cpu[underflow | out_of_steps]] = True

        if callback is not None and bool(acc_cpu.any()):
            callback(int(stats.steps.max()), t, x)
        if progress is not None:
            frac = (
                float((t0 - t.max()) / (t0 - t_end))
                if sign < 0
                else float((t.min() - t0) / (t_end - t0))
            )
            frac = min(max(frac, last_progress), 1.0)
            progress.update(frac - last_progress)
            last_progress = frac
    return x, t
