"""Semi-linear multistep solvers for residual flows (docs/math.md §1, "Semi-linear form").

A residual flow ``dx/dt = (x − F(x, t)) / t`` (InDI's ODE, a diffusion model's probability-flow
ODE in ``σ``) is semi-linear; variation of constants gives, exactly,

    x_s = (s/t) x_t + s ∫_s^t G(τ) / τ² dτ,        G(τ) = F(x(τ), τ).

These solvers replace ``G`` by the polynomial through the predictor values of the last few steps
(an exponential-integrator / Adams form, as DPM-Solver++ and UniPC do for the data-prediction
diffusion ODE) and integrate it against the kernel ``s/τ²`` in closed form. The interpolation
variable is ``v = (τ/t)^p``: ``p = 2`` (default) uses that along the exact trajectory
``G(τ) = x(0) − x''(0) τ²/2 + O(τ³)`` (``G'(0) = 0``), ``p = 1`` is the plain polynomial in ``τ``.
With monomials ``v^m`` the weights are, for ``r = s/t``,

    s ∫_s^t (τ/t)^q / τ² dτ = 1 − r          (q = 0)
                            = −r log r       (q = 1)
                            = r (1 − r^{q−1}) / (q − 1)   (q ≥ 2),

all finite at ``s = 0`` where only ``q = 0`` survives: **the step onto ``t = 0`` is the
extrapolation ``x_0 = P(0)`` of the predictor history to ``τ = 0``**, costing no evaluation and
never evaluating at ``t = 0``. Each step costs one predictor evaluation (at its start). With
``corrector=True`` (UniPC's idea) that evaluation is first used to correct the previous step with
one more node, at no extra cost, which raises the order by one.

The first-order member (``order=1, corrector=False``) is exactly :class:`InDISampler` with
``ε = 0`` (and Euler on :class:`InDIFlow`).

**The log variable** (``power=0``): ``P`` a polynomial in ``u = log(τ/t)`` — for a diffusion model
in ``t = σ/σ_max`` that is ``λ(t) − λ(τ)`` with ``λ = −log σ``, the variable DPM-Solver++ and UniPC
interpolate in. Integrating by parts, ``J_m = s ∫_s^t u^m/τ² dτ`` obeys ``J_0 = 1 − r``,
``J_m = (log r)^m + m J_{m−1}``. No polynomial in ``u`` has a limit at ``τ = 0``, so the step onto
``t = 0`` is first order (``x_0`` = the last clean estimate, as those solvers' final step).

**UniPC's two-node steps** (``bh="bh1"`` / ``"bh2"``, with ``power=0``): UniPC (Zhao et al.
2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models",
eqs. 8–9 and its ``B(h)``) integrates the log-variable polynomial exactly when it has three or
more nodes, but on a two-node step (its order-2 predictor, which is DPM-Solver++(2M), and its
order-1 corrector) it replaces the exact ``J_1 = log r + 1 − r`` by ``−h B(h)/2`` with
``h = log r`` (diffusers' ``hh = −h`` of the data-prediction form): ``J_1 = −(log r)²/2`` for
``B(h) = h`` (``bh1``) and ``J_1 = (1 − r) log r / 2`` for ``B(h) = e^h − 1`` (``bh2``,
diffusers' default). Both agree with the exact value to ``O(h²)`` and extrapolate less over
large steps. :class:`UniPC` is that solver.

**The odds** (``power=0`` on a flow declaring ``TimeVariable(odds=True)``: flow matching,
``x_t = (1 − t) x_0 + t ε``): its noise-to-signal ratio is ``σ = t/(1 − t)``, not ``t``, and
``dτ/τ² = dσ/σ²``, so the same integral in ``σ`` gives, with ``ρ = σ_s/σ_t``,

    x_s = (s/t) x_t + (1 − s) Σ_m J_m(ρ) c_m,     nodes at log(σ_j/σ_t),

which is diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True)`` (``α = 1 − t``,
``σ_t = t``). ``σ`` is infinite at the start ``t = 1``; there the weights take their limits:
the first step is DDIM's ``x_s = s x_1 + (1 − s) D``, its corrector weighs the two values
``[½, ½]`` with ``bh2`` (``[1, 0]``: the new one, integrating exactly), and a later step whose
oldest node is at ``σ = ∞`` integrates its other nodes exactly (the polynomial through a node at
``log σ = ∞`` is, in the limit, the one through the others). Diffusers instead starts at
``σ = 1 − 10⁻⁶``, where that far node still weighs ``O(1/|log 10⁻⁶|)``; on its own grid the two
agree to round-off (``tests/diffusion/test_unipc_flow_matching.py``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, IncompatibleSolverError, describe
from flowrestore.flows.base import Flow, ResidualFlow, bcast
from flowrestore.grids import StartRefined
from flowrestore.solvers.adams import (
    check_estimate,
    check_estimate_shape,
    check_start_estimate,
    check_start_time,
    is_integer,
    start_value,
)
from flowrestore.solvers.base import Context, Solver, StepResult, fields_equal

__all__ = ["MultistepState", "SemiLinearMultistep", "UniPC", "odds_weights", "semilinear_weights"]

BH = (None, "bh1", "bh2")


def _phi(r: Tensor, q: int) -> Tensor:
    """``s ∫_s^t (τ/t)^q / τ² dτ`` as a function of ``r = s/t`` (float64)."""
    if q == 0:
        return 1 - r
    if q == 1:
        return -torch.special.xlogy(r, r)
    return r * (1 - r ** (q - 1)) / (q - 1)


def _phi_log(r: Tensor, k: int, bh: str | None = None) -> list[Tensor]:
    """``J_m = s ∫_s^t log(τ/t)^m / τ² dτ`` for ``m < k`` (``r = s/t > 0``, float64):
    ``J_0 = 1 − r``, ``J_m = (log r)^m + m J_{m−1}`` (integration by parts); with ``bh`` and
    two nodes, UniPC's ``J_1`` (module docstring)."""
    out, lr = [1 - r], torch.log(r)
    if k == 2 and bh is not None:
        return [out[0], -lr * lr / 2 if bh == "bh1" else (1 - r) * lr / 2]
    for m in range(1, k):
        out.append(lr**m + m * out[-1])
    return out


