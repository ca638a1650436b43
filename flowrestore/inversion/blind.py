"""BIRD: blind restoration by fast inversion of a few-step generative flow (docs/math.md §5).

A generative flow ``Ψ`` maps a latent ``z`` (noise at ``t = 1``) to an image in a few large
deterministic steps — here ``Ψ(z) = fr.solve(flow, solver, z, steps=N).x``, e.g. an
:class:`~flowrestore.InDIFlow` whose predictor was trained with ``y`` = pure noise. Given an
observation ``ỹ`` of a degradation ``H_φ`` with unknown parameters ``φ`` (:class:`Param` arguments),
:class:`BlindInversion` solves, for every image ``i`` of the batch,

    min_{z_i, φ_i}  L_i = mean_j (ỹ_i − H_{φ_i}(Ψ(z_i)))_j²      (+ regulariser(φ)_i)

by Adam on ``Σ_i L_i`` (the sum makes the images independent: batched inversion equals inversion
one at a time), projecting after every update ``z_i ← sqrt(d) z_i / ‖z_i‖`` (``d`` = elements
per image: channels × pixels) so ``Ψ(z)`` stays on the image manifold, and each ``φ`` onto its
valid set (bounds, positive, simplex; :class:`Param`). Non-blind restoration is the case without
any ``Param``.
With ``noise_std`` (a number or a :class:`Param`) the objective is the Gaussian negative
log-likelihood per pixel ``mean_j r_j² / (2σ²) + log σ``, so a blind ``σ`` is estimated too.

**Gradients** (``gradient=``):

* ``"exact"`` — backpropagate through the whole solve (``fr.solve(..., differentiable=True)``):
  ``∇_z L = J_Ψ(z)ᵀ ∇_x L``. Memory grows with the number of steps and the predictor's activations.
* ``"detached"`` — run ``Ψ`` under ``no_grad`` and pass ``∇_x L`` straight through to the latent:
  ``∇_z L ≈ ∇_x L |_{x = Ψ(z)}``, i.e. ``J_Ψ ≈ I``. This is what the BIRD reference code computes:
  it runs the network under ``no_grad`` but keeps the DDIM update's dependence on ``x_t``; with the
  predicted noise ``ε̂`` constant, one DDIM step is ``x_prev = sqrt(ᾱ_prev/ᾱ_t) x_t + const`` and the
  product over steps is the scalar ``1/sqrt(ᾱ_T)`` times the identity. Adam is invariant to a
  constant gradient scale, so the identity is the same method without the DDIM-specific constant
  (in InDI's clean-image parametrisation, detaching ``F`` instead would make the last step's
  Jacobian zero: ``x_0 = F(x_t, t)``). One forward per iteration and no graph: ~3× cheaper than
  ``"exact"``. It needs the latent and the image to have the same shape (true of any flow). The
  gradient with respect to ``φ`` is exact in both modes (``H_φ`` is applied with autograd on).

The result says which was used (:attr:`InversionResult.gradient`).

**Precision.** ``Ψ`` runs in the observation's dtype (that of the flow's network: a float16 or
bfloat16 model takes a half-precision ``y``); the latent, the unknowns, Adam's state and the
objective are kept in at least float32 (:func:`work_dtype`), and cast at ``Ψ``'s input and output.
In float16 Adam's second moment of a small gradient (``g² < 6·10⁻⁸``) and its ``eps = 10⁻⁸`` both
flush to zero, and the first update divided by it turned every latent into NaN.

**Latent.** The sphere ``‖z‖ = sqrt(d)`` is where a standard normal ``z`` lives; ``Ψ`` starts from
the model's own noise at ``t = 1``, ``latent_std · z``, as the flow declares (``flow.latent_std``):
``x_T = ε`` for a diffusion model, ``x_1 = ε`` for flow matching, ``σ_max ε`` for an EDM denoiser.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from flowrestore.controllers import FixedGrid
from flowrestore.degradations.blind import Param
from flowrestore.errors import ArgumentTypeError, ConfigError, NonFiniteError, ShapeError, describe
from flowrestore.flows.base import Flow
from flowrestore.grids import Spacing, check_grid
from flowrestore.integrate.solve import PreparedSolve, prepare, solve
from flowrestore.inversion.latent import (
    ProjectedAdam,
    check_observation,
    project_sphere,
    read_iteration,
    tangent_,
)
from flowrestore.inversion.objective import Objective, positive_number
from flowrestore.inversion.records import (
    Evaluation,
    InversionResult,
    IterationState,
    stack_history,
)
from flowrestore.solvers.base import Solver

__all__ = ["BlindInversion", "project_sphere", "tangent_"]

_GRADIENTS = ("exact", "detached")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the latent, the unknowns and the objective for an observation of ``dtype``:
    at least float32 (module docstring, "Precision")."""
    return torch.promote_types(dtype, torch.float32)


