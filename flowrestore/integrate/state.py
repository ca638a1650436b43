"""Row selection and merging of solver state and of the loop's state, for per-sample control.

A solver's state is ``None``, a tensor, a (frozen) dataclass, or a tuple/list of these. The loop
never looks inside it except through these functions:

* :func:`~flowrestore.flows.base.select_rows` — the state of the rows being stepped (the same
  rule :meth:`Flow.restrict <flowrestore.flows.Flow.restrict>` applies to a flow's per-sample
  fields);
* :func:`merge_rows` — after a step, take the new state where the step was accepted and the old
  one elsewhere, writing it back into the full batch's rows;
* :func:`merge_x` — the same for the integrated state itself, in place when the loop owns it.

Tensors with a leading batch dimension are per-sample; 0-d tensors are shared by every sample
(a fixed grid's times) and pass through, as does any other object.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from flowrestore.flows.base import bcast, select_rows

__all__ = ["merge_rows", "merge_x", "select_rows"]


def _fields(state):
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def merge_rows(full, new, accept: Tensor | None, rows: Tensor | None):
    """``full`` with rows ``rows`` replaced by ``new`` where ``accept`` (a ``[len(rows)]`` mask).

    ``accept=None`` accepts every row; ``rows=None`` means every row of the batch. Rejected rows
    keep ``full``'s values. Returns the merged state (tensors of ``full`` are not modified in
    place).
    """
    if accept is None and rows is None:
        return new
    if new is None:
        return full
    if isinstance(new, Tensor):
        if new.dim() == 0 or not isinstance(full, Tensor) or full.dim() == 0:
            return new if full is None or accept is None else full
        old = full if rows is None else full[rows]
        part = new if accept is None else torch.where(bcast(accept, new), new, old)
        if rows is None:
            return part
        out = full.clone()
        out[rows] = part
        return out
    if full is None:
        return new
    if dataclasses.is_dataclass(new) and not isinstance(new, type):
        old = _fields(full)
        return dataclasses.replace(
            new, **{k: merge_rows(old[k], v, accept, rows) for k, v in _fields(new).items()}
        )
    if isinstance(new, (tuple, list)):
        return type(new)(merge_rows(o, v, accept, rows) for o, v in zip(full, new, strict=True))
    return new


def merge_x(x: Tensor, x_new: Tensor, accept: Tensor | None, rows: Tensor | None) -> Tensor:
    """``x`` with the stepped ``rows`` set to ``x_new`` where accepted, written into ``x`` in place
    for a subset of rows (the caller owns ``x``: :func:`flowrestore.integrate.loop.run` copies the
    start state before the first such write)."""
    if accept is None and rows is None:
        return x_new
    old = x if rows is None else x[rows]
    part = x_new if accept is None else torch.where(bcast(accept, x_new), x_new, old)
    if rows is None:
        return part
    x[rows] = part
    return x