def semilinear_weights(
    t: Tensor, s: Tensor, nodes: list[Tensor], power: int, bh: str | None = None
) -> Tensor:
    """Weights ``w_j`` with ``s ∫_s^t P(τ)/τ² dτ = Σ_j w_j G_j`` for the interpolant ``P``.

    ``P`` is the polynomial in ``v = (τ/t)^power`` (``power = 0``: in ``v = log(τ/t)``, then
    ``s > 0``; ``bh``: UniPC's two-node weights, module docstring) through ``(nodes[j], G_j)``.
    ``t``, ``s`` and the nodes are 0-d or ``[B]`` tensors; returns ``[..., k]`` (float64).
    """
    k = len(nodes)
    r = s / t
    # power = 0: the log variable u = log(τ/t) = λ(t) − λ(τ), which needs s > 0
    phis = _phi_log(r, k, bh) if power == 0 else [_phi(r, power * m) for m in range(k)]
    phis = torch.stack(torch.broadcast_tensors(*phis), -1)
    if k == 1:
        return phis
    v = [torch.log(tj / t) if power == 0 else (tj / t) ** power for tj in nodes]
    v = torch.stack(torch.broadcast_tensors(*v), -1)  # [..., k]
    vt = v.unsqueeze(-1) ** torch.arange(k, dtype=v.dtype, device=v.device)  # V[j, m] = v_j^m
    # w = C^T φ with C = V^{-1}  ⇔  V^T w = φ; solve_ex does not synchronise with the host.
    w, _ = torch.linalg.solve_ex(
        vt.transpose(-1, -2),
        phis.unsqueeze(-1).expand(*vt.shape[:-1], 1)
        if phis.dim() < vt.dim() - 1
        else phis.unsqueeze(-1),
        check_errors=False,
    )
    return w.squeeze(-1)


def _odds(taus: list[Tensor]) -> list[Tensor]:
    """``σ = τ/(1 − τ)``, with one finite stand-in above every finite ``σ`` for ``τ ≥ 1``
    (``σ = ∞``), so that no inf or NaN enters a forward or backward pass; :func:`odds_weights`
    overrides every weight a stand-in touches."""
    inf = [tau >= 1 for tau in taus]
    sig = [
        torch.where(i, torch.zeros_like(tau), tau / torch.where(i, torch.ones_like(tau), 1 - tau))
        for tau, i in zip(taus, inf, strict=True)
    ]
    big = 2 * torch.stack(torch.broadcast_tensors(*sig), -1).amax(-1) + 1
    return [torch.where(i, big, v) for v, i in zip(sig, inf, strict=True)]


