"""The search behind :func:`flowrestore.integrate.fit_grid` (docs/math.md §11): teacher-forced
symbolic solves, dynamic programming over a teacher's time points, local search.

**Symbolic solves.** A solver whose steps only combine the state linearly with clean estimates
evaluated at the grid's points (Euler, Heun, the semi-linear multistep solvers, with their warm
starts, correctors and landing extrapolations) is run on a stand-in flow whose "state" is a row of
coefficients over the basis ``(D_0, …, D_{M−1}, X_0, …, X_M)`` — the teacher's clean estimates
and states — and whose ``denoise`` at the teacher time ``t_m`` returns the unit row of ``D_m``
(teacher forcing: the estimate of the teacher's state, whatever the solver's state is). Its answer
is the coefficient row ``c`` of the solve's result, and with the Gram matrix ``G`` of the basis
tensors the error against the teacher's ``X_j`` is ``√((c − e_j)ᵀ G (c − e_j))`` — no network
evaluation. A solver that evaluates anywhere else (Midpoint's ``t + h/2``) is detected and left to
the numeric costs. A per-sample choice made from the values themselves
(:class:`~flowrestore.IPNDM`'s guarded landing) has no such model: the costs run the solver's
:meth:`~flowrestore.solvers.Solver.linear_form` (and :func:`~flowrestore.integrate.fit_grid` fits
that form throughout).

**Dynamic programming** (GITS, Chen et al. 2024): with segment costs ``c(i, j)``, the
``N``-segment path from teacher point ``0`` to ``M`` minimising ``Σ c`` — O(M² N).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowrestore.flows.base import Flow, ResidualFlow, batch_time
from flowrestore.integrate.endpoint import land
from flowrestore.integrate.solve import solve
from flowrestore.integrate.state import select_rows
from flowrestore.noise import GeneratorNoise
from flowrestore.solvers.base import Context

__all__ = ["SymbolicCost", "dp_path", "local_search", "symbolic_cost"]

F64 = torch.float64


class _OffGrid(Exception):
    """The solver evaluated the stand-in flow away from the teacher's times."""


class _Forced(ResidualFlow):
    """The stand-in flow: at the teacher's ``t_m`` its clean estimate of the coefficient row ``x``
    is ``D_m + α_m (x − X_m)`` — the teacher's estimate, linearised with the scalar gain ``α_m``."""

    def __init__(self, times: Tensor, gains: Tensor, time_variable):
        self.times = times
        self.gains = gains
        self._tv = time_variable

    def time_variable(self):
        return self._tv

    def denoise(self, t: Tensor, x: Tensor) -> Tensor:
        tb = batch_time(t, x).to(F64)
        err, m = (self.times[None, :] - tb[:, None]).abs().min(dim=1)
        off = (err > 1e-9 * tb.clamp_min(1e-12)) | (m >= self.times.numel() - 1)
        if bool(off.any()):
            raise _OffGrid
        rows = torch.arange(x.shape[0])
        out = self.gains[m][:, None] * x
        out[rows, m] += 1.0
        out[rows, self.times.numel() - 1 + m] -= self.gains[m]
        return out


