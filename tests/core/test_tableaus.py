"""Every Butcher tableau satisfies the order conditions of its declared order, algebraically.

Butcher's theory: an explicit RK method has order ``p`` iff ``Σ_i b_i Φ_i(τ) = 1/γ(τ)`` for every
rooted tree ``τ`` with at most ``p`` nodes, where the elementary weight of ``τ = [τ_1, …, τ_m]``
is ``Φ_i(τ) = Π_k Σ_j a_ij Φ_j(τ_k)`` (``Φ_i(•) = 1``) and its density
``γ(τ) = |τ| Π_k γ(τ_k)`` (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.2). The embedded
weights ``b̂ = b − b_error`` must satisfy them up to the error estimate's order. The checks also
require that some tree of order ``p + 1`` fails, so a declared order cannot be understated.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from flowrestore.solvers import tableau as T

TABLEAUS = {
    "Euler": T.EULER,
    "Midpoint": T.MIDPOINT,
    "Heun": T.HEUN,
    "RK4": T.RK4_TABLEAU,
    "Bosh3": T.BOSH3,
    "Dopri5": T.DOPRI5,
}


@cache
def trees(n: int) -> tuple:
    """All rooted trees with ``n`` nodes, each a sorted tuple of its subtrees."""
    if n == 1:
        return ((),)
    out = set()

    def build(remaining: int, max_child, children):
        if remaining == 0:
            out.add(tuple(sorted(children)))
            return
        for k in range(1, remaining + 1):
            for sub in trees(k):
                key = (k, sub)
                if max_child is not None and key > max_child:
                    continue
                build(remaining - k, key, [*children, (k, sub)])

    build(n - 1, None, [])
    return tuple(sorted(out))


def _order(tree) -> int:
    return 1 + sum(k for k, _ in tree)


def _gamma(tree) -> float:
    g = float(_order(tree))
    for _, sub in tree:
        g *= _gamma(sub)
    return g


def _phi(tree, A: np.ndarray) -> np.ndarray:
    out = np.ones(A.shape[0])
    for _, sub in tree:
        out = out * (A @ _phi(sub, A))
    return out


def _matrix(tab) -> np.ndarray:
    s = len(tab.c)
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a, start=1):
        A[i, : len(row)] = row
    return A


def _residuals(b, A, order: int) -> list[float]:
    return [float(np.dot(b, _phi(t, A)) - 1.0 / _gamma(t)) for t in trees(order)]


def test_tree_counts():
    """The enumeration is right: 1, 1, 2, 4, 9, 20 rooted trees with 1..6 nodes."""
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]


@pytest.mark.parametrize("name", list(TABLEAUS))
def test_order_conditions(name):
    tab = TABLEAUS[name]
    A, b = _matrix(tab), np.array(tab.b)
    assert np.allclose(A.sum(1), tab.c, atol=1e-15), "row sums must equal c"
    for n in range(1, tab.order + 1):
        worst = max(abs(r) for r in _residuals(b, A, n))
        assert worst < 1e-13, f"{name}: order-{n} condition violated by {worst:.2e}"
    beyond = max(abs(r) for r in _residuals(b, A, tab.order + 1))
    assert beyond > 1e-6, f"{name} satisfies order {tab.order + 1}: its declared order is low"


@pytest.mark.parametrize("name", [k for k, t in TABLEAUS.items() if t.b_error is not None])
def test_embedded_order_conditions(name):
    tab = TABLEAUS[name]
    A = _matrix(tab)
    b_hat = np.array(tab.b) - np.array(tab.b_error)
    for n in range(1, tab.error_order + 1):
        worst = max(abs(r) for r in _residuals(b_hat, A, n))
        assert worst < 1e-13, f"{name} embedded: order-{n} condition violated by {worst:.2e}"
    beyond = max(abs(r) for r in _residuals(b_hat, A, tab.error_order + 1))
    assert beyond > 1e-6, f"{name} embedded weights satisfy order {tab.error_order + 1}"


def test_order_check_catches_a_fourth_digit_change():
    """A coefficient changed in the 4th significant digit breaks an order condition."""
    tab = T.BOSH3
    b, b_hat = np.array(tab.b), np.array(tab.b) - np.array(tab.b_error)
    A = _matrix(tab)
    A[2, 1] *= 1.0001  # a_32 = 0.75 -> 0.750075
    assert max(abs(r) for n in range(1, 4) for r in _residuals(b, A, n)) > 1e-6
    b_bad = b_hat.copy()
    b_bad[1] *= 1.0001  # b̂_2 = 1/4 -> 0.250025
    assert max(abs(r) for r in _residuals(b_bad, _matrix(tab), 1)) > 1e-6
