"""BIRD (flowrestore.inversion) reviewed as a demanding user: no device read in the loop's
operators, no image kept per iteration, a non-finite gradient or final objective reported,
``gradients()``'s and ``run()``'s inputs checked, numpy scalars taken as numbers, the progress
bar closed on an error (review findings, second pass).

Host reads are counted on the CPU with the ``TorchDispatchMode`` of tests/syncs.py (the same ops
synchronise on CUDA)."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
import torch
from syncs import SyncCounter

import flowrestore as fr
from flowrestore.degradations import Blur, GaussianBlur, Inpainting
from flowrestore.errors import ArgumentTypeError, ConfigError, NonFiniteError, ShapeError
from flowrestore.inversion import BlindInversion, BlindOperator, Param
from flowrestore.oracles.diffusion import linear_alphas_cumprod

FLOW = fr.DiffusionFlow(
    lambda x, k: torch.tanh(x) * 0.3, alphas_cumprod=linear_alphas_cumprod(),
    prediction_type="epsilon",
)  # fmt: skip


def counting_flow():
    """A small ε-model diffusion flow and the list its network appends to on every call."""
    calls = []

    def predictor(x, k):
        calls.append(1)
        return torch.tanh(x) * 0.3

    flow = fr.DiffusionFlow(
        predictor, alphas_cumprod=linear_alphas_cumprod(), prediction_type="epsilon"
    )
    return calls, flow


def _inversion(iterations=3, **kwargs):
    kwargs.setdefault(
        "degradation", BlindOperator(GaussianBlur, kernel_size=3, width=Param(1.0, bounds=(0.1, 3)))
    )
    return BlindInversion(FLOW, solver=fr.Heun(), steps=3, iterations=iterations, **kwargs)


def _y(shape=(2, 1, 8, 8)):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ no device read in the loop
def test_a_blind_width_with_no_kernel_size_and_no_upper_bound_is_refused_before_any_work():
    # GaussianBlur took its kernel size from float(width.max()): one host read per BIRD
    # iteration, and a kernel size that followed the other images of the batch
    calls, flow = counting_flow()
    for width in (
        Param(1.0, constraint="positive"),
        Param(1.0, bounds=(0.1, math.inf)),
        Param(1.0, constraint="positive", shared=True),
    ):
        inv = BlindInversion(
            flow, solver=fr.Heun(), steps=3, iterations=3,
            degradation=[BlindOperator(GaussianBlur, width=width), lambda v: v],
        )  # fmt: skip
        with pytest.raises(ConfigError, match=r"(?s)GaussianBlur.*'width'.*kernel_size="):
            inv.run(_y())
    assert calls == []


@pytest.mark.parametrize(
    "degradation",
    [
        BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 2.0))),  # size from the bound
        BlindOperator(GaussianBlur, width=Param(1.0, constraint="positive")),  # refused
        BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, math.inf), shared=True)),
        BlindOperator(GaussianBlur, kernel_size=5, width=Param(1.0, constraint="positive")),
        BlindOperator(GaussianBlur, kernel_size=5, width=Param(1.0, bounds=(0.1, math.inf))),
        BlindOperator(GaussianBlur, kernel_size=5, width=Param(1.0, shared=True)),
        BlindOperator(Blur, kernel=Param(torch.ones(3, 3), constraint="simplex")),
        BlindOperator(Inpainting, mask=Param(torch.ones(1, 8, 8), bounds=(0.0, 1.0))),
    ],
    ids=repr,
)
def test_the_blind_operators_bird_runs_read_the_device_once_per_iteration(degradation):
    # an operator built from a value read on the host is refused before any work, or reads nothing
    def syncs(iterations):
        inv = _inversion(iterations, degradation=degradation)
        try:
            inv.run(_y(), generator=torch.Generator().manual_seed(1))  # warm-up (cached tables)
        except ConfigError as exc:
            assert "kernel_size=" in str(exc)
            return None
        with SyncCounter() as sc:
            inv.run(_y(), generator=torch.Generator().manual_seed(1))
        return sc.count

    many, few = syncs(6), syncs(3)
    assert many == few is None or many - few == 3


def test_an_unbounded_blind_width_reads_the_device_when_built():
    # what the refusal guards: without a kernel size the operator reads the width it is built from
    op = BlindOperator(GaussianBlur, width=Param(1.0, constraint="positive"))
    with SyncCounter() as sc:
        op.materialize(constrained=True, width=torch.ones(2, requires_grad=True))
    assert sc.count >= 1
    with pytest.raises(ConfigError, match="kernel_size="):
        op.check_reads_no_values()
    bounded = BlindOperator(GaussianBlur, width=Param(1.0, bounds=(0.1, 2.0)))
    bounded.check_reads_no_values()
    with SyncCounter() as sc:
        bounded.materialize(constrained=True, width=torch.ones(2, requires_grad=True))
    assert sc.count == 0


# ------------------------------------------------------------------ memory
def test_a_run_keeps_no_image_per_iteration():
    # every iteration's Evaluation (Ψ(z) and H(Ψ(z))) was kept for the history: a run's memory
    # grew by two batches of images per iteration
    shape = (2, 1, 6, 10)

    def live_images():
        return sum(1 for o in gc.get_objects() if type(o) is torch.Tensor and o.shape == shape)

    counts = []
    _inversion(8).run(_y(shape), callback=lambda k, state: counts.append(live_images()))
    assert len(counts) == 8 and counts[-1] == counts[1], counts


# ------------------------------------------------------------------ non-finite values
class _NaNGradient(torch.autograd.Function):
    """0 whose gradient is NaN: a finite objective with a non-finite gradient of φ."""

    @staticmethod
    def forward(ctx, w):
        return torch.zeros_like(w)

    @staticmethod
    def backward(ctx, g):
        return g * torch.nan


@pytest.mark.parametrize("iterations", [1, 3])
def test_a_non_finite_gradient_of_an_unknown_stops_the_run_at_its_iteration(iterations):
    # was unseen: the step made the width NaN, reported one iteration late, or (after the last
    # iteration) returned with a NaN objective and NaN width
    inv = _inversion(iterations, regularizer=lambda p: _NaNGradient.apply(p["width"]))
    with pytest.raises(NonFiniteError, match=f"non-finite.*iteration 1 of {iterations}"):
        inv.run(_y(), generator=torch.Generator().manual_seed(1))


def test_a_non_finite_final_objective_is_reported_not_returned():
    inv = _inversion(0, regularizer=lambda p: -torch.log(p["width"] - 1.0))  # width 1: +inf
    with pytest.raises(NonFiniteError, match="final iterate"):
        inv.run(_y(), generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ gradients()'s inputs
@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (([1.0], "z", {"width": 1.0}), ShapeError, r"y must.*\[1\.0\]"),
        (("int", "z", {"width": 1.0}), ShapeError, "y must.*int64"),
        (("nan", "z", {"width": 1.0}), ConfigError, "y must be finite"),
        (("y", None, {"width": 1.0}), ShapeError, "latent must.*None"),
        (("y", "z3", {"width": 1.0}), ShapeError, r"latent must.*B = 2.*\(3, 1, 8, 8\)"),
        (("y", "z", [1.0]), ArgumentTypeError, r"params must.*\[1\.0\]"),
        (("y", "z", {"width": 1.0, "widht": 2.0}), ConfigError, "'widht'"),
    ],
)
def test_gradients_refuses_bad_inputs_with_a_typed_error_naming_them(args, error, match):
    y = _y()
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    given = {
        "y": y, "int": (y * 10).long(), "nan": y * torch.nan, "z": z, "z3": torch.randn(3, 1, 8, 8)
    }  # fmt: skip
    args = [given.get(a, a) if isinstance(a, str) else a for a in args]
    with pytest.raises(error, match=match):
        _inversion().gradients(*args)


# ------------------------------------------------------------------ numbers
def test_numpy_scalars_are_taken_as_numbers_and_bools_are_not():
    inv = _inversion(np.int64(2), betas=(np.float32(0.9), np.float64(0.999)))
    assert inv.iterations == 2 and type(inv.iterations) is int
    p = Param(np.float32(1.0), bounds=(np.float32(0.5), np.int64(3)), lr=np.float32(0.1))
    assert float(p.init) == 1.0 and p.bounds == (0.5, 3.0) and p.lr == pytest.approx(0.1)
    res = _inversion(2, degradation=BlindOperator(GaussianBlur, kernel_size=3, width=p)).run(_y())
    assert res.history.loss.shape == (3, 2)
    with pytest.raises(ConfigError, match=r"betas.*False"):
        _inversion(betas=(False, 0.9))
    with pytest.raises(ConfigError, match=r"lr.*True"):
        Param(1.0, lr=True)


# ------------------------------------------------------------------ run()'s inputs
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # an empty batch failed inside the sphere projection with an untyped RuntimeError
        ({"y": torch.rand(0, 1, 8, 8)}, ShapeError, r"y must.*\(0, 1, 8, 8\)"),
        ({"y": torch.rand(2, 0, 8, 8)}, ShapeError, r"y must.*\(2, 0, 8, 8\)"),
        # a complex latent was cast to real (imaginary part dropped, a warning)
        (
            {"latent": torch.ones(2, 1, 8, 8, dtype=torch.complex64)},
            ShapeError,
            "latent must be a floating-point.*complex64",
        ),
        # a NaN starting value was blamed on "init", which the user did not give
        ({"params": {"width": math.nan}}, ConfigError, r"params\['width'\].*nan"),
        ({"params": {"width": "wide"}}, ConfigError, r"params\['width'\].*wide"),
        # a truthy string showed a bar
        ({"progress": "no"}, ArgumentTypeError, "progress must be a bool.*'no'"),
    ],
)
def test_run_refuses_bad_inputs_with_a_typed_error_naming_them(kwargs, error, match):
    kwargs = {"y": _y(), **kwargs}
    with pytest.raises(error, match=match):
        _inversion().run(kwargs.pop("y"), **kwargs)


def test_the_progress_bar_is_closed_when_the_run_stops_with_an_error():
    # a NaN (or a callback's error, ^C) left the tqdm bar open for as long as the traceback
    # lived (in a notebook: until the next error), and later bars were drawn below it
    from tqdm.auto import tqdm

    def open_bars():
        return [bar for bar in tqdm._instances if str(bar.desc).startswith("BIRD")]

    inv = _inversion(3, regularizer=lambda p: _NaNGradient.apply(p["width"]))
    with pytest.raises(NonFiniteError) as nan:
        inv.run(_y(), progress=True)
    assert not open_bars(), nan

    def stop(k, state):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as interrupt:
        _inversion(3).run(_y(), progress=True, callback=stop)
    assert not open_bars(), interrupt