class SymbolicCost:
    """Teacher-forced errors of a solver on a teacher's grid (module docstring)."""

    def __init__(self, flow: Flow, solver, grid_t: Tensor, gram: Tensor, gains: Tensor):
        self.m = grid_t.numel() - 1
        self.grid_t = grid_t
        self.solver = solver.linear_form()
        self.gram = gram
        self.fake = _Forced(grid_t, gains, flow.time_variable())

    def _rel(self, c: Tensor, target: list[int]) -> Tensor:
        e = torch.zeros_like(c)
        e[torch.arange(c.shape[0]), torch.tensor([self.m + j for j in target])] = 1.0
        diff = c - e
        num = ((diff @ self.gram) * diff).sum(1).clamp_min(0)
        den = ((e @ self.gram) * e).sum(1).clamp_min(1e-300)
        return (num / den).sqrt()

    def path(self, idx) -> float | None:
        """Relative error of the solve along ``grid_t[idx]`` from ``X_0`` (``None``: off-grid)."""
        if idx is None:
            return None
        try:
            c = solve(
                self.fake, self.solver, self._units(torch.tensor([0])), grid=self.grid_t[list(idx)]
            ).x
        except _OffGrid:
            return None
        return float(self._rel(c, [idx[-1]])[0])

    def first_steps(self) -> Tensor:
        """``c[j]``: relative error of the solver's first step (warm start) from ``X_0`` to
        ``t_j``, teacher-forced."""
        j = torch.arange(1, self.m + 1)
        k = torch.zeros_like(j)
        c = self._steps(k, None, j)
        out = torch.full((self.m + 1,), math.inf, dtype=F64)
        out[j] = self._rel(c, j.tolist())
        return out

    def triples(self) -> Tensor:
        """``c[k, i, j]``: relative error at ``t_j`` of the solver started at ``X_k`` that steps to
        ``t_i`` and on to ``t_j``, the state at ``t_i`` taken from the teacher (``X_i``) where the
        solver uses its state as is — a multistep solver's history ``D_k`` and corrector are
        included, every single-step solver's cost is that of its step from ``X_i``."""
        m = self.m
        kk, ii, jj = torch.meshgrid(
            torch.arange(m + 1), torch.arange(m + 1), torch.arange(m + 1), indexing="ij"
        )
        ok = (kk < ii) & (ii < jj)
        k, i, j = kk[ok], ii[ok], jj[ok]
        cost = torch.full((m + 1, m + 1, m + 1), math.inf, dtype=F64)
        for lo in range(0, k.numel(), 8192):
            sl = slice(lo, lo + 8192)
            c = self._steps(k[sl], i[sl], j[sl])
            cost[k[sl], i[sl], j[sl]] = self._rel(c, j[sl].tolist())
        return cost

    def _steps(self, k: Tensor, i: Tensor | None, j: Tensor) -> Tensor:
        """Symbolic steps ``t_k → t_i → t_j`` (``i=None``: one step ``t_k → t_j``) from ``X_k``;
        a step from ``X_k`` with ``k > 0`` is not the solve's first (``Context.step_index``: a
        solver may treat its first step apart, e.g. :class:`~flowrestore.IPNDM`'s corrected
        start)."""
        out = torch.empty(k.numel(), self.gram.shape[0], dtype=F64)
        for first in (True, False):
            sel = k == 0 if first else k > 0
            if bool(sel.any()):
                part = None if i is None else i[sel]
                out[sel] = self._steps_from(k[sel], part, j[sel], 0 if first else 1)
        return out

    def _steps_from(self, k: Tensor, i: Tensor | None, j: Tensor, step_index: int) -> Tensor:
        g = self.grid_t
        ctx = Context(noise=GeneratorNoise(None), step_index=step_index)
        x, state = self.solver.init(self.fake, g[k], self._units(k), ctx)
        t = g[k]
        if i is not None:
            state = self.solver.step(self.fake, t, x, g[i] - t, state, ctx).state
            x, t = self._units(i), g[i]
        out = torch.empty_like(x)
        landing = g[j] == 0
        for sel in (landing, ~landing):
            if not bool(sel.any()):
                continue
            part = select_rows(state, sel)
            if sel is landing:
                out[sel] = land(self.fake, self.solver, t[sel], x[sel], part, ctx).x
            else:
                out[sel] = self.solver.step(self.fake, t[sel], x[sel], (g[j] - t)[sel], part, ctx).x
        return out

    def _units(self, idx: Tensor) -> Tensor:
        x = torch.zeros(idx.numel(), self.gram.shape[0], dtype=F64)
        x[torch.arange(idx.numel()), self.m + idx] = 1.0
        return x