_SCHEDULES = ("constant", "cosine")


def _check_time_grid(flow: Flow, solver: Solver, steps, grid, spacing) -> None:
    """Refuse when built what :meth:`BlindInversion.run`'s solve of ``Ψ`` would refuse about its
    time grid (:func:`flowrestore.solve`'s rules: ``steps`` a positive int, ``grid`` a monotone
    grid in the flow's direction and time range, ``spacing`` a Spacing laying ``steps``, no fixed
    grid for a solver built with tolerances), so a bad setting fails before any image is loaded
    or any evaluation is spent. What depends on the observation (its dtype, shape) is checked by
    ``run``."""
    if flow.default_span is None:
        raise ConfigError(
            f"flow must have a default time span (Ψ integrates it over that span), got "
            f"{type(flow).__name__} with default_span=None"
        )
    if grid is not None and steps is not None:
        raise ConfigError(
            f"grid= already fixes the times: do not also pass steps=, got steps={describe(steps)}"
        )
    if grid is not None or steps is not None:
        what = "grid=" if grid is not None else "steps="
        options = getattr(solver, "controller_options", None)
        if options:
            raise ConfigError(
                f"solver {solver!r} configures error control, but {what} asks for a fixed grid; "
                f"build {type(solver).__name__}() without {sorted(options)} to step on a grid, "
                f"or drop {what}"
            )
        if grid is not None:
            if spacing is not None:
                raise ConfigError(
                    f"grid= already fixes the times: do not also pass spacing=, got "
                    f"spacing={describe(spacing)}"
                )
            t0, t1 = flow.default_span
            check_grid(grid, time_range=flow.time_range, direction=1 if t1 > t0 else -1)
        else:
            FixedGrid(steps=steps, spacing=spacing)  # steps a positive int, spacing a Spacing
    elif spacing is not None:
        raise ConfigError(
            f"spacing= lays out steps=: pass steps= too, got spacing={describe(spacing)}"
        )
    elif solver.controller is None:
        raise ConfigError(
            f"pass steps= (or grid=): the number of steps of the few-step flow Ψ; "
            f"{type(solver).__name__} is a fixed-step solver"
        )


def _declared_latent_std(flow: Flow) -> float:
    """The noise at ``t = 1`` the flow declares (``flow.latent_std``), or that of the model flow
    a guided flow wraps (``fr.DiffPIRFlow(edm, ...)``: ``σ_max``; it was started from ``z``),
    else 1."""
    for candidate in (flow, getattr(flow, "model", None)):
        value = getattr(candidate, "latent_std", None)
        if isinstance(candidate, Flow) and value is not None:
            return value
    return 1.0


def _check_run_options(generator, callback, progress=False) -> None:
    """Refuse, before any evaluation, a ``generator``, ``callback`` or ``progress``
    :meth:`BlindInversion.run` could not use (they failed after the first solve, untyped; a
    ``progress="no"`` showed a bar)."""
    if not isinstance(progress, bool):
        raise ArgumentTypeError(f"progress must be a bool, got {describe(progress)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(
            f"generator must be a torch.Generator or None, got {describe(generator)}"
        )
    if callback is not None and not callable(callback):
        raise ArgumentTypeError(
            f"callback must be None or a callable callback(k, state), got {describe(callback)}"
        )


