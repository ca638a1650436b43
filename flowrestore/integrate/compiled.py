"""``fr.solve(..., compile=True)``: the fixed-grid steps compiled once per input shape, replayed as
a CUDA graph on a GPU.

What is compiled is the loop's own step function (:func:`flowrestore.integrate.stepping.steps`)
and the landing step, as one ``torch.compile(fullgraph=True)`` graph — every step unrolled, with
no host synchronisation inside (a fixed grid's run reads nothing from the device). Planning, the
solver's ``init``, the non-finite check of ``x_start`` and everything after the steps (failures,
``output``, the solution) stay eager. On CUDA the mode is ``"reduce-overhead"``: the whole solve
replays as one CUDA graph, with no Python between its kernels. The compiled function is cached per
(flow, solver, grid, options, input shape, dtype, device): the first call with a new shape
compiles (seconds to minutes), later calls replay.

Stochastic solvers draw their noise before the compiled steps (``torch.compile`` cannot create or
use a ``torch.Generator``): the solver declares its draws per step (``Solver.noise_draws``) and
the solve's noise source fills a :class:`~flowrestore.noise.TapeNoise` in the eager order, so a
compiled stochastic solve equals the eager one for ``generator=``, ``seeds=`` and any
``noise=`` (the tape costs one state-sized tensor per draw).

Refused before any work, with the reason: error control (a host decision per step), progress bars
and callbacks (Python between steps), ``differentiable=True``, solvers that keep Python state
between steps (the torchdiffeq/torchsde adapters) and stochastic solvers that do not declare their
draws.
"""

from __future__ import annotations

import inspect
import types
from collections import OrderedDict

import torch
from torch import Tensor

from flowrestore.errors import ConfigError
from flowrestore.integrate.endpoint import lands_by_denoising
from flowrestore.integrate.stepping import land_all, steps, trajectory_buffer
from flowrestore.noise import TapeNoise

__all__ = ["COMPILE_MODES", "check_compile", "compile_modes", "compile_options", "run_compiled"]

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 32


def compile_options(compile, device: torch.device) -> dict | None:
    """``torch.compile`` keyword arguments for ``fr.solve(..., compile=...)``: ``None`` (eager)
    for ``False``; for ``True`` ``mode="reduce-overhead"`` (CUDA graphs) on CUDA and the default
    mode elsewhere; a string is a mode, a dict the keyword arguments themselves (e.g.
    ``{"backend": "eager"}``)."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return {"mode": "reduce-overhead"} if device.type == "cuda" else {}
    if isinstance(compile, str):
        if compile not in COMPILE_MODES and compile not in compile_modes():
            raise ConfigError(
                f"compile must be True, False, a dict of torch.compile arguments or one of "
                f"torch.compile's modes {compile_modes()}, got {compile!r}"
            )
        return {"mode": compile}
    if isinstance(compile, dict) and not {"fullgraph", "dynamic"} & set(compile):
        _check_compile_dict(compile)
        return dict(compile)
    raise ConfigError(
        "compile must be a bool, a torch.compile mode string or a dict of torch.compile "
        f"arguments (not fullgraph/dynamic, which the solve sets), got {compile!r}"
    )


def _check_compile_dict(compile: dict) -> None:
    """A dict's keys are ``torch.compile``'s keyword arguments and its ``mode`` one of its
    modes: refused here, by name, rather than by ``torch.compile`` at the first call."""
    allowed = set(inspect.signature(torch.compile).parameters) - {"model", "fullgraph", "dynamic"}
    unknown = sorted(repr(k) for k in compile if k not in allowed)
    if unknown:
        raise ConfigError(
            f"compile={compile!r} has keys torch.compile does not take: {', '.join(unknown)} "
            f"(it takes {sorted(allowed)})"
        )
    mode = compile.get("mode")
    if mode is not None and compile.get("options") is not None:  # torch.compile's RuntimeError
        raise ConfigError(f"compile={compile!r} gives both mode and options: pass one of them")
    if mode is not None and mode not in COMPILE_MODES and mode not in compile_modes():
        raise ConfigError(
            f"compile's mode must be one of torch.compile's modes {compile_modes()}, got {mode!r}"
        )


#: ``torch.compile``'s documented modes (the installed torch may add its own: :func:`compile_modes`)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_modes() -> tuple[str, ...]:
    """The mode strings ``compile=`` accepts: :data:`COMPILE_MODES` and any other mode the
    installed torch's inductor lists (importing the inductor: seconds, once)."""
    try:
        from torch._inductor import list_mode_options

        extra = tuple(m for m in list_mode_options() if m not in COMPILE_MODES)
    except Exception:  # noqa: BLE001 - a private API: without it, the documented modes
        extra = ()
    return COMPILE_MODES + extra


