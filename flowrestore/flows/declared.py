"""Grids and spacings a flow declares for named solvers (issue 16): one home for
``grids=`` and ``spacings=`` on every flow that takes them (:class:`~flowrestore.InDIFlow`,
:class:`~flowrestore.DiffusionFlow`, :class:`~flowrestore.FlowMatchingFlow`,
:class:`~flowrestore.DenoiserFlow`).

Which grid suits a few-step solve depends on the model, which only the model's owner can
measure (:func:`flowrestore.integrate.fit_grids`, :func:`flowrestore.integrate.choose_spacing`):

* ``grids`` — a :class:`~flowrestore.grids.FittedGrids` fitted for one solver at a few step
  counts: ``steps=N`` with that solver runs on them (:meth:`DeclaredGrids.fitted_grids`);
* ``spacings`` — ``{solver class: Spacing}``: ``steps=N`` with a solver of exactly that class
  lays that spacing, with the loop's landing rules (:meth:`DeclaredGrids.declared_spacing`).

Both come after a solver's own fitted grid and before the flow's and the solver's defaults; an
explicit ``spacing=`` or ``grid=`` still wins (:mod:`flowrestore.integrate.endpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from flowrestore.errors import ArgumentTypeError, describe
from flowrestore.grids import FittedGrids, Spacing

__all__ = ["DeclaredGrids", "check_spacings"]


def check_spacings(spacings) -> dict[type, Spacing]:
    """``spacings`` as a dict of classes to spacings (``None``: empty), refused otherwise."""
    if spacings is None:
        return {}
    if not isinstance(spacings, Mapping):
        raise ArgumentTypeError(
            f"spacings must be a dict {{solver class: Spacing}} or None, got {describe(spacings)}"
        )
    for key, value in spacings.items():
        # any other class (fr.Karras, a flow class) was kept and never matched a solver: the
        # declared spacing was silently not used
        if not _is_solver_class(key):
            raise ArgumentTypeError(
                f"spacings keys must be solver classes (e.g. fr.DataIPNDM), got {describe(key)}"
            )
        if not isinstance(value, Spacing):
            raise ArgumentTypeError(
                f"spacings[{key.__name__}] must be a Spacing (e.g. fr.StartRefined(rho=3)), "
                f"got {describe(value)}"
            )
    return dict(spacings)


def _is_solver_class(key) -> bool:
    """Whether ``key`` is a solver class, by the protocol every :class:`~flowrestore.Solver`
    has (``step``, ``init`` and the ``flow_types`` it steps, a class attribute or a property):
    the flows sit below the solvers and cannot import their base class."""
    return (
        isinstance(key, type)
        and all(callable(getattr(key, name, None)) for name in ("step", "init"))
        and isinstance(getattr(key, "flow_types", None), (tuple, property))
    )


class DeclaredGrids:
    """Mixin of the flows that take ``grids=`` and ``spacings=`` (module docstring); list it
    before the flow's base class so that its methods answer the loop's questions."""

    #: grids fitted for one solver (``None``: none)
    grids: FittedGrids | None = None
    #: spacings declared per solver class
    spacings: Mapping[type, Spacing] = MappingProxyType({})

    def _declare_grids(self, grids, spacings) -> None:
        """Validate and keep ``grids`` and ``spacings`` (refused with their value)."""
        if grids is not None and not isinstance(grids, FittedGrids):
            raise ArgumentTypeError(f"grids must be a FittedGrids or None, got {describe(grids)}")
        self.grids = grids
        self.spacings = check_spacings(spacings)

    def fitted_grids(self) -> FittedGrids | None:
        """The ``grids`` given (:meth:`Flow.fitted_grids <flowrestore.flows.Flow.fitted_grids>`)."""
        return self.grids

    def declared_spacing(self, solver):
        """The ``spacings`` entry for ``solver``'s class, else the flow's ``default_spacing()``
        (:meth:`Flow.declared_spacing <flowrestore.flows.Flow.declared_spacing>`)."""
        return self.spacings.get(type(solver)) or self.default_spacing()
