"""The loop's per-step context: what a solver's step may see besides ``(t, x, h, state)``.

:class:`StepContext` implements :class:`flowrestore.solvers.base.Context`: the run's noise source,
the batch rows being stepped (per-sample control steps a subset), the step index and the per-step
records (``Solution.records``). Solvers read it; flows never see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from flowrestore.noise import GeneratorNoise, NoiseSource

__all__ = ["StepContext"]


@dataclass
class StepContext:
    """The run's noise, the rows being stepped, the step index and per-step records."""

    noise: NoiseSource = field(default_factory=GeneratorNoise)
    index: Tensor | None = None
    step_index: int = 0
    records: dict[str, list[Tensor]] = field(default_factory=dict)

    def record(self, name: str, value: Tensor) -> None:
        """Append a per-step value (e.g. a data-consistency norm) to ``Solution.records[name]``."""
        self.records.setdefault(name, []).append(value.detach())