def check_compile(solver, ctrl, *, progress, callback, differentiable) -> None:
    """Refuse, before any work, what a compiled solve cannot capture (module docstring)."""
    why = None
    if not ctrl.capturable:
        why = (
            f"{type(ctrl).__name__} decides on the host after every step (error control); "
            "use a fixed grid (steps= or grid=)"
        )
    elif progress:
        why = "a progress bar runs Python between steps; drop progress=True"
    elif callback is not None:
        why = "a callback runs Python between steps; drop callback= (save_at= saves states)"
    elif differentiable:
        why = "differentiable=True is not supported compiled; compile your predictor instead"
    elif not solver.capturable:
        why = f"{type(solver).__name__} keeps Python state between steps"
    elif solver.noise_draws() is None:
        why = (
            f"{type(solver).__name__} is stochastic and does not declare its noise draws "
            "(Solver.noise_draws), so they cannot be drawn before the compiled steps"
        )
    if why is not None:
        raise ConfigError(f"compile=True cannot capture this solve: {why}")


def _tape(flow, solver, ctl, ctx, x: Tensor, lands: bool) -> TapeNoise:
    """Every step's noise, drawn now from the solve's source in the eager order (an empty tape
    for a deterministic solver: a draw it did not declare is refused). A landing by the
    denoising step draws nothing: by the endpoint rule's own test, which also holds for a solver
    with a stage past the start on a flow with reciprocal stages (not only for a stage at the
    end: such a landing drew its step's noise here, and the solve was refused as one whose
    declaration does not match its draws)."""
    kinds = solver.noise_draws()
    calls = []
    for t, h in zip(ctl.ts[:-1], ctl.hs, strict=True):
        calls += [(kind, t, t + h) for kind in kinds]
    if lands and not solver.evaluates_at_end:  # (a stage at the end lands by denoising)
        if not lands_by_denoising(solver, flow):  # the solver's own last step onto 0
            calls += [(kind, ctl.t_stop, ctl.t_stop - ctl.t_stop) for kind in kinds]
    return TapeNoise.record(ctx.noise, calls, x)


def _body(flow, solver, ctl, schedule, x, state, ctx, counts, track: bool):
    """The compiled part: the steps and the landing step (no Python decision on device values).
    Also returns the state the landing started from (``None`` without a landing): a sample whose
    landing is not finite keeps it."""
    traj = trajectory_buffer(schedule, ctl, x)
    sums = [] if track else None
    x, state, done = steps(flow, solver, ctl, x, state, ctx, counts, sums, traj, None, None)
    x_stop = None
    if schedule.lands:
        x_stop = x
        x = land_all(flow, solver, ctl, x, state, ctx, counts)
    return x, x_stop, traj, (torch.stack(sums) if sums else None), done


def _fresh_copy(fn):
    """``fn`` with its own code object: torch.compile caches per code object, so each cached
    solve gets its own compile cache (and recompile budget)."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{len(_CACHE)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _key(flow, solver, schedule, x, options: dict, track):
    # the callables the flow evaluates (predictor, drift, model): one cache entry each
    held = tuple(sorted(id(v) for v in vars(flow).values() if callable(v)))
    return (
        id(type(flow)),
        held,
        type(solver),
        repr(solver),
        schedule.signature(),
        tuple(x.shape),
        x.dtype,
        str(x.device),
        tuple(sorted((k, repr(v)) for k, v in options.items())),
        track,
    )


def run_compiled(options: dict, flow, solver, ctl, schedule, x, state, ctx, counts, track: bool):
    """Run the steps (and the landing) compiled; returns ``(x, x_stop, traj, sums, steps)``
    (``x_stop``: the state the landing started from, or ``None``)."""
    tape = _tape(flow, solver, ctl, ctx, x, schedule.lands)
    ctx.noise = tape
    key = _key(flow, solver, schedule, x, options, track)
    fn = _CACHE.get(key)
    if fn is None:
        fn = torch.compile(_fresh_copy(_body), fullgraph=True, dynamic=False, **options)
        _CACHE[key] = fn
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    graphs = options.get("mode") in ("reduce-overhead", "max-autotune")
    if graphs:
        torch.compiler.cudagraph_mark_step_begin()
    # Dirac's guidance differentiates Φ inside a step (torch.autograd.grad): let dynamo trace it
    try:
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            x, x_stop, traj, sums, done = fn(
                flow, solver, ctl, schedule, x, state, ctx, counts, track
            )
    except torch._dynamo.exc.Unsupported as e:  # raised while tracing, before any step runs
        _CACHE.pop(key, None)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(
            f"compile=True could not capture this solve with torch {torch.__version__}: {reason} "
            "(tested on torch >= 2.13); use compile=False"
        ) from e
    tape.check()
    if graphs:  # CUDA-graph outputs are overwritten by the next replay: keep copies
        x = x.clone()
        x_stop = None if x_stop is None else x_stop.clone()
        traj = None if traj is None else traj.clone()
        sums = None if sums is None else sums.clone()
        for values in ctx.records.values():
            values[:] = [v.clone() for v in values]
    return x, x_stop, traj, sums, done
