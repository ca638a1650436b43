"""The registry of methods: :data:`METHODS` (one record per method) and the solver names it
gives the command line. Adding a method is one module with its record and one entry here."""

from __future__ import annotations

from flowrestore.errors import ConfigError, describe
from flowrestore.methods.base import Method
from flowrestore.methods.dirac import DIRAC
from flowrestore.methods.indi import INDI

__all__ = [
    "METHODS",
    "get_method",
    "method_names",
    "solver_names",
    "solver_table",
    "make_solver",
]

METHODS: dict[str, Method] = {m.name: m for m in (INDI, DIRAC)}


def method_names() -> tuple[str, ...]:
    """The names of :data:`METHODS`, in order."""
    return tuple(METHODS)


def get_method(name) -> Method:
    """The :class:`Method` named ``name``; a :class:`ConfigError` lists the names otherwise."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ConfigError(f"method must be one of {method_names()}, got {describe(name)}")
    if not isinstance(method, Method):
        raise ConfigError(f"METHODS[{name!r}] must be a Method record, got {describe(method)}")
    if method.name != name:
        # a spec would record the record's own name, which then names another method or none
        raise ConfigError(
            f"METHODS[{name!r}] holds the Method named {method.name!r}: key each record by its name"
        )
    return method


def solver_table() -> dict[str, tuple[tuple[str, ...], str]]:
    """Every command-line solver name → (the methods it applies to, its description)."""
    table: dict[str, tuple[tuple[str, ...], str]] = {}
    for m in METHODS.values():
        for s in m.solvers:
            methods, text = table.get(s.name, ((), s.description))
            table[s.name] = ((*methods, m.name), text)
    return table


def solver_names() -> tuple[str, ...]:
    """Every command-line solver name, in the order of the records."""
    return tuple(solver_table())


def make_solver(name: str, method: str = "indi"):
    """The solver object for a command-line name, checked against the predictor's method."""
    if name not in solver_names():
        raise ConfigError(f"solver must be one of {sorted(solver_names())}, got {describe(name)}")
    return get_method(method).solver(name)
