"""Count host synchronisations on the CPU: the ops that would make a CUDA stream wait for the host.

:class:`SyncCounter` is a ``TorchDispatchMode`` that counts every aten op that reads a device
value on the host or has an output shape that depends on device data — on CUDA each one stalls the
GPU until the host has the value, and none can be captured in a CUDA graph:

* ``_local_scalar_dense`` (``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``.tolist()``),
  ``is_nonzero``, ``equal``;
* ``nonzero``, ``_unique2``/``unique_*``, ``masked_select``, ``repeat_interleave`` with tensor
  repeats;
* indexing with a boolean mask (``x[mask]``, ``x[mask] = v``: a hidden ``nonzero``).

The same ops run on CPU and CUDA, so a count of 0 on the CPU means 0 on the GPU. Use::

    with SyncCounter() as sc:
        ...
    sc.count, sc.ops   # total, and a Counter of op names

:class:`HostWork` counts the other way a GPU step waits for the host: work on a CPU tensor
(building a table, a kernel, a copy of a CPU mask) inside a step whose state lives on another
device — on CUDA a copy from pageable host memory makes the stream wait. Run the solve with its
state on the ``meta`` device (shapes only, on any machine) and every op that takes a CPU tensor of
one or more dimensions is host work.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import flowrestore.integrate.loop as loop_module
from flowrestore.noise import NoiseSource

_SYNC_OPS = {
    "aten::_local_scalar_dense",
    "aten::is_nonzero",
    "aten::equal",
    "aten::nonzero",
    "aten::nonzero_static",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::unique_dim_consecutive",
    "aten::masked_select",
    "aten::repeat_interleave",
}
_INDEX_OPS = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}


def _has_bool_index(args) -> bool:
    for a in args:
        if isinstance(a, (list, tuple)):
            if _has_bool_index(a):
                return True
        elif isinstance(a, torch.Tensor) and a.dtype == torch.bool:
            return True
    return False


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops inside the ``with`` block that :meth:`label` names."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    @property
    def count(self) -> int:
        """Total number of counted ops."""
        return sum(self.ops.values())

    def label(self, func, args, kwargs) -> str | None:
        """The name to count ``func(*args, **kwargs)`` under, or ``None``."""
        raise NotImplementedError

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = self.label(func, args, kwargs)
        if name is not None:
            self.ops[name] += 1
        return func(*args, **kwargs)


class SyncCounter(_OpCounter):
    """Counts host-synchronising aten ops run inside the ``with`` block (module docstring)."""

    def label(self, func, args, kwargs) -> str | None:
        """The op's name if it synchronises."""
        name = func._schema.name
        if name in _SYNC_OPS:
            if name != "aten::repeat_interleave" or isinstance(
                kwargs.get("repeats", args[1] if len(args) > 1 else None), torch.Tensor
            ):
                return name
        elif name in _INDEX_OPS and len(args) > 1 and _has_bool_index(args[1:2]):
            return name + "[bool mask]"
        return None


class HostWork(_OpCounter):
    """Counts aten ops that take a CPU tensor with ≥ 1 dimension (module docstring): with the
    state on the ``meta`` device, host work or a host-to-device copy. 0-dim CPU tensors are
    scalars passed to the kernel, not copies."""

    def label(self, func, args, kwargs) -> str | None:
        """The op and the CPU tensor's shape, if it takes one."""
        for a in (*args, *kwargs.values()):
            for t in a if isinstance(a, (list, tuple)) else (a,):
                if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dim() > 0:
                    return f"{func._schema.name}{tuple(t.shape)}"
        return None


def cuda_syncs(fn) -> int:
    """Synchronisations of ``fn()`` on CUDA: the warnings of
    ``torch.cuda.set_sync_debug_mode("warn")`` (pending work is finished first)."""
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(c.message).lower() for c in caught)


class ZeroNoise(NoiseSource):
    """A noise source whose draws are zeros made on the state's device (a stand-in for a
    device generator: no host-side draw to copy in)."""

    def normal(self, like, index=None):
        return torch.zeros_like(like)


@contextlib.contextmanager
def loop_work(monkeypatch):
    """Host work inside the step loop (planning and the final checks are not counted): a
    :class:`HostWork` that counts while ``flowrestore.integrate.loop.steps`` runs."""
    seen = HostWork()
    steps = loop_module.steps

    def counted(*a, **k):
        with seen:
            return steps(*a, **k)

    monkeypatch.setattr(loop_module, "steps", counted)
    yield seen