def _check_image_shape(image_shape) -> tuple[int, ...]:
    """``image_shape`` as a tuple of positive ints (the shape of one image of ``Ψ``)."""
    try:
        dims = () if isinstance(image_shape, (str, bytes)) else tuple(image_shape)
    except TypeError:
        dims = ()
    if not dims or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in dims
    ):
        raise ShapeError(
            f"image_shape must be a non-empty sequence of positive ints (one image of Ψ, e.g. "
            f"(3, 64, 64)), got {describe(image_shape)}"
        )
    return tuple(int(s) for s in dims)


class BlindInversion:
    """Joint estimation of the latent and the degradation's unknown parameters (BIRD, docs/math.md
    §5).

    Args:
        flow: the generative flow (e.g. ``InDIFlow(predictor)`` for a predictor trained with
            ``y`` = noise); ``Ψ(z)`` integrates it from ``z`` over its default span.
        solver: a deterministic :class:`~flowrestore.Solver` (``Euler()``, ``Heun()``, ...).
        steps, grid, spacing: the time grid of ``Ψ``, as for :func:`flowrestore.solve`.
        degradation: the forward model ``H``: an operator (blind when built with :class:`Param`
            arguments, e.g. ``BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 5)))``),
            any callable
            ``x -> y``, or a sequence of them applied in order
            (``[BlindOperator(Blur, kernel=Param(...)),
            Downsample(2)]`` is down-sampling with an unknown kernel).
        iterations: Adam iterations.
        lr_latent, lr_degradation: learning rates (a :class:`Param` may set its own ``lr``).
        gradient: ``"exact"`` or ``"detached"`` (see the module docstring).
        noise_std: ``None`` (least squares), a number or a :class:`Param` (Gaussian likelihood;
            a ``Param`` estimates the noise level; its key is its ``name``, else
            ``"noise_std"``).
        regularizer: optional ``regularizer(params) -> [B]`` added to each image's objective
            (a prior on ``φ``); ``params`` maps keys to the current values.
        schedule: ``"constant"`` learning rates (BIRD) or ``"cosine"`` decay to 0.
        betas: Adam's betas.
        tangent_gradient: remove the latent gradient's component along ``z`` (the sphere's normal).
        latent_std: ``Ψ`` starts from ``latent_std · z`` (module docstring); default: the flow's
            ``latent_std`` (a guided flow's: its model flow's), or 1 if it declares none (InDI
            trained on unit noise).
    """

    def __init__(
        self,
        flow: Flow,
        *,
        solver: Solver,
        degradation,
        steps: int | None = None,
        grid=None,
        spacing: Spacing | None = None,
        iterations: int = 200,
        lr_latent: float = 1e-2,
        lr_degradation: float = 1e-2,
        gradient: str = "exact",
        noise_std: float | Param | None = None,
        regularizer: Callable[[dict[str, Tensor]], Tensor] | None = None,
        schedule: str = "constant",
        betas: tuple[float, float] = (0.9, 0.999),
        tangent_gradient: bool = True,
        latent_std: float | None = None,
    ):
        if not isinstance(flow, Flow):
            raise ArgumentTypeError(
                f"flow must be a flowrestore Flow (e.g. fr.InDIFlow), got {describe(flow)}"
            )
        if not isinstance(solver, Solver):
            raise ArgumentTypeError(
                f"solver must be a flowrestore Solver such as fr.Euler(), got {describe(solver)}"
            )
        if getattr(solver, "stochastic", False):
            raise ConfigError(
                f"solver must be deterministic (Ψ is inverted as a fixed map), got {solver!r}"
            )
        solver.check_flow(flow)  # the pairing the solve of Ψ refuses, refused when built
        _check_time_grid(flow, solver, steps, grid, spacing)
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, numbers.Integral)
            or iterations < 0
        ):
            raise ConfigError(f"iterations must be an int >= 0, got {describe(iterations)}")
        if gradient not in _GRADIENTS:
            raise ConfigError(f"gradient must be one of {_GRADIENTS}, got {describe(gradient)}")
        if schedule not in _SCHEDULES:
            raise ConfigError(f"schedule must be one of {_SCHEDULES}, got {describe(schedule)}")
        if not (
            isinstance(betas, (tuple, list))
            and len(betas) == 2
            and all(
                isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= b < 1
                for b in betas
            )
        ):
            raise ConfigError(f"betas must be a pair of numbers in [0, 1), got {describe(betas)}")
        self.flow, self.solver = flow, solver
        self.solve_kwargs = {"steps": steps, "grid": grid, "spacing": spacing}
        self.iterations = int(iterations)
        self.lr_latent = positive_number(lr_latent, "lr_latent")
        self.lr_degradation = positive_number(lr_degradation, "lr_degradation")
        self.gradient = gradient
        self.schedule = schedule
        self.betas = tuple(float(b) for b in betas)
        if not isinstance(tangent_gradient, bool):
            raise ConfigError(f"tangent_gradient must be a bool, got {describe(tangent_gradient)}")
        self.tangent_gradient = tangent_gradient
        declared = _declared_latent_std(flow) if latent_std is None else latent_std
        self.latent_std = positive_number(declared, "latent_std")
        self.objective = Objective(degradation, noise_std=noise_std, regularizer=regularizer)

    @property
    def unknowns(self) -> dict[str, tuple[int | None, str, Param]]:
        """Each unknown's key → ``(operator index or None, argument, Param)``."""
        return self.objective.unknowns

    def forward(self, x: Tensor, values: dict[str, Tensor]) -> Tensor:
        """``H_φ(x)`` with the unknowns set to ``values`` (keys as in the result's ``params``:
        every unknown of the degradation; a blind noise level may be given, and is not used).
        The operators check the values as when built directly (a negative blur width is
        refused, not blurred with), unlike the run's own evaluations, whose values are projected
        onto their Params' sets."""
        values = self._check_params_keys(values, "values")
        missing = {k for k, (i, _, _) in self.unknowns.items() if i is not None} - set(values)
        if missing:
            raise ConfigError(f"values must give every unknown; missing {sorted(missing)}")
        return self.objective.forward(x, values, constrained=False)

    # ------------------------------------------------------------------ pieces
    def start(self, z: Tensor) -> Tensor:
        """The start state of ``Ψ`` for the latent ``z``: ``latent_std · z``."""
        return z if self.latent_std == 1.0 else self.latent_std * z

    def generate(self, z: Tensor, *, differentiable: bool = False) -> Tensor:
        """``Ψ(z)``: the few-step solve of the flow from the latent ``z``."""
        x_start = self.start(z)
        return solve(
            self.flow, self.solver, x_start, differentiable=differentiable, **self.solve_kwargs
        ).x

    def _plan(self, z: Tensor, *, differentiable: bool, dtype: torch.dtype) -> PreparedSolve:
        """``Ψ``'s solve, checked and planned once for latents like ``z``, in the flow's ``dtype``.
        The non-finite checks are the iteration's own (one read per iteration, :meth:`run`), not
        the solve's."""
        return prepare(
            self.flow,
            self.solver,
            self.start(z.detach()).to(dtype),
            differentiable=differentiable,
            check_finite=False,
            **self.solve_kwargs,
        )

    def _psi(self, z: Tensor, plan: PreparedSolve) -> tuple[Tensor, Tensor]:
        sol = plan(self.start(z).to(plan.like[1]))  # the flow's dtype (module docstring)
        x = sol.x.to(z.dtype)
        if self.gradient == "detached":
            if x.shape != z.shape:
                raise ShapeError(
                    f"gradient='detached' passes dL/dx straight to the latent, so Ψ must keep the "
                    f"shape: latent {tuple(z.shape)}, image {tuple(x.shape)}"
                )
            x = x.detach() + (z - z.detach())
        return x, sol.stats.nfe.max()

    def _evaluate(self, y: Tensor, z: Tensor, values: dict[str, Tensor], plan: PreparedSolve):
        """Objective and the gradients the optimiser receives (latent: tangent if configured)."""
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        with torch.enable_grad():
            x, nfe = self._psi(z, plan)
            pred = self.objective.forward(x, values)
            loss, mse = self.objective(y, pred, values)
            leaves = [z, *values.values()]
            grads = torch.autograd.grad(loss.sum(), leaves, allow_unused=True)
        grads = [
            torch.zeros_like(leaf) if g is None else g
            for leaf, g in zip(leaves, grads, strict=True)
        ]
        g_z = grads[0]
        if self.tangent_gradient:
            tangent_(g_z, z)
        g_params = dict(zip(values, grads[1:], strict=True))
        ev = Evaluation(x.detach(), pred.detach(), loss.detach(), mse.detach(), nfe.detach())
        return g_z, g_params, ev

    def _final(
        self, y: Tensor, z: Tensor, values: dict[str, Tensor], dtype: torch.dtype
    ) -> Evaluation:
        """The objective at the last iterate, without gradients (its solve is counted too); the
        image in the flow's ``dtype``."""
        with torch.no_grad():
            x_start = self.start(z.detach()).to(dtype)
            sol = solve(self.flow, self.solver, x_start, **self.solve_kwargs)
            pred = self.objective.forward(sol.x.to(z.dtype), values)
            loss, mse = self.objective(y, pred, values)
        return Evaluation(sol.x, pred, loss, mse, sol.stats.nfe.max())

    def gradients(
        self, y: Tensor, latent: Tensor, params: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The gradients one iteration hands to Adam at ``(latent, params)`` (no update).

        ``latent`` is used as given (not projected); ``params`` maps every unknown's key to its
        value ``[B, *event]`` (or ``event`` when shared). Returns ``(d/dz, {key: d/dφ})`` of the
        summed objective: for ``gradient="detached"`` ``d/dz`` is ``∇_x L`` at ``x = Ψ(z)``; with
        ``tangent_gradient`` its component along ``z`` is removed.
        """
        check_observation(y)
        if (
            not isinstance(latent, Tensor)
            or not torch.is_floating_point(latent)
            or latent.dim() < 2
            or latent.shape[0] != y.shape[0]
        ):
            raise ShapeError(
                f"latent must be a floating-point batch [B, ...] with y's B = {y.shape[0]}, got "
                f"{describe(latent)}"
            )
        params = self._check_params_keys(params)
        missing = set(self.unknowns) - set(params)
        if missing:
            raise ConfigError(f"params must give every unknown; missing {sorted(missing)}")
        work = work_dtype(y.dtype)
        values = {  # checked here: the objective builds its operators without value checks
            k: p.check_value(params[k], y.shape[0], key=k, dtype=work, device=y.device)
            .detach()
            .requires_grad_(True)
            for k, (_, _, p) in self.unknowns.items()
        }
        z = latent.detach().to(device=y.device, dtype=work).clone()  # as run() takes it
        plan = self._plan(z, differentiable=self._exact, dtype=y.dtype)
        g_z, g_params, _ = self._evaluate(y.to(work), z, values, plan)
        return g_z, g_params

    @property
    def _exact(self) -> bool:
        return self.gradient == "exact"

    # ------------------------------------------------------------------ run
    def run(
        self,
        y: Tensor,
        *,
        generator: torch.Generator | None = None,
        latent: Tensor | None = None,
        params: dict | None = None,
        image_shape: Sequence[int] | None = None,
        progress: bool = False,
        callback: Callable[[int, IterationState], None] | None = None,
    ) -> InversionResult:
        """Invert the batch of observations ``y`` ``[B, ...]``.

        Args:
            y: observations.
            generator: draws the initial latents ``z ~ N(0, I)`` (then put on the sphere);
                ``None``: torch's global generator.
            latent: initial latents instead ``[B, *image_shape]`` (projected onto the sphere);
                not with ``generator``.
            params: starting values overriding the :class:`Param` inits, by key: a tensor
                ``[B, *event]`` (or broadcastable to it); must satisfy the Param's constraints.
            image_shape: shape of one image of ``Ψ`` (default ``y.shape[1:]``; needed when ``H``
                changes the size, e.g. down-sampling).
            progress: tqdm bar over iterations (reads the mean loss once per iteration).
            callback: ``callback(k, state)`` after update ``k`` with an :class:`IterationState`
                (``latent``, ``loss``, ``params``; detached copies, safe to keep).

        ``Ψ``'s solve is checked and planned once per run (:func:`flowrestore.integrate.prepare`);
        an iteration then reads one device value: whether its objective and gradients are finite
        (a non-finite one stops the run with :class:`~flowrestore.NonFiniteError`), read together
        with the mean loss the progress bar shows. The evaluation counts (every solve's, the final
        one included) are read once, after the last iteration, with whether the final objective
        is finite (else NonFiniteError too). A blind operator that would read its unknowns'
        values when built at each iteration is refused first
        (:meth:`BlindOperator.check_reads_no_values`: e.g. a GaussianBlur width with neither
        ``kernel_size`` nor a finite upper bound).

        A run that stops early (that NonFiniteError, an error of ``Ψ``'s solve such as an
        adaptive solver's step-size underflow, an interrupt) returns nothing; the states a
        ``callback`` kept are on their valid sets, so ``run(y, latent=state.latent,
        params=state.params)`` restarts from one (with fresh Adam moments).
        """
        t0 = time.perf_counter()
        _check_run_options(generator, callback, progress)
        if generator is not None and latent is not None:  # the generator would go unused
            raise ConfigError(
                f"generator= draws the initial latents and latent= gives them: pass one, got "
                f"generator={describe(generator)} and latent={describe(latent)}"
            )
        self.objective.check_reads_no_values()  # no device read in the loop's operators
        check_observation(y)
        dtype, y = y.dtype, y.to(work_dtype(y.dtype))  # Ψ in y's dtype, the rest in ``work``
        z = self._initial_latent(y, generator, latent, image_shape)
        values = self._initial_values(y, params)
        opt = ProjectedAdam(
            z, values, self.unknowns, lr_latent=self.lr_latent,
            lr_degradation=self.lr_degradation, betas=self.betas,
            cosine_steps=self.iterations if self.schedule == "cosine" else None,
        )  # fmt: skip
        plan = self._plan(z, differentiable=self._exact, dtype=dtype)
        rows: list[tuple[Tensor, Tensor, dict[str, Tensor]]] = []  # no images (stack_history)
        nfes: list[Tensor] = []
        bar = self._progress_bar() if progress else None
        try:  # the bar is closed however the loop ends (a NaN, a callback's error, ^C)
            for k in range(self.iterations):
                g_z, g_params, ev = self._evaluate(y, z, values, plan)
                rows.append(
                    (ev.loss, ev.mse, {key: v.detach().clone() for key, v in values.items()})
                )
                nfes.append(ev.nfe)
                # the iteration's one host read
                finite, mean_loss = read_iteration(ev.loss, g_z, g_params.values())
                if not finite:
                    raise NonFiniteError(
                        f"BIRD's objective or gradients became non-finite (NaN/inf) at "
                        f"iteration {k + 1} of {self.iterations}; per-image losses "
                        f"{ev.loss.tolist()} (lower lr_latent/lr_degradation, or check the flow)"
                    )
                opt.step(g_z, g_params)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{mean_loss:.3g}")
                if callback is not None:  # copies: Adam and the projections update z, φ in place
                    state = {key: v.detach().clone() for key, v in values.items()}
                    callback(k + 1, IterationState(z.detach().clone(), ev.loss, state))
        finally:
            if bar is not None:
                bar.close()
        final = self._final(y, z, values, dtype)
        rows.append((final.loss, final.mse, {key: v.detach().clone() for key, v in values.items()}))
        nfes.append(final.nfe)
        # one read after the loop: the evaluation count, or -1 for a non-finite final objective
        total = torch.stack([n.to(final.nfe.device) for n in nfes]).sum()
        nfe = int(torch.where(torch.isfinite(final.loss).all(), total, -1))
        if nfe < 0:
            raise NonFiniteError(
                f"BIRD's objective at the final iterate is non-finite (NaN/inf) after "
                f"{self.iterations} iterations; per-image losses {final.loss.tolist()}"
            )
        return InversionResult(
            x=final.x,
            latent=z.detach(),
            params={key: v.detach() for key, v in values.items()},
            history=stack_history(rows, list(values)),
            loss=final.loss,
            mse=final.mse,
            prediction=final.prediction,
            gradient=self.gradient,
            iterations=self.iterations,
            nfe=nfe,
            time_s=time.perf_counter() - t0,
        )

    def _initial_latent(self, y, generator, latent, image_shape) -> Tensor:
        """``z`` on the sphere, a leaf requiring grad: drawn from ``generator`` or given (finite,
        no sample all zeros: the sphere has no point in its direction; one host read)."""
        b, dtype, device = y.shape[0], y.dtype, y.device
        shape = tuple(y.shape[1:]) if image_shape is None else _check_image_shape(image_shape)
        if latent is None:
            where = device if generator is None else generator.device
            z = torch.randn((b, *shape), generator=generator, dtype=dtype, device=where)
            z = z.to(device)
        else:
            if (
                not isinstance(latent, Tensor)
                or not torch.is_floating_point(latent)
                or tuple(latent.shape) != (b, *shape)
            ):
                raise ShapeError(
                    f"latent must be a floating-point tensor of shape {(b, *shape)}, got "
                    f"{describe(latent)}"
                )
            z = latent.detach().to(device=device, dtype=dtype).clone()
            flat = z.reshape(b, -1)
            if not bool((torch.isfinite(flat).all(dim=1) & (flat != 0).any(dim=1)).all()):
                raise ConfigError(
                    f"latent must be finite with no sample all zeros (it is projected onto the "
                    f"sphere ‖z‖ = sqrt(d)), got {describe(latent)}"
                )
        return project_sphere(z).requires_grad_(True)

    def _initial_values(self, y: Tensor, params: dict | None) -> dict[str, Tensor]:
        """Every unknown's starting leaf: the user's value (checked) or its Param's init."""
        params = self._check_params_keys(params)
        b, dtype, device = y.shape[0], y.dtype, y.device
        values: dict[str, Tensor] = {}
        for key, (_, _, p) in self.unknowns.items():
            v = (
                p.check_value(params[key], b, key=key, dtype=dtype, device=device)
                if key in params
                else p.initial(b, dtype=dtype, device=device)
            )
            values[key] = v.requires_grad_(True)
        return values

    def _check_params_keys(self, params, name: str = "params") -> dict:
        """``params`` (the argument ``name``) as a dict whose keys are unknowns' keys (``None``:
        empty)."""
        if params is not None and not isinstance(params, Mapping):
            raise ArgumentTypeError(
                f"{name} must be None or a dict {{unknown's key: value}}, got {describe(params)}"
            )
        params = {} if params is None else dict(params)
        unknown_keys = set(params) - set(self.unknowns)
        if unknown_keys:
            raise ConfigError(
                f"{name} has keys {sorted(unknown_keys)} that are not unknowns; the unknowns are "
                f"{sorted(self.unknowns)}"
            )
        return params

    def _progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(total=self.iterations, desc=f"BIRD ({self.gradient})", leave=False)

    def __repr__(self) -> str:
        return (
            f"BlindInversion(solver={self.solver!r}, steps={self.solve_kwargs['steps']}, "
            f"degradation={list(self.objective.ops)!r}, gradient={self.gradient!r}, "
            f"iterations={self.iterations})"
        )
