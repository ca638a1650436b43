"""Why the Runge–Kutta defaults trail Euler on the shipped InDI predictors (issue 16, "What
limits" of the declared spacing): one Heun step from ``t = 1`` to ``s``, taken as the solver takes
it and with its stage state replaced by the reference state at ``s``.

Heun's second slope is evaluated at the Euler predictor ``x̃ = y + (s − 1) v(y, 1)``. If the
learned predictor ``F`` is sensitive to its input there (the field is stiff), the predictor's
error is amplified in ``F(x̃, s)`` and the averaged slope is no better than a second Euler step's.
Per model (first validation crop set of ``benchmarks.fewnfe_problems.indi_photos``, worst crop;
relative errors to an RK4 reference with 100 steps at ``s``): one and two Euler steps, Heun, Heun
with the reference stage state, the stage state's own error and the error of ``F`` there.

Run: ``python -m benchmarks.indi_stiffness`` (about 1 minute on one thread).
"""

from __future__ import annotations

import torch

import flowrestore as fr

from . import fewnfe_problems as P
from .common import machine, table

STEPS_TO = (
    0.875,
    0.704,
    0.5,
)  # Heun's 3-NFE grids on StartRefined(rho=3) end at 0.875; Euler's at 0.704


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Worst per-image relative error ``‖a − b‖/‖b‖``."""
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


def rows(model: str) -> list[list]:
    """The table's rows for one shipped predictor."""
    inst = P.indi_photos(model, "val").instances[0]
    flow, y = inst.flow, inst.x
    out = []
    for s in STEPS_TO:
        with torch.no_grad():
            ref = fr.solve(flow, fr.RK4(), y, steps=100, spacing=fr.Power(2.0), t_end=s).x
            t1, ts = torch.tensor(1.0, dtype=y.dtype), torch.tensor(s, dtype=y.dtype)
            v0 = flow.velocity(t1, y)
            stage = y + (s - 1) * v0
            f_stage, f_ref = flow.denoise(ts, stage), flow.denoise(ts, ref)
            heun = y + (s - 1) * 0.5 * (v0 + (stage - f_stage) / s)
            heun_ref = y + (s - 1) * 0.5 * (v0 + (ref - f_ref) / s)
            grid = torch.linspace(1.0, s, 3, dtype=torch.float64)
            euler2 = fr.solve(flow, fr.Euler(), y, grid=grid).x
        e_stage, e_f = rel(stage, ref), rel(f_stage, f_ref)
        out.append([model, f"1 → {s:g}", f"{e_stage:.2e}", f"{rel(euler2, ref):.2e}",
                    f"{rel(heun, ref):.2e}", f"{rel(heun_ref, ref):.2e}", f"{e_f:.2e}",
                    f"{e_f / e_stage:.1f}"])  # fmt: skip
    return out


def main() -> None:
    """Print the table (module docstring)."""
    torch.set_num_threads(1)
    headers = ["model", "step", "Euler, 1 step (= Heun's stage state)", "Euler, 2 steps", "Heun",
               "Heun, reference stage state", "F at the stage state", "amplification"]  # fmt: skip
    print(f"Machine: {machine()}\n")
    print(table(headers, rows("indi-sr4") + rows("indi-deblur")))


if __name__ == "__main__":  # pragma: no cover
    main()