def odds_weights(t: Tensor, s: Tensor, nodes: list[Tensor], bh: str | None = None) -> Tensor:
    """:func:`semilinear_weights` with ``power=0`` in the odds ``σ = τ/(1 − τ)`` (flow matching's
    noise-to-signal ratio, ``TimeVariable(odds=True)``; module docstring, "The odds").

    ``σ`` is infinite at ``τ = 1``, where the weights take their limits: a node at ``σ = ∞``
    (the start of the solve, the oldest of a later step's nodes) drops out and the other nodes
    are integrated exactly; a step from ``t = 1`` has ``σ_s/σ_t = 0``: one node weighs 1, and
    its two-node corrector weighs ``[1, 0]`` (exact) or ``[½, ½]`` (``bh="bh2"``; ``"bh1"`` is
    infinite there and refused). Returns ``[..., k]`` (float64).
    """
    k = len(nodes)
    sig_t, sig_s, *sig = _odds([t, s, *nodes])
    scale = 1 - s  # s ∫ P/τ² dτ = (s/σ_s) σ_s ∫ P/σ² dσ and s/σ_s = 1 − s
    w = semilinear_weights(sig_t, sig_s, sig, 0, bh)
    if k > 1:
        # the oldest node at σ = ∞ (a later step's history reaching back to t = 1): dropped
        drop = semilinear_weights(sig_t, sig_s, sig[:-1], 0)
        drop = torch.cat([drop, torch.zeros_like(drop[..., :1])], -1)
        w = torch.where((nodes[-1] >= 1).unsqueeze(-1), drop, w)
    # a step from t = 1: σ_s/σ_t = 0, every other node at log-ratio −∞ (module docstring)
    start = torch.zeros_like(w)
    start[..., 0] = 1.0
    if k > 1 and bh == "bh2":
        start[..., :2] = 0.5
    w = torch.where((t >= 1).unsqueeze(-1), start, w)
    return scale.unsqueeze(-1) * w


@dataclass(frozen=True)
class MultistepState:
    """History of a multistep solver: node times and predictor values, newest first, and the
    state the last step started from (for the corrector)."""

    ts: tuple[Tensor, ...] = ()
    gs: tuple[Tensor, ...] = ()
    x_prev: Tensor | None = None


