"""The restoration tasks: one record per task (parameters, operator, family, what a model expects).

A :class:`Task` says everything the rest of the package needs to know about a degradation a
predictor is trained for and applied to:

* its parameters with defaults and validation (:meth:`Task.resolve`);
* the noiseless operator ``A`` (same image size: ``sr4`` re-upsamples) and the degradation
  ``y = A x + noise`` InDI trains on (:meth:`Task.degradation`);
* the severity family ``A_t`` Dirac trains and restores with — a real
  :class:`~flowrestore.degradations.Family` with an exact ``∂_t A_t`` (:meth:`Task.family`):
  ``deblur`` grows the blur width linearly, ``A_t = G_{t·σ}`` (DiracDiffusion, Fabian et al. 2023,
  §3: a Gaussian blur whose width is the severity); the others blend from the identity,
  ``A_t = (1 − t) I + t A`` with ``∂_t A_t x = A x − x`` (:class:`~flowrestore.tasks.blend.
  BlendFamily`; ``sr4`` with nearest upsampling is :class:`~flowrestore.degradations.
  DownsampleFamily`, the same operator);
* how the command line prepares an input (``sr4``: upsample the low-resolution image) and the text
  it shows about what a model expects (:meth:`Task.expects`).

Adding a task is one :class:`Task` entry in :data:`TASKS`, keyed by the record's name
(:func:`get_task` refuses another key); a record is checked when built (its ``noise_param`` one
of its parameters, each default valid, its functions callable). Nothing here imports torch until
an operator or family is built, so the command line's help and usage errors answer without it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flowrestore.errors import ConfigError, describe

__all__ = ["Task", "TaskParam", "TASKS", "get_task", "task_names"]


# ----------------------------------------------------------------------------- parameter checks
def _number_at_least_zero(value) -> bool:
    return (
        isinstance(value, numbers.Real)  # numpy scalars too
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _plain(value):
    """A checked value as plain Python (a numpy scalar becomes an int or a float, so resolved
    parameters stay JSON-plain in checkpoints and registries)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def _quality(value) -> bool:
    return _positive_int(value) and value <= 100


@dataclass(frozen=True)
class TaskParam:
    """One task parameter: its name, default, a predicate on values and what the predicate wants."""

    name: str
    default: object
    valid: Callable[[object], bool]
    wants: str


def _noise_param(name: str = "noise", default: float = 0.0) -> TaskParam:
    return TaskParam(name, default, _number_at_least_zero, "a finite number >= 0")


def _upsample_param() -> TaskParam:
    return TaskParam(
        "upsample",
        "bicubic",
        lambda v: isinstance(v, str) and v in ("bicubic", "bilinear", "nearest"),
        "'bicubic', 'bilinear' or 'nearest'",
    )


@dataclass(frozen=True)
class Task:
    """A restoration task (see the module docstring); its functions take the resolved parameters.

    ``operator(p)``: the noiseless ``A`` (a callable on ``[B, C, H, W]``, same size out);
    ``family(p)``: ``A_t`` with ``A_0 = I`` and ``A_1 = A``; ``noise_param``: the parameter that is
    the std of the Gaussian noise added after ``A``; ``scale(p)``: output size over input size on
    the command line; ``prepare(y, p)``: the model input for a file's pixels ``y`` (default
    ``y``); ``expects(p)`` and ``note``: the input in words and what the model does to others.
    """

    name: str
    summary: str
    params: tuple[TaskParam, ...]
    operator: Callable[[dict], Callable]
    family: Callable[[dict], object]
    expects: Callable[[dict], str]
    note: Callable[[dict], str]
    noise_param: str = "noise"
    scale: Callable[[dict], int] = field(default=lambda p: 1)
    prepare: Callable[[object, dict], object] | None = None

    def __post_init__(self):
        """Refuse a record that would fail only when first used (a new task's typos)."""
        if not (isinstance(self.name, str) and self.name):
            raise ConfigError(f"Task: name must be a non-empty string, got {describe(self.name)}")
        if not all(isinstance(p, TaskParam) for p in self.params):
            raise ConfigError(f"task {self.name}: params must be TaskParam records")
        names = [p.name for p in self.params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"task {self.name}: parameters named more than once: {twice}")
        if self.noise_param not in names:
            raise ConfigError(
                f"task {self.name}: noise_param {self.noise_param!r} is not one of its "
                f"parameters {names}"
            )
        for p in self.params:
            if not p.valid(p.default):
                raise ConfigError(
                    f"task {self.name}: the default of {p.name} must be {p.wants}, got "
                    f"{describe(p.default)}"
                )
        for key in ("operator", "family", "expects", "note", "scale"):
            if not callable(getattr(self, key)):
                raise ConfigError(f"task {self.name}: {key} must be callable(params)")
        if self.prepare is not None and not callable(self.prepare):
            raise ConfigError(f"task {self.name}: prepare must be None or callable(y, params)")

    def resolve(self, params: Mapping | None = None) -> dict:
        """Defaults completed by ``params``, each checked; unknown names are refused."""
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(
                f"{self.name}: params must be a dict of parameter values, got {describe(params)}"
            )
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known), key=repr)  # names of any type
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown parameters {unknown}; accepted: {sorted(known)}"
            )
        out = {p.name: params.get(p.name, p.default) for p in self.params}
        for name, value in out.items():
            if not known[name].valid(value):
                raise ConfigError(
                    f"{self.name}: {name} must be {known[name].wants}, got {describe(value)}"
                )
        return {name: _plain(value) for name, value in out.items()}

    def noise(self, params: Mapping | None = None) -> float:
        """The std of the noise this task's degradation adds (``params`` as :meth:`resolve`)."""
        return float(self.resolve(params)[self.noise_param])

    def degradation(self, params: Mapping | None = None):
        """``deg(x, generator) -> y``: ``A x`` plus Gaussian noise of std :meth:`noise`.

        The callable carries ``.task`` (this task's name) and ``.params`` (resolved).
        """
        from flowrestore.tasks.blend import NoisyDegradation

        p = self.resolve(params)
        return NoisyDegradation(self.operator(p), self.noise(p), task=self.name, params=p)

    def describe(self, params: Mapping, *, noise: float | None = None) -> str:
        """What a model trained on this task expects, in words (``noise``: the std it expects,
        default the task's own: a finite number >= 0)."""
        p = self.resolve(params)
        if noise is not None and not _number_at_least_zero(noise):
            raise ConfigError(
                f"{self.name}: noise must be a finite number >= 0 (the std the model expects), "
                f"got {describe(noise)}"
            )
        sigma = self.noise(p) if noise is None else float(noise)
        return f"{self.expects(p)}, with noise of std {sigma:g}; {self.note(p)}"


