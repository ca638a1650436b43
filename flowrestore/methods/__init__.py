"""The restoration methods: one record per method, and what a trained predictor was trained for.

A :class:`Method` says everything the product layer (restore, demo, the shipped predictors, the
command line) needs to know about a method, so that nothing else switches on its name:

* the flow it integrates over a predictor (:attr:`Method.build_flow`: InDI's residual ODE
  ``dx/dt = (x − F(x, t))/t``, InDI's "residual flow ODE"; Dirac's reverse SDE, DiracDiffusion
  eqs. 6–11);
* the solvers the command line offers for it, with their descriptions (:attr:`Method.solvers`),
  its default solver and output;
* its training objective (the loss: :mod:`flowrestore.training.objectives`);
* the settings a checkpoint records beyond the task (Dirac: ``σ_min``, ``σ_max``, look-ahead),
  the noise level a model of it expects on its input, and how to degrade clean images the way it
  was trained (:attr:`Method.observe`);
* the settings the demo and the registry's held-out scores run (:class:`Showcase`).

A :class:`ModelSpec` is what a trained predictor is for: a method, a task (:mod:`flowrestore.tasks`)
with its parameters, and the method's settings; :meth:`ModelSpec.of` reads it from a shipped
predictor's ``metadata`` or a registry entry, :meth:`ModelSpec.from_train_config` from a trainer
checkpoint's config.

Layout: :mod:`.base` (the record types), one module per method (:mod:`.indi`, :mod:`.dirac`: the
record and its builders), :mod:`.registry` (:data:`METHODS` and the command line's solver names),
:mod:`.spec` (:class:`ModelSpec`), :mod:`.flows` (the flows over trained image predictors). Adding a
method is one module with its :class:`Method` record and one entry in :data:`METHODS`, keyed by the
record's name (:func:`get_method` refuses another key). A method trained here also needs its
objective: a class in :mod:`flowrestore.training.objectives` and its entry in that module's
``OBJECTIVES`` table, which is what ``TrainConfig`` and the trainer read (the record's
:attr:`Method.objective` names the same class). Nothing here imports torch until a flow, solver or
objective is built, so the command line's help and usage errors answer without it.
"""

from flowrestore.methods.base import IMAGE_RANGE, Method, Showcase, SolverChoice
from flowrestore.methods.registry import (
    METHODS,
    get_method,
    make_solver,
    method_names,
    solver_names,
    solver_table,
)
from flowrestore.methods.spec import ModelSpec

__all__ = [
    "SolverChoice",
    "Showcase",
    "Method",
    "ModelSpec",
    "METHODS",
    "get_method",
    "method_names",
    "solver_names",
    "solver_table",
    "make_solver",
    "IMAGE_RANGE",
]