@dataclass(repr=False)
class SemiLinearMultistep(Solver):
    """Multistep exponential integrator for :class:`~flowrestore.InDIFlow` (module docstring).

    Args:
        order: declared order, 1, 2 or 3. ``order=1`` is InDI's step (one node, no corrector:
            exactly :class:`InDISampler` with ``ε = 0``). ``order ≥ 2`` predicts with ``nodes``
            predictor values and corrects with ``nodes + 1`` (UniPC-style, no extra evaluation).
        nodes: predictor values interpolated by the predictor step: 1 for orders 1 and 2; 2 to 5
            for order 3 (default 2). More nodes sharpen the constants but not the asymptotic
            order: the first step has only one node, which caps the order at 3.
        power: interpolation variable ``(τ/t)^power``, 1 or 2, or ``0``: ``log(τ/t)``, the
            log-SNR variable of DPM-Solver++ and UniPC (its landing is first order: ``x_0`` is
            the last clean estimate; on flow matching ``log(σ(τ)/σ(t))`` with the odds
            ``σ = τ/(1 − τ)``, module docstring); default ``None``: the flow's declared one
            (:meth:`~flowrestore.flows.Flow.time_variable`: 2 for InDI, whose ``G'(0) = 0``; 1
            for a diffusion model in ``σ``).
        final_nodes: nodes of the extrapolation onto ``t = 0`` (default ``nodes + 1`` with the
            corrector, else ``nodes``).
        bh: with ``power=0`` only: ``"bh1"`` or ``"bh2"`` takes two-node steps with UniPC's
            ``B(h)`` (module docstring; :class:`UniPC`), ``None`` (default) integrates exactly.
        lower_order_final: predict the last ``nodes − 1`` steps with fewer nodes, at most one
            more than the steps left after it (diffusers' ``lower_order_final``: the last step
            first order, the one before it at most second), and correct each with one node more
            than its predictor. It needs the loop to know the steps left (a fixed grid:
            ``Context.steps_left``); under error control it changes nothing. Default ``False``
            (:class:`UniPC`: ``True``).
        start_estimate: the clean estimate at a pure-noise start, taken by the first step
            instead of an evaluation (:class:`~flowrestore.IPNDM`'s analytic first step,
            flowrestore/solvers/adams.py; :func:`~flowrestore.integrate.estimate_start`).
            ``None`` (default): evaluate.

    One predictor evaluation per step (at its start); the step onto ``t = 0`` costs none, so a
    solve of ``N`` steps ending at 0 costs ``N`` evaluations. With ``steps=N`` it runs on the
    flow's declared grid (:meth:`~flowrestore.flows.Flow.default_spacing`: a diffusion model's),
    else on :meth:`default_spacing`'s; pass ``spacing=`` for another, or ``grid=`` a fitted one
    (:func:`~flowrestore.integrate.fit_grid`).
    """

    order: int = 3
    nodes: int | None = None
    power: int | None = None
    final_nodes: int | None = None
    bh: str | None = None
    lower_order_final: bool = False
    start_estimate: Tensor | float | None = None
    flow_types: ClassVar[tuple[type, ...]] = (ResidualFlow,)
    stage_fractions: ClassVar[tuple[float, ...]] = (0.0,)
    #: the same class and options (a tensor ``start_estimate`` by its values; base.fields_equal)
    __eq__ = fields_equal

    def __post_init__(self):
        if not is_integer(self.order) or self.order not in (1, 2, 3):
            raise ConfigError(f"order must be 1, 2 or 3, got {describe(self.order)}")
        self.order = int(self.order)
        lo, hi = (2, 5) if self.order == 3 else (1, 1)
        if self.nodes is None:
            self.nodes = lo
        if not is_integer(self.nodes) or not lo <= self.nodes <= hi:
            raise ConfigError(
                f"nodes must be an int in {lo}..{hi} for order={self.order}, got "
                f"{describe(self.nodes)} (two predictor nodes plus the corrector "
                "already give order 3)"
            )
        self.nodes = int(self.nodes)  # numpy integers welcome (is_integer), kept as an int
        if self.power is not None and (not is_integer(self.power) or self.power not in (0, 1, 2)):
            raise ConfigError(f"power must be None, 0, 1 or 2, got {describe(self.power)}")
        self.power = None if self.power is None else int(self.power)
        if self.power == 0 and self.final_nodes not in (None, 1):
            raise ConfigError(
                f"final_nodes must be None or 1 with power=0 (log(τ/t) has no polynomial limit "
                f"at τ = 0: the step onto t = 0 is first order), got {describe(self.final_nodes)}"
            )
        if self.bh not in BH or (self.bh is not None and self.power != 0):
            raise ConfigError(
                f"bh must be None, 'bh1' or 'bh2' (UniPC's B(h), with power=0 only), got "
                f"bh={describe(self.bh)} with power={describe(self.power)}"
            )
        if not isinstance(self.lower_order_final, bool):
            raise ConfigError(
                f"lower_order_final must be a bool, got {describe(self.lower_order_final)}"
            )
        if self.final_nodes is not None and not (
            isinstance(self.final_nodes, numbers.Integral)  # numpy integers welcome
            and not isinstance(self.final_nodes, bool)
            and 1 <= self.final_nodes <= 6
        ):
            raise ConfigError(
                f"final_nodes must be None or an int in 1..6, got {describe(self.final_nodes)}"
            )
        self.final_nodes = None if self.final_nodes is None else int(self.final_nodes)
        check_estimate(self.start_estimate)

    @property
    def corrector(self) -> bool:
        """Whether each step is corrected with the value at its end (``order ≥ 2``)."""
        return self.order >= 2

    def _final(self, power: int | None = None) -> int:
        if power == 0:
            return 1
        return self.final_nodes or (self.nodes + int(self.corrector))

    def _combine(self, t, s, x, ts, gs, power, odds=False):
        # bh is validated to come with power=0 only (the flow's declared power is never 0)
        nodes = [tj.double() for tj in ts]
        if power == 0 and odds:
            w = odds_weights(t.double(), s.double(), nodes, self.bh)
        else:
            w = semilinear_weights(t.double(), s.double(), nodes, power, self.bh)
        w = w.to(x.dtype)
        out = bcast(s / t, x) * x
        for j, g in enumerate(gs):
            out = out + bcast(w[..., j], x) * g
        return out

    def check_flow(self, flow: Flow) -> None:
        """A residual flow; ``bh="bh1"`` not on flow matching's odds (``σ = ∞`` at ``t = 1``,
        where its two-node corrector weight ``−log(σ_s/σ_t)/2`` is infinite)."""
        super().check_flow(flow)
        check_start_estimate(self, flow)
        if self.bh == "bh1" and flow.time_variable().odds:
            raise IncompatibleSolverError(
                f"bh='bh1' on {type(flow).__name__}: its noise ratio t/(1 - t) is infinite at "
                "t = 1, where bh1's corrector weight is infinite; use bh='bh2' (UniPC's default)"
            )

    def check_start(self, flow: Flow, t_start: float) -> None:
        """With ``start_estimate``, a solve from the flow's pure-noise start only
        (:func:`~flowrestore.solvers.adams.check_start_time`)."""
        check_start_time(self, flow, t_start)

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """An empty history; a ``start_estimate`` that does not broadcast to the state is
        refused here, before any evaluation."""
        check_estimate_shape(self.start_estimate, x_start)
        return x_start, MultistepState()

    def linear_form(self) -> SemiLinearMultistep:
        """With every step evaluated (no ``start_estimate``: a fitted grid's steps each cost an
        evaluation; :meth:`Solver.linear_form`)."""
        return self if self.start_estimate is None else replace(self, start_estimate=None)

    def default_spacing(self, flow: Flow):
        """``StartRefined(rho=1.7)`` without a closing pair: the few-NFE grid for restoration
        flows that declare none (a flow's own declaration comes first: a diffusion model's).

        Chosen on the validation crops of ``benchmarks/indi_default.py`` (``--split val``, the
        shipped ``indi-deblur`` and ``indi-sr4`` predictors): learned restoration flows change
        fastest near the degraded end ``t = 1``, where this grid's steps are smallest. The former
        ``rho = 2`` with a closing pair (two close nodes above ``t = 0`` for the landing
        extrapolation) zig-zagged in NFE on those predictors (deblur 46.3, 42.3, 50.2, 47.3 dB
        at 3–6 NFE): its error at the last positive time already stalls between 4 and 6 steps
        (46.7, 47.1, 46.7 dB), and the pair's landing helps at 5 steps and hurts from 6 on
        (deblur 47.3 vs 46.5 without it at 6, 48.1 vs 49.6 at 7). ``rho = 1.7`` without the
        pair is the validation split's only setting of ``rho ∈ {1.25 … 2.25}`` × pair that is
        non-decreasing from 3 to 10 NFE on both predictors, ≥ 45 dB at 6 NFE (deblur 51.3,
        sr4 47.4) and ahead of iPNDM on the same grid at 4–10 NFE. The closing pair stays
        available (``spacing=StartRefined(rho=2)``): on closed-form predictors whose
        ``G(τ) = D(x(τ), τ)`` is smooth in ``τ²`` it divides the 6-step Gaussian-oracle error
        by ~7 (issue 10's oracle, validation: 8.7e-4 with it, 6.4e-3 on this default).
        """
        return StartRefined(rho=1.7, closing_pair=False)

    def step(
        self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state: MultistepState, ctx: Context
    ) -> StepResult:
        """Evaluate ``F`` at ``(t, x)``, correct the previous step, predict ``x_{t+h}``."""
        hist_t, hist_g = state.ts, state.gs
        declared = flow.time_variable()
        power = self.power if self.power is not None else declared.power
        odds = declared.odds
        nfe = 1
        if self.start_estimate is not None and ctx.step_index == 0 and not hist_t:
            nfe, g_t = 0, start_value(self.start_estimate, x)  # the analytic first step
        else:
            g_t = flow.denoise(t, x)
        # predictor nodes of this step and of the previous one (lower_order_final: capped by
        # the steps left, a host int the loop knows on a fixed grid)
        left = ctx.steps_left if self.lower_order_final else None
        cap = self.nodes if left is None else min(self.nodes, left + 1)
        cap_prev = self.nodes if left is None else min(self.nodes, left + 2)
        if self.corrector and hist_t:
            # redo the previous step t_prev -> t with the new value as one more node
            m = min(cap_prev + 1, len(hist_t) + 1)
            x = self._combine(
                hist_t[0],
                t,
                state.x_prev,
                [t, *hist_t[: m - 1]],
                [g_t, *hist_g[: m - 1]],
                power,
                odds,
            )
        ts, gs = (t, *hist_t), (g_t, *hist_g)
        s = t + h
        k = min(cap, len(ts))
        k_end = min(self._final(power), len(ts))
        # power = 0 has no weights onto s = 0: the k-node step is taken to t/2 there instead
        # (then discarded below), so that no inf or NaN enters a forward or backward pass
        s_pred = torch.where(s == 0, t / 2, s) if power == 0 and k_end != k else s
        x_next = self._combine(t, s_pred, x, ts[:k], gs[:k], power, odds)
        if k_end != k:
            # the step onto t = 0 uses another number of nodes; chosen on the device (no sync)
            x_end = self._combine(t, s, x, ts[:k_end], gs[:k_end], power, odds)
            x_next = torch.where(bcast(s == 0, x), x_end, x_next)
        keep = min(max(self.nodes + int(self.corrector), self._final(power)) - 1, len(ts))
        new_state = MultistepState(ts[:keep], gs[:keep], x if self.corrector else None)
        return StepResult(x_next, new_state, nfe)

    def __repr__(self) -> str:
        # bh and lower_order_final when set, and when not the class's defaults (UniPC's are
        # "bh2" and True: UniPC(bh=None) and UniPC(lower_order_final=False) printed without
        # them, a repr that rebuilt the defaults)
        default = {f.name: f.default for f in fields(self)}
        bh, lof = self.bh, self.lower_order_final
        bh = f", bh={bh!r}" if bh is not None or bh != default["bh"] else ""
        lof = f", lower_order_final={lof}" if lof or lof != default["lower_order_final"] else ""
        if self.start_estimate is not None:
            lof = f"{lof}, start_estimate={describe(self.start_estimate)}"
        return (
            f"{type(self).__name__}(order={self.order}, nodes={self.nodes}, power={self.power}, "
            f"final_nodes={self.final_nodes}{bh}{lof})"
        )


