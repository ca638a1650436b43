"""Data-parallel training under torchrun (gloo, CPU): ranks stay in sync and draw different data."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flowrestore
from flowrestore.training.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.distributed
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)
def test_two_ranks_hold_identical_weights(tmp_path):
    root = str(Path(flowrestore.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [
        shutil.which("torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["model"] == r1["model"] and r0["ema"] == r1["ema"]
    assert r0["loss"] != r1["loss"]  # each rank drew its own data
    ck = load_checkpoint(tmp_path / "ddp.pt")
    assert ck["step"] == 2 and ck["rng"]["world_size"] == 2
    assert not torch.equal(ck["rng"]["generators"][0], ck["rng"]["generators"][1])
    assert sys.executable  # the subprocess used the same environment's torchrun
