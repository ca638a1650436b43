"""``flowrestore.tensors``: the host-read-free ``repeat_interleave``, and no int
``repeat_interleave`` left in the package (before torch 2.13 it synchronises on CUDA: two host
reads per DDRM / DiffPIR step on a downsampling operator, seen on an H200 with torch 2.11)."""

from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowrestore.tensors import repeat_blocks, repeat_each

PACKAGE = Path(__file__).resolve().parents[1] / "flowrestore"


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    repeats=st.integers(1, 3),
    data=st.data(),
)
def test_repeat_each_is_repeat_interleave(shape, repeats, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
    assert torch.equal(repeat_each(x, repeats, dim), x.repeat_interleave(repeats, dim=dim))


def test_repeat_blocks_is_nearest_upsampling():
    x = torch.arange(24.0).reshape(2, 3, 4)
    want = torch.nn.functional.interpolate(x[None], scale_factor=3, mode="nearest")[0]
    assert torch.equal(repeat_blocks(x, 3), want)


def test_no_int_repeat_interleave_in_the_package():
    hits = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "tensors.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "repeat_interleave(" in line
    ]
    assert not hits, f"use flowrestore.tensors.repeat_each instead: {hits}"