@dataclass(repr=False, eq=False)
class UniPC(SemiLinearMultistep):
    """UniPC (Zhao et al. 2023) in the one loop: :class:`SemiLinearMultistep` with
    ``power=0`` (interpolation in the log-SNR), ``bh="bh2"`` (its ``B(h) = e^h − 1``) and
    ``lower_order_final=True``.

    The defaults (``nodes=2``: predictor UniP-2, corrector UniC with three nodes, first-order
    last step) are diffusers' ``UniPCMultistepScheduler(solver_order=2)`` with its data
    prediction and ``lower_order_final``, step for step on the same grid, ending at σ = 0 or not;
    ``nodes=3`` is its ``solver_order=3`` (the second-to-last step second order)
    (``tests/diffusion/test_unipc.py`` compares them). One evaluation per step; on a diffusion
    model (ε, v or x₀) it runs on the flow's declared grid like every solver here.

    It interpolates in the flow's log noise-to-signal ratio, so it steps only flows that declare
    it (:class:`~flowrestore.flows.base.TimeVariable` ``log_snr``): ``log t`` on a
    :class:`~flowrestore.DiffusionFlow` and a :class:`~flowrestore.DenoiserFlow`, the log odds
    ``log(t/(1 − t))`` on a :class:`~flowrestore.FlowMatchingFlow` (``odds``: diffusers'
    ``UniPCMultistepScheduler(use_flow_sigmas=True)``, except that the start ``σ = ∞`` takes its
    limit, module docstring), a guided flow on one of them. Interpolating in ``log t`` on flow
    matching trailed Euler (up to 2.2× at 4–10 NFE, ``python -m benchmarks.unseen``), on the
    shipped InDI predictors too (sr4 at 3 NFE, −1.0 dB): any flow without a declared log-SNR is
    refused before any work; ``SemiLinearMultistep(power=0, bh="bh2", lower_order_final=True)``
    takes the same steps on any residual flow (in ``log t`` where the flow declares no log-SNR).
    """

    power: int | None = 0
    bh: str | None = "bh2"
    lower_order_final: bool = True

    def __post_init__(self):
        if self.power != 0 or not is_integer(self.power):
            raise ConfigError(
                "UniPC interpolates in the log-SNR: power must be 0, got "
                f"power={describe(self.power)} (fr.SemiLinearMultistep(power=...) steps the "
                "other variables)"
            )
        super().__post_init__()

    def check_flow(self, flow: Flow) -> None:
        """A residual flow that declares its log-SNR (``time_variable().log_snr``)."""
        super().check_flow(flow)
        if not flow.time_variable().log_snr:
            raise IncompatibleSolverError(
                f"UniPC interpolates in the log-SNR, which {type(flow).__name__} does not "
                "declare (its time_variable() has log_snr=False); use fr.IPNDM() or "
                'fr.SemiLinearMultistep(), or fr.SemiLinearMultistep(power=0, bh="bh2", '
                "lower_order_final=True) for the same steps in log t"
            )
