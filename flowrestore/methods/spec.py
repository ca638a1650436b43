"""What a trained predictor is for: :class:`ModelSpec`, read from its metadata or its training
config. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flowrestore.errors import ArgumentTypeError, ConfigError, ShapeError, describe
from flowrestore.methods.base import Method
from flowrestore.methods.registry import get_method
from flowrestore.tasks import Task, get_task

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """What a trained predictor is for: ``method``, ``task`` with resolved ``params``, the
    method's ``settings`` and the model's ``name``.

    Built by :meth:`of` or :meth:`from_train_config`, which refuse, naming the key, an unknown
    method or task, a bad task parameter, and settings the method lacks or cannot use
    (:attr:`Method.settings_keys`, :attr:`Method.check_settings`) — before any flow is built.
    """

    method: Method
    task: Task
    params: dict
    settings: dict = field(default_factory=dict)
    name: str = ""

    @classmethod
    def of(cls, model_or_meta) -> ModelSpec:
        """The spec of a shipped predictor (its ``.metadata``) or of a registry entry (a dict)."""
        if isinstance(model_or_meta, ModelSpec):
            return model_or_meta
        meta = model_or_meta
        if not isinstance(meta, dict):
            meta = getattr(model_or_meta, "metadata", None)
        if not isinstance(meta, dict) or "method" not in meta or "task" not in meta:
            raise ConfigError(
                "expected a shipped predictor (with .metadata) or its registry entry, "
                f"got {describe(model_or_meta)}"
            )
        name = meta.get("name")
        return cls._build(meta, lambda method: _settings_block(meta, method), _name(name))

    @classmethod
    def from_train_config(cls, config: Mapping, *, name: str = "") -> ModelSpec:
        """The spec of a predictor trained with ``config`` (a trainer config as a dict)."""
        return cls._build(config, lambda method: method.settings_from_config(config), _name(name))

    @classmethod
    def _build(cls, d: Mapping, settings, name: str) -> ModelSpec:
        """From a dict naming ``method``, ``task`` and ``task_params``; ``settings(method)``."""
        if not isinstance(d, Mapping) or "method" not in d or "task" not in d:
            raise ConfigError(
                f"a model spec needs a dict with 'method' and 'task', got {describe(d)}"
            )
        method, task = get_method(d["method"]), get_task(d["task"])
        params = task.resolve(d.get("task_params"))
        own = settings(method)
        missing = [k for k in method.settings_keys if k not in own]
        if missing:
            raise ConfigError(
                f"a {method.name} predictor needs the settings {list(method.settings_keys)} "
                f"(a registry entry's {method.name!r}, a trainer config's keys); missing "
                f"{missing}, got {describe(own)}"
            )
        if method.check_settings is not None:
            method.check_settings(own)
        return cls(method=method, task=task, params=params, settings=own, name=name)

    def metadata(self) -> dict:
        """The ``metadata`` dict of a predictor with this spec (the registry's entry format)."""
        meta = {
            "name": self.name,
            "method": self.method.name,
            "task": self.task.name,
            "task_params": dict(self.params),
        }
        if self.settings:
            meta[self.method.name] = dict(self.settings)
        return meta

    @property
    def input_noise(self) -> float:
        """The std of the noise the predictor expects on its input."""
        return float(self.method.input_noise(self))

    def expects(self) -> str:
        """In words: the input the predictor was trained on and what it does to other inputs."""
        return self.task.describe(self.params, noise=self.input_noise)

    @property
    def scale(self) -> int:
        """Output size over input size when restoring a file (``sr4``: the factor)."""
        return int(self.task.scale(self.params))

    def prepare(self, y):
        """The model input for a file's pixels ``y`` ``[B, C, h, w]`` (``sr4``: upsampled)."""
        return y if self.task.prepare is None else self.task.prepare(y, self.params)

    def flow(self, network, **kwargs):
        """The flow the predictor ``network`` was trained for (``kwargs`` go to the flow)."""
        return self.method.build_flow(network, self, **kwargs)

    def observe(self, x, generator=None):
        """Clean images ``x`` ``[B, C, H, W]`` degraded the way the training data was."""
        import torch

        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            raise ArgumentTypeError(
                f"x must be a floating-point tensor [B, C, H, W], got {describe(x)}"
            )
        if x.dim() != 4:
            raise ShapeError(f"x must be a batch of images [B, C, H, W], got {describe(x)}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(
                f"generator must be a torch.Generator or None, got {describe(generator)}"
            )
        return self.method.observe(self, x, generator)


def _settings_block(meta: Mapping, method: Method) -> dict:
    """A registry entry's settings of ``method`` (its ``meta[method.name]``: a dict, or absent)."""
    block = meta.get(method.name)
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ConfigError(
            f"a {method.name} predictor's settings {method.name!r} must be a dict of "
            f"{list(method.settings_keys) or 'settings'}, got {describe(block)}"
        )
    return dict(block)


def _name(name) -> str:
    """A model's name: a string, or ``None`` for none (``""``, not ``str(None)``)."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise ConfigError(f"a model's name must be a string, got {describe(name)}")
    return name
