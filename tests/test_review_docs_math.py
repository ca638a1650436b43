"""docs/math.md against the code it describes: the names, files and commands it cites exist, and
the closed forms it states for UniPC's two-node weights are the ones the solver uses."""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

import flowrestore as fr
from flowrestore.solvers.semilinear import _phi_log

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")
CODE_SPANS = re.findall(r"`([^`\n]+)`", DOC)

#: the package names docs/math.md cites bare (solvers, grids, flows and fitted objects)
CITED_TOP_LEVEL = [
    "UniPC", "Power", "NoiseLevels", "Shifted", "StartRefined", "Unrefined", "Fitted",
    "FittedGrids",
    "FittedMultistep", "DataIPNDM", "IPNDM", "SemiLinearMultistep", "InDIFlow", "Euler", "Midpoint",
    "Heun", "RK4", "Bosh3", "Dopri5", "EulerMaruyama", "SRA1", "DiracStep", "DiracSDE", "DPSStep",
    "DDRMStep", "DiffPIRStep", "DiffPIRFlow", "DenoiserFlow", "DiffusionFlow", "FlowMatchingFlow",
    "TimeVariable",
]  # fmt: skip


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("name", CITED_TOP_LEVEL)
def test_cited_names_are_public(name):
    assert hasattr(fr, name), f"docs/math.md cites {name}, which flowrestore does not export"


def test_cited_dotted_references_resolve():
    dotted = set()
    for span in CODE_SPANS:
        dotted.update(re.findall(r"\b(?:flowrestore|fr)(?:\.[A-Za-z_]\w*)+", span))
    assert dotted, "docs/math.md cites no dotted names: the pattern is stale"
    for ref in sorted(dotted):
        _resolve(ref.replace("fr.", "flowrestore.", 1) if ref.startswith("fr.") else ref)


def test_context_steps_left_exists():
    from dataclasses import fields

    from flowrestore.solvers.base import Context

    assert "steps_left" in {f.name for f in fields(Context)}


def test_cited_files_and_commands_exist():
    paths = {
        p
        for span in CODE_SPANS
        for p in re.findall(r"(?:tests|flowrestore|benchmarks)/[\w/.-]+\.\w+", span)
    }
    assert paths
    for p in sorted(paths):
        assert (ROOT / p).is_file(), f"docs/math.md cites {p}, which does not exist"
    modules = set(re.findall(r"python -m ([\w.]+)", DOC))
    assert modules
    for m in sorted(modules):
        assert importlib.util.find_spec(m) is not None, f"docs/math.md runs `python -m {m}`"


@pytest.mark.parametrize("r", [0.95, 0.6, 0.2, 0.01])
def test_unipc_two_node_weight_is_documented_closed_form(r):
    """docs/math.md §1: on a two-node step UniPC's ``J_1`` is ``−h B(h)/2`` with ``h = log r``
    (``B(h) = h``: bh1; ``e^h − 1``: bh2), within ``O(|log r|³)`` of the exact
    ``J_1 = log r + 1 − r``."""
    rr = torch.tensor(r, dtype=torch.float64)
    h = math.log(r)
    exact = math.log(r) + 1 - r
    for bh, B in (("bh1", h), ("bh2", math.expm1(h))):
        j = _phi_log(rr, 2, bh)
        assert float(j[0]) == pytest.approx(1 - r, rel=1e-14)
        assert float(j[1]) == pytest.approx(-h * B / 2, rel=1e-12, abs=1e-15)
        assert abs(float(j[1]) - exact) <= abs(h) ** 3  # (|h|³/6 + |h|³/4 at most)
    # the exact recursion without bh: J_1 = log r + J_0
    assert float(_phi_log(rr, 2)[1]) == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_doc_states_unipc_h_with_the_sign_the_weights_need():
    """The doc's ``h`` in ``−h B(h)/2`` is ``log r`` (≤ 0); with ``h = −log r`` bh2's weight is off
    by the factor ``1/r``."""
    para = DOC[DOC.index("**UniPC**") : DOC.index("**On flow matching**")]
    assert "`h = log r`" in para
    assert "h = −log r" not in para
