"""Schedules: endpoint values, exact derivatives vs finite differences, typed errors."""

import math

import pytest
import torch

from flowrestore.errors import ConfigError
from flowrestore.schedules import Constant, Geometric, Linear, PiecewiseLinear

T = torch.tensor([0.0, 0.1, 0.37, 0.5, 0.83, 1.0], dtype=torch.float64)


def schedules():
    return [
        Geometric(0.01, 0.5),
        Geometric(2.0, 0.1),
        Linear(0.3, 3.0),
        Constant(0.7),
        PiecewiseLinear([0.0, 0.25, 0.6, 1.0], [0.3, 0.5, 1.4, 3.0]),
    ]


def test_geometric_values_and_endpoints():
    s = Geometric(0.01, 0.5)
    zero, one = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    assert float(s(zero)) == pytest.approx(0.01, rel=1e-14)
    assert float(s(one)) == pytest.approx(0.5, rel=1e-14)
    assert s(0.0).dtype == torch.get_default_dtype()  # a python float t gives the default dtype
    expect = 0.01 ** (1 - T) * 0.5**T
    torch.testing.assert_close(s(T), expect, rtol=1e-12, atol=0)


@pytest.mark.parametrize("s", schedules(), ids=repr)
def test_derivative_matches_central_difference(s):
    h = 1e-6
    t = torch.tensor([0.05, 0.3, 0.5, 0.71, 0.95], dtype=torch.float64)  # away from knots
    fd = (s(t + h) - s(t - h)) / (2 * h)
    torch.testing.assert_close(s.derivative(t), fd, rtol=1e-6, atol=1e-8)
    fd_var = (s(t + h) ** 2 - s(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(s.variance_derivative(t), fd_var, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("s", schedules(), ids=repr)
def test_float_and_tensor_t_agree(s):
    for t in (0.0, 0.42, 1.0):
        v = s(t)
        assert isinstance(v, torch.Tensor) and v.dim() == 0
        assert float(v) == pytest.approx(
            float(s(torch.tensor([t], dtype=torch.float64))[0]), rel=1e-6
        )


def test_linear_and_constant_exact():
    torch.testing.assert_close(Linear(0.3, 3.0)(T), 0.3 + 2.7 * T)
    torch.testing.assert_close(Linear(0.3, 3.0).derivative(T), torch.full_like(T, 2.7))
    torch.testing.assert_close(Constant(0.7)(T), torch.full_like(T, 0.7))
    assert bool((Constant(0.7).derivative(T) == 0).all())


def test_piecewise_linear_hits_knots_and_segment_slopes():
    s = PiecewiseLinear([0.0, 0.25, 1.0], [1.0, 2.0, 0.5])
    torch.testing.assert_close(
        s(torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)),
        torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
    )
    d = s.derivative(torch.tensor([0.1, 0.25, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(d, torch.tensor([4.0, -2.0, -2.0, -2.0], dtype=torch.float64))
    assert not s.is_monotone() and s.is_positive()


def test_tensor_parameter_gets_gradient():
    start = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    s = Geometric(start, 0.5)
    s(torch.tensor([0.3], dtype=torch.float64)).sum().backward()
    assert start.grad is not None and math.isfinite(float(start.grad)) and float(start.grad) != 0


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_geometric_needs_positive(bad):
    with pytest.raises(ConfigError, match="start"):
        Geometric(bad, 0.5)
    with pytest.raises(ConfigError, match="end"):
        Geometric(0.5, bad)


@pytest.mark.parametrize("t", [-0.01, 1.5, float("nan"), torch.tensor([0.2, 1.1])])
def test_t_outside_unit_interval(t):
    with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
        Geometric(0.01, 0.5)(t)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        Linear(0.0, 1.0).derivative(t)


def test_positivity_flags_and_piecewise_validation():
    assert Geometric(0.01, 1.0).is_positive()
    assert not Linear(0.0, 1.0).is_positive()
    assert not Constant(0.0).is_positive()
    # the same with tensor parameters (per-sample values), positive below 1 included
    small = torch.tensor([0.01, 0.5], dtype=torch.float64)
    assert Geometric(small, torch.tensor([1.0, 2.0])).is_positive()
    assert Linear(small, torch.tensor(0.3)).is_positive() and Constant(small).is_positive()
    assert not Linear(small, torch.tensor([0.3, -0.1])).is_positive()
    assert not Constant(torch.tensor([0.2, 0.0])).is_positive()
    with pytest.raises(ConfigError, match="start > 0"):
        Geometric(torch.tensor([0.5, 0.0]), 1.0)
    with pytest.raises(ConfigError, match="strictly increasing"):
        PiecewiseLinear([0.0, 0.5, 0.5, 1.0], [0, 1, 2, 3])
    with pytest.raises(ConfigError, match="start at 0 and end at 1"):
        PiecewiseLinear([0.1, 1.0], [0, 1])
    with pytest.raises(ConfigError, match="same shape"):
        PiecewiseLinear([0.0, 1.0], [0, 1, 2])
    with pytest.raises(ConfigError, match="start"):
        Linear("a", 1.0)


def test_callable_schedule_central_differences():
    """A callable becomes a FunctionSchedule: value as given, slope and d(v²)/dt by central
    differences (O(h²) inside, one-sided at 0 and 1), and a float64 probe checks it once."""
    from flowrestore.schedules import FunctionSchedule, as_schedule, check_on_unit_interval

    s = as_schedule(lambda t: 0.3 + t**2, name="width", fd_step=1e-4)
    assert isinstance(s, FunctionSchedule) and as_schedule(s, name="x") is s
    assert isinstance(as_schedule(0.5, name="x"), Constant)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    f = lambda u: 0.3 + u**2  # noqa: E731
    h = 1e-4
    lo, hi = (t - h).clamp_min(0), (t + h).clamp_max(1)  # one-sided at the ends
    torch.testing.assert_close(s(t), f(t))
    torch.testing.assert_close(s.derivative(t), (f(hi) - f(lo)) / (hi - lo), rtol=1e-9, atol=0)
    torch.testing.assert_close(
        s.variance_derivative(t), (f(hi) ** 2 - f(lo) ** 2) / (hi - lo), rtol=1e-9, atol=0
    )
    # ... which is the derivative to O(h²) inside and O(h) at the ends
    torch.testing.assert_close(s.derivative(t), 2 * t, rtol=0, atol=2 * h)
    check_on_unit_interval(s, name="width", positive=True, nondecreasing=True)
    # flat is non-decreasing (up to the finite difference's round-off); falling is not
    for flat in (Constant(0.2), as_schedule(lambda u: 0.2 + 0 * u, name="x")):
        check_on_unit_interval(flat, name="sigma", positive=True, nondecreasing=True)
    with pytest.raises(ConfigError, match="sigma must be non-decreasing"):
        falling = as_schedule(lambda u: 0.2 - 1e-3 * u, name="x")
        check_on_unit_interval(falling, name="sigma", positive=True, nondecreasing=True)
    with pytest.raises(ConfigError, match=r"width\(t\) must accept a tensor"):
        check_on_unit_interval(as_schedule(lambda t: float(t), name="width"), name="width")
    with pytest.raises(ConfigError, match="must be a Schedule, a callable"):
        as_schedule("linear", name="width")


def test_a_schedule_is_asked_only_for_times_in_the_closed_unit_interval():
    """Calling a schedule at a time just outside ``[0, 1]`` (number or tensor) is refused, naming
    the argument; the interval's ends are times."""
    s = Linear(0.1, 0.5)
    for t in (1.0005, -1e-6, torch.tensor([0.5, 1.0005]), torch.tensor([-1e-6])):
        with pytest.raises(ConfigError, match=r"t must lie in \[0, 1\]"):
            s(t)
    assert float(s(1.0)) == pytest.approx(0.5) and float(s(0.0)) == pytest.approx(0.1)
    torch.testing.assert_close(s(torch.tensor([0.0, 1.0])), torch.tensor([0.1, 0.5]))