# ----------------------------------------------------------------------------- operators (lazy)
def _deblur_operator(p):
    from flowrestore.degradations import GaussianBlur

    return GaussianBlur(float(p["blur_sigma"]))


def _deblur_family(p):
    from flowrestore.degradations import GaussianBlurFamily
    from flowrestore.degradations.blur import default_kernel_size
    from flowrestore.schedules import Linear

    # the kernel of A_1 (±3 std, as the task's operator), kept for every t
    size = default_kernel_size(p["blur_sigma"])
    return GaussianBlurFamily(width=Linear(0.0, float(p["blur_sigma"])), kernel_size=size)


def _sr_operator(p):
    from flowrestore.tasks.blend import DownUp

    return DownUp(p["factor"], p["upsample"])


def _sr_family(p):
    from flowrestore.degradations import DownsampleFamily
    from flowrestore.tasks.blend import BlendFamily

    if p["upsample"] == "nearest":  # U D: the block-average projection, blended linearly
        return DownsampleFamily(factor=p["factor"])
    return BlendFamily(_sr_operator(p))


def _sr_prepare(y, p):
    from flowrestore.tasks.blend import upsample

    h, w = y.shape[-2:]
    return upsample(y, (h * p["factor"], w * p["factor"]), p["upsample"])


def _identity_operator(p):
    from flowrestore.tasks.blend import identity

    return identity


def _identity_family(p):
    from flowrestore.tasks.blend import BlendFamily, identity

    return BlendFamily(identity)


def _jpeg_operator(p):
    from flowrestore.degradations import JPEG

    return JPEG(p["quality"])


def _blend_family_of(operator):
    def build(p):
        from flowrestore.tasks.blend import BlendFamily

        return BlendFamily(operator(p))

    return build


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="deblur",
            summary="Gaussian deblurring (reflect boundary)",
            params=(
                TaskParam("blur_sigma", 2.0, _number_at_least_zero, "a finite number >= 0"),
                _noise_param(default=0.01),
            ),
            operator=_deblur_operator,
            family=_deblur_family,
            expects=lambda p: f"a photo blurred by a Gaussian of std {p['blur_sigma']:g} px",
            note=lambda p: (
                "on a sharp photo it adds halos and ringing, on a stronger blur it sharpens "
                "too little"
            ),
        ),
        Task(
            name="sr4",
            summary="super-resolution: block averaging, then upsampling back to full size",
            params=(
                TaskParam("factor", 4, _positive_int, "a positive int"),
                _upsample_param(),
                _noise_param(),
            ),
            operator=_sr_operator,
            family=_sr_family,
            expects=lambda p: (
                f"an image {p['factor']}x smaller than wanted, made by "
                f"{p['factor']}x{p['factor']} averaging"
            ),
            note=lambda p: (
                f"it is upsampled {p['factor']}x ({p['upsample']}) and restored, so the output "
                f"is {p['factor']}x larger"
            ),
            scale=lambda p: p["factor"],
            prepare=_sr_prepare,
        ),
        Task(
            name="denoise",
            summary="additive Gaussian noise (not clipped)",
            params=(_noise_param("sigma", 0.1),),
            operator=_identity_operator,
            family=_identity_family,
            expects=lambda p: "an image in [0, 1]",
            note=lambda p: "on a cleaner image it smooths away detail",
            noise_param="sigma",
        ),
        Task(
            name="jpeg",
            summary="JPEG compression (Pillow round trip)",
            params=(
                TaskParam("quality", 20, _quality, "an int in [1, 100]"),
                _noise_param(),
            ),
            operator=_jpeg_operator,
            family=_blend_family_of(_jpeg_operator),
            expects=lambda p: f"a JPEG-compressed image (quality {p['quality']})",
            note=lambda p: "on a better-quality image it smooths away detail",
        ),
    )
}


def task_names() -> tuple[str, ...]:
    """The names of :data:`TASKS`, in order."""
    return tuple(TASKS)


def get_task(name) -> Task:
    """The :class:`Task` named ``name``; a :class:`ConfigError` lists the names otherwise."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ConfigError(f"task must be one of {task_names()}, got {describe(name)}")
    if not isinstance(task, Task):
        raise ConfigError(f"TASKS[{name!r}] must be a Task record, got {describe(task)}")
    if task.name != name:
        # a spec, a degradation and a checkpoint would record the record's own name instead
        raise ConfigError(
            f"TASKS[{name!r}] holds the Task named {task.name!r}: key each record by its name"
        )
    return task