def symbolic_cost(
    flow: Flow, solver, grid_t: Tensor, states: list[Tensor], seen=(), *, linearise: bool = True
) -> SymbolicCost:
    """Evaluate the teacher's clean estimates ``D_m``, their gains ``α_m`` (the mean eigenvalue of
    ``∂D/∂x``, probed along one random direction per point; ``linearise=False``: ``α_m = 0``,
    plain teacher forcing, no probe) and the Gram matrix of ``(D_m, X_m)``: ``2M`` evaluations of
    the flow's estimate on the warm-up batch, ``M`` fewer without the probes, ``M`` fewer when
    ``seen`` holds the teacher's own evaluations ``(t, ‖x‖, D(x, t))`` at its states (reused where
    the time is ``t_m`` in the state's precision and the input's norm is ``‖X_m‖`` to 1e-6
    relative)."""
    m = grid_t.numel() - 1
    g = torch.Generator().manual_seed(0)
    ds, gains = [], torch.zeros(m, dtype=F64)
    with torch.no_grad():
        for k in range(m):
            t = torch.tensor(float(grid_t[k]), dtype=states[k].dtype, device=states[k].device)
            ds.append(_recorded(seen, float(grid_t[k]), states[k]))
            if ds[-1] is None:
                ds[-1] = flow.denoise(t, states[k])
            if not linearise:
                continue
            xi = torch.randn(states[k].shape, generator=g).to(states[k])
            eps = 1e-2 * float(states[k].pow(2).mean().sqrt().clamp_min(1e-12))
            probe = flow.denoise(t, states[k] + eps * xi) - ds[-1]
            gains[k] = float((probe * xi).sum().double() / (eps * xi.double().pow(2).sum()))
    basis = [*ds, *states]
    gram = torch.zeros(len(basis), len(basis), dtype=F64)
    flat = torch.stack([b.reshape(-1) for b in basis])
    for lo in range(0, flat.shape[1], 1 << 18):
        part = flat[:, lo : lo + (1 << 18)].to(F64).cpu()
        gram += part @ part.T
    return SymbolicCost(flow, solver, grid_t, gram, gains.clamp(0.0, 2.0))


def _recorded(seen, t: float, x: Tensor) -> Tensor | None:
    """The recorded estimate ``D(x, t)`` among ``seen`` (``(t, ‖x‖, D)``; ``None`` if the teacher
    took none at ``t`` from an input of ``x``'s norm)."""
    norm = float(x.double().norm())
    for ts, zn, d in seen:
        tv = batch_time(ts, d)
        tol = 4 * torch.finfo(tv.dtype).eps * max(abs(t), 1e-30)  # the time in the state's dtype
        if d.shape != x.shape or not bool((tv.double() - t).abs().le(tol).all()):
            continue
        if abs(float(zn) - norm) <= 1e-6 * norm:
            return d
    return None


def dp_path(first: Tensor, triples: Tensor, steps: int) -> list[int] | None:
    """The path ``0 = i_0 < … < i_N = M`` minimising ``first[i_1] + Σ triples[i_{n−1}, i_n,
    i_{n+1}]`` (dynamic programming over the last two points, O(M³ N)); a NaN cost is no
    step (as ``inf``: ``min`` would carry it onto every path through its points)."""
    first = torch.where(first.isnan(), math.inf, first)
    triples = torch.where(triples.isnan(), math.inf, triples)
    m = first.numel() - 1
    if steps == 1:
        return [0, m] if math.isfinite(float(first[m])) else None
    inf = torch.full((m + 1, m + 1), math.inf, dtype=F64)
    best = inf.clone()
    best[0] = first  # best[k, i]: the two last points k < i after n steps
    args = []
    for _ in range(1, steps):
        total = best[:, :, None] + triples  # [k, i, j]
        nxt, arg = total.min(dim=0)  # over k -> [i, j]
        best = nxt
        args.append(arg)
    i_last = int(best[:, m].argmin())
    if not math.isfinite(float(best[i_last, m])):
        return None
    path = [m, i_last]
    for arg in reversed(args):
        path.append(int(arg[path[-1], path[-2]]))
    return path[::-1]


def local_search(
    cost, path: list[int] | None, rounds: int, seen: dict | None = None
) -> list[int] | None:
    """Move single interior points by ±1, ±2 teacher points while ``cost(path)`` drops; every
    path costed is recorded in ``seen`` (path tuple → cost)."""
    seen = {} if seen is None else seen

    def c(p):
        key = tuple(p)
        if key not in seen:
            seen[key] = cost(p)
        return seen[key]

    if path is None or c(path) is None:
        return path
    best, best_cost = list(path), c(path)
    for _ in range(rounds):
        improved = False
        for k in range(1, len(best) - 1):
            for d in (-2, -1, 1, 2):
                cand = list(best)
                cand[k] += d
                if not cand[k - 1] < cand[k] < cand[k + 1]:
                    continue
                value = c(cand)
                if value is not None and value < best_cost:
                    best, best_cost, improved = cand, value, True
        if not improved:
            break
    return best
