"""What the installed torch can do, for tests whose feature needs a newer torch than the floor
``pyproject.toml`` accepts (CI runs torch 2.13.0; the full suite also ran on torch 2.11).

Before torch 2.13, ``torch.compile`` cannot trace ``copy.copy`` (the flow bound to a solve, so a
user's ``torch.compile(fullgraph=True)`` of a whole ``fr.solve`` breaks there) nor
``Tensor.requires_grad_()`` (the gradient DPS and Dirac's guidance take inside a step, so
``fr.solve(..., compile=...)`` refuses those solves there with a ``ConfigError``).
"""

import pytest
import torch

TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
#: True where ``torch.compile`` traces everything the library's compiled paths need
COMPILE_TRACES_ALL = TORCH >= (2, 13)

needs_torch_2_13 = pytest.mark.skipif(
    not COMPILE_TRACES_ALL,
    reason="whole-solve capture needs torch >= 2.13 (copy.copy untraced); "
    f"have {torch.__version__}",
)
