"""``flowrestore restore --compile`` (issue 17, item 3): the solver steps compiled once per input
shape — whole images and tiles alike — write the same files as the eager run.

Compiled with dynamo's ``eager`` backend (the tracing is what is tested; inductor's code is
torch's). The command line's flag reaches ``restore_files`` as ``compile=True``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import flowrestore.restore as restore_mod
from flowrestore.cli import main
from flowrestore.integrate import compiled as compiled_module
from flowrestore.restore import load_model, restore_files

pytestmark = pytest.mark.usefixtures("keep_threads")


def _run(src, out, **kw):
    return restore_files(
        [src], out, model=load_model("indi-deblur", device="cpu"), steps=2, device="cpu",
        progress=False, log=lambda *_: None, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("tile", [0, 48], ids=["whole", "tiled"])
def test_compiled_restore_writes_the_eager_files(tmp_path, tile):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    compiled_module._CACHE.clear()
    kw = {"tile": tile, "overlap": 8 if tile else None}
    eager = _run(tmp_path / "a.png", tmp_path / "eager", **kw)
    comp = _run(tmp_path / "a.png", tmp_path / "comp", compile={"backend": "eager"}, **kw)
    assert len(eager.restored) == len(comp.restored) == 1
    assert len(compiled_module._CACHE) >= 1  # the compiled path ran
    with (
        Image.open(tmp_path / "eager" / "a.png") as a,
        Image.open(tmp_path / "comp" / "a.png") as b,
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_the_flag_reaches_restore_files(tmp_path, monkeypatch):
    seen = {}

    def fake(inputs, out, **kw):
        seen.update(kw)
        return restore_mod.RestoreReport(rank=0, world_size=1)

    monkeypatch.setattr(restore_mod, "restore_files", fake)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    args = ["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*args, "--compile"]) == 0 and seen["compile"] is True
    assert main(args) == 0 and seen["compile"] is False
