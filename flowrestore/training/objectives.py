"""What a method trains: the batch it draws and the loss it minimises (one class per method).

The trainer (:mod:`.trainer`) is the same loop for every method; an :class:`Objective` is built
once from the run's config and the task record (:mod:`flowrestore.tasks`) and asked for one loss
per step:

* :class:`InDIObjective` — paired patches ``(x, y = A x + noise)`` and InDI's loss
  ``E ||F(x_t, t) − x||_p`` (docs/math.md §1, :func:`~.losses.indi_loss`);
* :class:`DiracObjective` — clean patches and Dirac's incremental-reconstruction loss over the
  task's family ``A_t`` with the geometric noise ``σ_t = σ_min^{1−t} σ_max^t`` (docs/math.md §3,
  eqs. 12/14, :func:`~.losses.dirac_ir_loss`).

A method's record (:data:`flowrestore.methods.METHODS`) names its objective; :data:`OBJECTIVES` is
the table the trainer and :class:`~.trainer.TrainConfig` resolve ``config.method`` in. A new
trainable method is one class here (its loss) and one record there.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from flowrestore.tasks import Task
from flowrestore.training.data import PatchDataset
from flowrestore.training.losses import dirac_ir_loss, indi_loss

__all__ = ["Objective", "InDIObjective", "DiracObjective", "OBJECTIVES"]


class Objective:
    """A method's training objective: ``loss(net, data, batch_size, generator)`` for one step.

    ``pairs``: whether the data set degrades its patches (``PatchDataset(degradation=...)``).
    """

    name: ClassVar[str] = ""
    pairs: ClassVar[bool] = True

    def __init__(self, config, task: Task, tdist):
        self.config, self.task, self.tdist = config, task, tdist
        self.params = task.resolve(config.task_params)

    def degradation(self):
        """The degradation the data set applies to its patches, or ``None`` (clean patches)."""
        return self.task.degradation(self.params) if self.pairs else None

    def loss(self, net, data: PatchDataset, batch_size: int, generator: torch.Generator):
        """Draw one batch from ``data`` and return the loss of ``net`` on it."""
        raise NotImplementedError


class InDIObjective(Objective):
    """InDI: pairs ``(x, y)``, loss ``indi_loss`` with the config's ``loss_p``, ``eps``,
    ``brownian`` and p(t)."""

    name = "indi"
    pairs = True

    def loss(self, net, data, batch_size, generator):
        x, y = data.sample(batch_size, generator)
        c = self.config
        return indi_loss(
            net,
            x,
            y,
            p=c.loss_p,
            tdist=self.tdist,
            eps=c.eps,
            brownian=c.brownian,
            generator=generator,
        )


class DiracObjective(Objective):
    """Dirac: clean patches, loss ``dirac_ir_loss`` over the task's family ``A_t`` with
    ``σ_t = σ_min^{1−t} σ_max^t`` and the config's ``lookahead``."""

    name = "dirac"
    pairs = False

    def __init__(self, config, task, tdist):
        from flowrestore.schedules import Geometric

        super().__init__(config, task, tdist)
        self.family = task.family(self.params)
        self.sigma = Geometric(config.sigma_min, config.sigma_max)

    def loss(self, net, data, batch_size, generator):
        x0 = data.sample_clean(batch_size, generator)
        return dirac_ir_loss(
            net,
            x0,
            A=self.family,
            sigma=self.sigma,
            lookahead=self.config.lookahead,
            tdist=self.tdist,
            generator=generator,
        )


OBJECTIVES: dict[str, type[Objective]] = {c.name: c for c in (InDIObjective, DiracObjective)}
