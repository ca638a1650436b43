"""Fixed-coefficient Adams–Bashforth multistep solvers: iPNDM and its data-prediction form.

iPNDM (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator", the
"improved PNDM" of their §5) is DDIM's update with the noise prediction replaced by the
Adams–Bashforth combination of the last ones, written for equal steps and used on any grid, with
the lower orders as warm start (PNDM warmed up with Runge–Kutta steps instead). On a residual flow
``dx/dt = v = (x − D)/t`` — a diffusion model's ``v = σ_max ε̂`` in ``t = σ/σ_max`` — its two
forms are:

* ``form="velocity"`` (iPNDM): ``x_{k+1} = x_k + h_k Σ_j c_j v_{k−j}``;
* ``form="data"``: ``x_{k+1} = r x_k + (1 − r) Σ_j c_j D_{k−j}``, ``r = t_{k+1}/t_k`` —
  the exponential (DDIM) step with the combination of the clean estimates; onto ``t = 0``
  (``r = 0``) it is the extrapolation ``Σ c_j D_{k−j}``;

with ``c = (1)``, ``(3, −1)/2``, ``(23, −16, 5)/12``, ``(55, −59, 37, −9)/24`` for orders 1–4.
Measured on exact diffusion models and a diffusers-trained DDPM (``benchmarks/fewnfe.py``), these
fixed coefficients beat the variable-step interpolations of the same history at 3–10
evaluations: they extrapolate in the step index, the variable in which a flow's declared grid
spaces its steps evenly. The price is the order: with the first-order warm start (and, on a
non-uniform grid, the fixed coefficients) the global order is 2 for every ``order ≥ 2``.

One evaluation per step, at its start; the step onto ``t = 0`` is the solver's own (no evaluation
there). ``ab_order=1`` is Euler (velocity form) or the exponential Euler = DDIM = InDI step (data).
:class:`IPNDM` defaults to the velocity form of order 3, :class:`DataIPNDM` to the data form of
order 2.

**The landing step.** The step onto ``t = 0`` may combine more of the history than the others
(``landing_order``; default: ``ab_order``): it is the last use of the history, so a higher-order
extrapolation there costs nothing later. Measured on the few-NFE benchmark's validation split
(``benchmarks/fewnfe.py``; worst relative error at 4 / 6 / 10 NFE, ``IPNDM()``): on the exact
linear/ε diffusion models order 4 helps (0.0342 / 0.0176 / 0.0112 → 0.0334 / 0.0117 / 0.0099), on
the cosine/v models the two are within 5 %, but on the diffusers-trained DDPM it hurts at every
NFE from 4 to 10 (0.230 / 0.091 / 0.025 → 0.274 / 0.133 / 0.034): a higher-order extrapolation
amplifies a learned model's errors. The Gaussian priors are the exception, not the rule: on exact
*multimodal* priors (Gaussian mixtures, :class:`~flowrestore.oracles.GaussianMixtureOracle`,
where the posterior switches between components during the solve; ``python -m
benchmarks.multimodal``, test split) order 4 is 1.59 / 1.69 / 1.03× less accurate at 4 / 6 / 10
NFE (geometric mean over 12 problems; median sample), and on a second trained DDPM (ε-model, the
same trainer, 3000 steps; worst sample) 1.70× at 4 NFE. The default stays ``ab_order``;
``landing_order=4`` is the option for smooth unimodal (e.g. Gaussian) models.

**The corrected start** (``start_corrector``). The warm start's first step is Euler's, whose
local error ``O(h²)`` the later, higher-order steps carry to the end: on InDI's Gaussian oracle
(issue 10; uniform grid, 6 steps) the solve's error is set by that one step (3.4e-3 after it,
3.8e-3 at ``t = 0``). The second step's evaluation at the end of the first corrects it, before
it is used, by the trapezoid rule (Adams–Moulton order 2; UniPC's reuse of the new evaluation,
Zhao et al. 2023), at no extra evaluation: ``x_1 ← x_0 + h_0 (v_1 + v_0)/2`` (velocity form),
``x_1 ← r_0 x_0 + (1 − r_0)(D_1 + D_0)/2`` (data form). ``v_1``, taken at the uncorrected
``x_1``, stays in the history (its error ``O(h_0²)`` enters the next step times ``h_1``). The
first step is then second order, and with ``ab_order ≥ 3`` the global order on a uniform grid 3
(the second step's Adams–Bashforth 2 is the lowest; the declared order stays 2).

Where it helps depends on the flow, so ``start_corrector=None`` (default) reads the flow's
declared time (:class:`~flowrestore.flows.base.TimeVariable`): on in the velocity form with
``ab_order ≥ 2`` when ``t`` is not a noise level (neither ``reciprocal`` nor ``log_snr``: InDI's
residual flow, a plain ODE), off otherwise. Chosen on validation inputs (``python -m
benchmarks.start_corrector --split val``; worst instance, ``steps=N`` on each flow's default
grid): InDI's Gaussian oracle 3.6× to 29× more accurate at 3–10 evaluations (6: 3.8e-3 →
3.7e-4); the shipped ``indi-deblur`` and ``indi-sr4`` on their declared grids +0.72 / +0.30 dB at
3 evaluations and within ±0.1 dB from 5 on (deblur at 5: −0.09 dB); issue 10's hard mixture
within one sample of 4096. On a diffusion model in ``t = σ/σ_max`` the trapezoid averages
velocities a factor ``σ_max`` apart: exact linear/ε models at 4 evaluations 0.034 → 0.77, cosine/v
0.034 → 106, an EDM denoiser 0.021 → 0.60; the data form's trapezoid loses there too (``DataIPNDM``
at 5 evaluations 0.037 → 0.073) and on InDI's oracle at 5–6; on flow matching (``log_snr``) the
velocity form gains at shift 1 and loses up to 2.4× at shift 3 (priors with stds in [0.05, 1]).

**The guarded landing** (``landing_guard``). Written with backward differences, the
Adams–Bashforth combination is a series ``v + ½∇v + (5/12)∇²v + (3/8)∇³v``; where a model's
values do not vary smoothly along the solve (a learned model, a posterior that commits to one of
several modes) its terms grow instead of shrinking, and the landing — the longest extrapolation,
straight onto ``t = 0`` — overshoots. With the guard, the landing truncates the series per sample
at its smallest term, as one sums a divergent asymptotic series: term ``k ≥ 2`` is kept while each
kept term's norm is at most the previous one's (``‖γ_k ∇^k v‖ ≤ ‖γ_{k−1} ∇^{k−1} v‖``, every
lower term kept). The first difference is always kept (order 2 at least): near ``t = 0`` a
velocity may decay to zero as fast as it changes — on grids fitted for ``IPNDM()`` on an exact
Gaussian model ``½‖∇v‖`` exceeded ``‖v‖`` at the landing, and testing it there put the solve 3–9×
further from the answer at 4–6 steps (the exact cosine/v model of ``tests/fewnfe/test_refine.py``,
its grids fitted on 16 noises, scored on 32 others); on the validation models
below testing it changed nothing. Where the terms shrink — every sample of the benchmark's exact
Gaussian models on their declared grids — it is the published update. The other steps are not
guarded: the next step's evaluation follows them. Decided on the device (a mask, no host
read). :func:`~flowrestore.integrate.fit_grid` fits the unguarded update
(:meth:`IPNDM.linear_form`).

``landing_guard=None`` (default) guards in the velocity form on flows whose time is a noise level
with reciprocal stages (:class:`~flowrestore.flows.base.TimeVariable` ``reciprocal``: diffusion
and EDM models), not on InDI or flow matching. Chosen on validation inputs (``python -m
benchmarks.landing_guard --split val``; worst sample unless noted, ``steps=N`` on the declared
grid): the second trained DDPM
(ε-model, validation noises) at 4 / 6 / 10 evaluations 0.931 / 0.435 / 0.114 → 0.437 / 0.199 /
0.075; exact Gaussian-mixture priors under EDM, linear/ε and cosine/v (``python -m
benchmarks.multimodal``'s validation priors, median sample) with well-separated stiff components
1.5–2.2× more accurate at 4–7 (linear/ε at 4 / 5 / 6: 0.245 / 0.162 / 0.079 → 0.114 / 0.076 /
0.045) and at most 3 % less accurate on the smoother ones; the exact Gaussian models and the
v-model DDPM unchanged to the printed digits. On flow matching (shift 3, the same mixtures) it
lost 1.37× on the smoother one at 4 evaluations and 2–7 % on the stiff one at 6–7, so it is off
there. What it did not fix: at 3 evaluations the ε-model's landing was still 2.6× behind Euler
(1.70 vs 0.644) and the stiff mixtures' at 3–5 evaluations (up to 2.2×).

**The landing after two steps** (``UNSETTLED_RATIO``). After two steps the landing's three
values are the whole solve's, from the pure-noise start on, and the guard has only the second
difference to check the first against. Where the second term exceeds 0.9 times the first (per
sample, on the device) the history has not settled and the first difference is not trusted
either: the landing takes the newest value alone (order 1, the last point's clean estimate).
Chosen on validation inputs (``python -m benchmarks.landing_guard --split val``; scratch sweeps
first): the series' ratio is 0.70–0.75 on every sample of the exact Gaussian models and
0.72–0.84 on the v-model DDPM, above 1 on 15 of the ε-model's 16 noises and 0.995 on the last,
its worst: a threshold of 1 leaves that noise at 1.70, 0.9 lands it at 0.513 (Euler 0.644), and
leaves the exact models and the v-model unchanged. Applied at every step count it costs the
ε-model 1.3× at 5 evaluations (its later histories have settled), so it is the landing after two
steps only (``Context.step_index == 2``, a host int).

**The analytic first step** (``start_estimate``). A diffusion or flow-matching solve starts from
pure noise, where the model's clean estimate is the data's mean whatever the input: for data of
scale ``s`` it moves by ``O(s²/σ_max)`` over the inputs (not at all at a zero-SNR or
flow-matching start). Given that estimate ``m`` the first step takes ``D_0 = m`` (``v_0 = (x −
m)/t``) instead of evaluating the model: ``steps=N`` costs ``N − 1`` evaluations, and the value
stays in the history like an evaluated one. This is Zhou et al. 2024's analytic first step ("Fast
ODE-based sampling for diffusion models in around 5 steps", AFS), which takes ``m = 0``: for data
whose mean is not 0 that is an ``O(m)`` error that more steps do not remove. Take the model's own
estimate, averaged over a few warm-up noises (:func:`flowrestore.integrate.estimate_start`, one
evaluation of the batch): the solve approximates the model's ODE, which starts from it — a
training set's mean image is not it (on the trained DDPMs of ``benchmarks/analytic_start.py``
0.36–1.08 away, relative), and the average removes what one noise's estimate carries (an ε-model
multiplies its error by ``σ_max`` there). Only a solve from the flow's pure-noise start may use
it: the flows whose time is a noise level (``TimeVariable.reciprocal`` or ``log_snr``) are
stepped, InDI (whose start is the degraded image) is refused. Measured at equal evaluations in
``benchmarks/analytic_start.py`` (its docstring says how; RESULTS.md has the tables): on exact
Gaussian models and mixtures it is the solve with one more step; on the trained DDPMs it gains
most in the data form (:class:`DataIPNDM`), while the velocity form's history mixes the exact
first value with the model's, whose errors at large ``σ`` are ``σ_max`` times larger. The same
option is :class:`~flowrestore.SemiLinearMultistep`'s and :class:`~flowrestore.UniPC`'s
(flowrestore/solvers/semilinear.py) and :class:`~flowrestore.FittedMultistep`'s; the checks
below (:func:`check_estimate`, :func:`check_start_estimate`, :func:`check_start_time`,
:func:`check_estimate_shape`) are theirs too: a solve that starts part-way (``t_span=(0.3, 0)``,
a grid from 0.3) is refused with a ``start_estimate`` before any evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from flowrestore.errors import ConfigError, IncompatibleSolverError, ShapeError, describe
from flowrestore.flows.base import ODE, Flow, ResidualFlow, bcast
from flowrestore.solvers.base import Context, Solver, StepResult, fields_equal
from flowrestore.tensors import broadcasts_to

__all__ = [
    "AB_COEFFICIENTS",
    "AB_SERIES",
    "UNSETTLED_RATIO",
    "AdamsState",
    "DataIPNDM",
    "IPNDM",
    "check_estimate",
    "check_estimate_shape",
    "check_start_estimate",
    "check_start_time",
    "guarded_combination",
    "start_value",
    "is_integer",
]

#: Adams–Bashforth coefficients for equal steps, newest value first (orders 1–4)
AB_COEFFICIENTS: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
#: the same combinations as a series in backward differences: ``Σ_k γ_k ∇^k v`` (Adams 1883);
#: the guard compares terms from ``k = 1`` on (``γ_0 = 1``, the value's own weight, is never
#: compared: the first two terms are always kept)
AB_SERIES: tuple[float, ...] = (1.0, 1 / 2, 5 / 12, 3 / 8)
FORMS = ("velocity", "data")
#: the landing after two steps takes the newest value alone where its series' second term
#: exceeds this share of its first (module docstring, "The landing after two steps")
UNSETTLED_RATIO = 0.9


@dataclass(frozen=True)
class AdamsState:
    """The last values (velocities or clean estimates), newest first; after a first step that
    the next one corrects (:class:`IPNDM`'s ``start_corrector``), its start ``(x_0, t_0)``;
    ``first``: the next step is the solve's first."""

    values: tuple[Tensor, ...] = ()
    start: tuple[Tensor, Tensor] | None = None
    first: bool = True


@dataclass(repr=False)
class IPNDM(Solver):
    """iPNDM: fixed-coefficient Adams–Bashforth with a lower-order warm start (module docstring).

    Args:
        ab_order: Adams–Bashforth order of the combination, 1–4 (default 3); the first steps
            use the orders their history allows. The declared (global) order is 2.
        form: ``"velocity"`` (default; iPNDM as published, any ODE) or ``"data"`` (the
            clean estimates in the exponential step; residual flows).
        landing_order: Adams–Bashforth order of the step onto ``t = 0`` (1–4; module
            docstring). ``None`` (default): ``ab_order``.
        start_corrector: correct the first (Euler) step with the second step's evaluation, by
            the trapezoid rule, at no extra evaluation (module docstring). ``None`` (default):
            in the velocity form with ``ab_order ≥ 2`` on flows whose time is not a noise level
            (their :meth:`~flowrestore.flows.Flow.time_variable` neither ``reciprocal`` nor
            ``log_snr``: InDI, a plain ODE), else not (``ab_order=1`` stays Euler).
        landing_guard: truncate the landing's Adams–Bashforth series per sample at its smallest
            term, and after two steps land on the newest value where the history has not
            settled (module docstring). ``None`` (default): in the velocity form on flows whose
            time variable is ``reciprocal`` (diffusion and EDM models), else not.
        start_estimate: the clean estimate at a pure-noise start (the data's mean: a number or
            a tensor that broadcasts to the state), taken by the first step instead of an
            evaluation (module docstring, "The analytic first step"). ``None`` (default):
            evaluate the model there.
    """

    ab_order: int = 3
    form: str = "velocity"
    landing_order: int | None = None
    start_corrector: bool | None = None
    landing_guard: bool | None = None
    start_estimate: Tensor | float | None = None
    stage_fractions: ClassVar[tuple[float, ...]] = (0.0,)
    #: the same class and options (a tensor ``start_estimate`` by its values; base.fields_equal)
    __eq__ = fields_equal

    def __post_init__(self):
        if not _is_order(self.ab_order):
            raise ConfigError(f"ab_order must be 1, 2, 3 or 4, got {describe(self.ab_order)}")
        self.ab_order = int(self.ab_order)
        if self.form not in FORMS:
            raise ConfigError(f"form must be one of {FORMS}, got {describe(self.form)}")
        if self.landing_order is None:
            self.landing_order = self.ab_order
        elif not _is_order(self.landing_order):
            raise ConfigError(
                f"landing_order must be None or 1, 2, 3 or 4, got {describe(self.landing_order)}"
            )
        self.landing_order = int(self.landing_order)
        if not isinstance(self.start_corrector, (bool, type(None))):
            raise ConfigError(
                f"start_corrector must be None, True or False, got {describe(self.start_corrector)}"
            )
        if not isinstance(self.landing_guard, (bool, type(None))):
            raise ConfigError(
                f"landing_guard must be None, True or False, got {describe(self.landing_guard)}"
            )
        check_estimate(self.start_estimate)

    def corrects_start(self, flow: Flow) -> bool:
        """Whether the second step corrects the first on ``flow`` (``start_corrector``)."""
        if self.start_corrector is not None:
            return self.start_corrector
        if self.form != "velocity" or self.ab_order == 1:
            return False
        declared = flow.time_variable()
        return not (declared.reciprocal or declared.log_snr)

    def guards_landing(self, flow: Flow) -> bool:
        """Whether the landing truncates its series on ``flow`` (``landing_guard``)."""
        if self.landing_guard is not None:
            return self.landing_guard
        return self.form == "velocity" and flow.time_variable().reciprocal

    def linear_form(self) -> IPNDM:
        """Without the guarded landing (a per-sample choice; :meth:`Solver.linear_form`) and
        with every step evaluated (no ``start_estimate``: a fitted grid's steps each cost an
        evaluation)."""
        return dataclasses.replace(self, landing_guard=False, start_estimate=None)

    def check_flow(self, flow: Flow) -> None:
        """The flow types of :attr:`flow_types`; with ``start_estimate``, a flow that starts
        from pure noise (its time a noise level)."""
        super().check_flow(flow)
        check_start_estimate(self, flow)

    def check_start(self, flow: Flow, t_start: float) -> None:
        """With ``start_estimate``, a solve from the flow's pure-noise start only
        (:func:`check_start_time`)."""
        check_start_time(self, flow, t_start)

    @property
    def order(self) -> float:
        """2 (1 for ``ab_order=1``: Euler or the exponential Euler step); module docstring."""
        return 1.0 if self.ab_order == 1 else 2.0

    @property
    def flow_types(self) -> tuple[type, ...]:
        """Any ODE for the velocity form; residual flows for the data form."""
        return (ODE,) if self.form == "velocity" else (ResidualFlow,)

    def init(self, flow: Flow, t_start: Tensor, x_start: Tensor, ctx: Context):
        """An empty history; the next step is the solve's first unless ``ctx.step_index > 0``
        (a solve started mid-way, as the grid fitter's cost model starts one). A
        ``start_estimate`` that does not broadcast to the state is refused here, before any
        evaluation."""
        check_estimate_shape(self.start_estimate, x_start)
        return x_start, AdamsState(first=ctx.step_index == 0)

    def step(
        self, flow: Flow, t: Tensor, x: Tensor, h: Tensor, state: AdamsState, ctx: Context
    ) -> StepResult:
        """One evaluation at ``(t, x)`` (none on the first step with ``start_estimate``); the
        first step corrected with it where ``start`` is kept (module docstring); then the step
        with the combination of the history."""
        nfe = 1
        if state.first and self.start_estimate is not None:  # the analytic first step
            nfe, d = 0, start_value(self.start_estimate, x)
            value = (x - d) / bcast(t, x) if self.form == "velocity" else d
        elif self.form == "velocity":
            value = flow.drift(t, x)
        else:
            value = flow.denoise(t, x)
        if state.start is not None:
            x0, t0 = state.start
            mean = (value + state.values[0]) / 2
            if self.form == "velocity":
                x = x0 + bcast(t - t0, x) * mean
            else:
                r0 = bcast(t / t0, x)
                x = r0 * x0 + (1 - r0) * mean
        keep = max(self.ab_order, self.landing_order)
        values = (value, *state.values)[:keep]
        combo = _combination(values[: self.ab_order])
        guard = self.guards_landing(flow)
        may_land = ctx.steps_left is None or ctx.steps_left == 0  # a fixed grid's last step
        if (guard or self.landing_order != self.ab_order) and len(values) > 1 and may_land:
            # the step onto t = 0 combines landing_order values; chosen on the device (no sync)
            landing = values[: self.landing_order]
            if guard:
                unsettled = ctx.step_index == 2 and len(landing) == 3  # after two steps
                landing = guarded_combination(landing, unsettled_start=unsettled)
            else:
                landing = _combination(landing)
            combo = torch.where(bcast(t + h == 0, x), landing, combo)
        if self.form == "velocity":
            x_next = x + bcast(h, x) * combo
        else:
            r = bcast((t + h) / t, x)
            x_next = r * x + (1 - r) * combo
        start = (x, t) if state.first and self.corrects_start(flow) else None
        kept = values[: max(keep - 1, 1 if start is not None else 0)]
        return StepResult(x_next, AdamsState(kept, start, first=False), nfe)

    def _corrector_repr(self) -> str:
        out = "" if self.start_corrector is None else f", start_corrector={self.start_corrector}"
        if self.landing_guard is not None:
            out = f"{out}, landing_guard={self.landing_guard}"
        if self.start_estimate is not None:
            out = f"{out}, start_estimate={describe(self.start_estimate)}"
        return out

    def __repr__(self) -> str:
        return (
            f"IPNDM(ab_order={self.ab_order}, form={self.form!r}, "
            f"landing_order={self.landing_order}{self._corrector_repr()})"
        )


def is_integer(value) -> bool:
    """An int (numpy integers too), not a bool: the solvers' orders, powers and node counts
    (a float such as ``2.0`` slices coefficient tables, or was kept as a float)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_order(value) -> bool:
    """An Adams–Bashforth order: an integer 1–4 (:func:`is_integer`), refused when the solver is
    built, not mid-solve."""
    return is_integer(value) and int(value) in (1, 2, 3, 4)


def check_start_estimate(solver: Solver, flow: Flow) -> None:
    """Refuse a ``start_estimate`` on a flow that does not start from pure noise (its time not a
    noise level: InDI's start is the degraded image), with :class:`IncompatibleSolverError`."""
    declared = flow.time_variable()
    noise_start = declared.reciprocal or declared.log_snr
    if solver.start_estimate is not None and not noise_start:
        raise IncompatibleSolverError(
            "start_estimate replaces the first evaluation at a pure-noise start, but "
            f"{type(flow).__name__} does not start from noise (its time is not a noise "
            "level; its clean estimate at the start depends on the input): drop "
            "start_estimate"
        )


def check_start_time(solver: Solver, flow: Flow, t_start: float) -> None:
    """Refuse a ``start_estimate`` on a solve that starts anywhere but ``flow``'s pure-noise
    start (its default span's start): part-way (``t_span=(0.3, 0)``, a grid from 0.3) the clean
    estimate depends on the input, and the estimate taken at the pure-noise start is not it. A
    :class:`ConfigError`, before any evaluation (``fr.solve`` calls it with the planned start)."""
    if solver.start_estimate is None:
        return
    span = flow.default_span
    start = None if span is None else float(span[0])
    if start is not None and math.isclose(t_start, start, rel_tol=1e-12, abs_tol=1e-12):
        return
    where = "has no default span" if start is None else f"starts from pure noise at t={start:.6g}"
    raise ConfigError(
        f"start_estimate replaces the first evaluation at the pure-noise start, but this solve "
        f"starts at t={t_start:.6g} (t_span= or grid=) and {type(flow).__name__} {where}: "
        "there the clean estimate depends on the input; drop start_estimate, or start the "
        "solve at the pure-noise start"
    )


def check_estimate_shape(m, x: Tensor) -> None:
    """Refuse a tensor ``start_estimate`` that does not broadcast to the state ``x``."""
    if isinstance(m, Tensor) and not broadcasts_to(m.shape, x.shape):
        raise ShapeError(
            f"start_estimate {describe(m)} does not broadcast to the state {tuple(x.shape)}"
        )


def start_value(m, x: Tensor) -> Tensor:
    """The analytic first step's clean estimate ``m`` (a number or a tensor) as a state-shaped
    tensor on ``x``'s device and dtype (a copy from the host, never a read of the device)."""
    return torch.as_tensor(m).to(x).expand_as(x)


def check_estimate(m) -> None:
    """``start_estimate``: ``None``, a finite real number (numpy's too) or a finite floating
    tensor (read once, at construction)."""
    if m is None:
        return
    if isinstance(m, Tensor):
        ok = m.is_floating_point() and bool(torch.isfinite(m).all())
    else:
        ok = isinstance(m, numbers.Real) and not isinstance(m, bool) and math.isfinite(m)
    if not ok:
        raise ConfigError(
            "start_estimate must be None, a finite number or a finite floating tensor (the "
            f"data's mean), got {describe(m)}"
        )


def _combination(values: tuple[Tensor, ...]) -> Tensor:
    """``Σ_j c_j values[j]`` with the Adams–Bashforth coefficients of ``len(values)``."""
    combo = None
    for c, v in zip(AB_COEFFICIENTS[len(values) - 1], values, strict=True):
        combo = c * v if combo is None else combo + c * v
    return combo


def guarded_combination(values: tuple[Tensor, ...], *, unsettled_start: bool = False) -> Tensor:
    """The Adams–Bashforth combination of ``values`` (newest first), per sample (dim 0) of the
    highest order whose backward-difference series ``Σ_k γ_k ∇^k v`` (:data:`AB_SERIES`) has
    shrinking terms from its first difference up to it, never below order 2: truncated before
    the first term ``k ≥ 2`` whose norm exceeds the previous term's (module docstring, "The
    guarded landing"). Where those terms shrink it is ``_combination(values)``, bit for bit.

    ``unsettled_start`` (three values: the landing after two steps, whose history is the whole
    solve): where the second term exceeds :data:`UNSETTLED_RATIO` times the first, the newest
    value alone (order 1; module docstring, "The landing after two steps")."""
    if unsettled_start and len(values) != 3:
        raise ValueError(f"unsettled_start needs three values, got {len(values)}")
    if len(values) < 3:
        return _combination(values)
    diffs, level = [values[0]], list(values)
    for _ in range(1, len(values)):
        level = [a - b for a, b in zip(level[:-1], level[1:], strict=True)]
        diffs.append(level[0])
    combo = _combination(values[:2])
    previous = _sizes(AB_SERIES[1] * diffs[1])
    sizes = [previous]  # the terms' sizes from the first difference on
    kept = torch.ones_like(previous, dtype=torch.bool)
    for k in range(2, len(values)):
        size = _sizes(AB_SERIES[k] * diffs[k])
        sizes.append(size)
        kept = kept & (size <= previous)
        combo = torch.where(bcast(kept, combo), _combination(values[: k + 1]), combo)
        previous = size
    if unsettled_start:  # the series' second term against its first
        unsettled = sizes[1] > UNSETTLED_RATIO * sizes[0]
        combo = torch.where(bcast(unsettled, combo), values[0], combo)
    return combo


def _sizes(value: Tensor) -> Tensor:
    """Per-sample (dim 0) Euclidean norms."""
    return value.reshape(value.shape[0], -1).norm(dim=1)


@dataclass(repr=False, eq=False)
class DataIPNDM(IPNDM):
    """:class:`IPNDM` in the data-prediction form, second order by default: the exponential
    (DDIM/InDI) step with ``(3 D_k − D_{k−1})/2`` for the clean estimate (module docstring).

    The most robust of the fixed-coefficient variants at 3–10 evaluations across the benchmark's
    diffusion models and shipped restoration predictors (``benchmarks/fewnfe.py``).
    """

    ab_order: int = 2
    form: str = "data"

    def __repr__(self) -> str:
        form = "" if self.form == "data" else f", form={self.form!r}"
        return (
            f"DataIPNDM(ab_order={self.ab_order}{form}, landing_order={self.landing_order}"
            f"{self._corrector_repr()})"
        )
