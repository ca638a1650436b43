"""DiracDiffusion (Fabian et al. 2023): the reverse SDE of ``y_t = A_t(x_0) + σ_t z`` over a
clean-image predictor ``Φ``, stepped by eq. 7 and trained with the incremental-reconstruction loss
(eqs. 12/14) — as a method record.

The noise on a Dirac model's input is the SDE's own, ``σ_1 = σ_max`` (``σ_t = σ_min^{1−t}
σ_max^t``): its task's noise parameter (``deblur``'s ``noise``, ``denoise``'s ``sigma``) is not
used — neither by its training loss nor by :attr:`Method.observe` — which is why the shipped
``dirac-deblur`` records ``noise=0``.
"""

from __future__ import annotations

import math
import numbers

from flowrestore.errors import ArgumentTypeError, ConfigError, describe
from flowrestore.methods.base import IMAGE_RANGE, Method, Showcase, SolverChoice

__all__ = ["DIRAC"]

#: the settings a Dirac predictor records beyond its task (registry ``"dirac"``, trainer config);
#: the flow and the degradation need the first two (``lookahead`` only configured its training)
_SETTINGS = ("sigma_min", "sigma_max", "lookahead")


def _solvers():
    import flowrestore.solvers as solvers  # imports torch: only when a solver is built

    return solvers


def _check_settings(s: dict) -> None:
    """Refuse settings the SDE cannot use, naming them (as ``TrainConfig`` does): ``σ_min`` and
    ``σ_max`` finite numbers ``> 0`` with ``σ_min <= σ_max``; ``lookahead`` a number in [0, 1]."""

    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    for key in _SETTINGS[:2]:
        if not (real(s[key]) and s[key] > 0):
            raise ConfigError(f"dirac: {key} must be a finite number > 0, got {describe(s[key])}")
    if not s["sigma_min"] <= s["sigma_max"]:
        raise ConfigError(
            f"dirac: sigma_min must be in (0, sigma_max={s['sigma_max']:g}], got "
            f"{describe(s['sigma_min'])}"
        )
    if "lookahead" in s and not (real(s["lookahead"]) and 0 <= s["lookahead"] <= 1):
        raise ConfigError(
            f"dirac: lookahead must be a number in [0, 1], got {describe(s['lookahead'])}"
        )


#: the keyword arguments a Dirac predictor's flow takes (:class:`~flowrestore.DiracSDE`'s; its
#: step options are named there, as the solver's)
_FLOW_OPTIONS = ("observation", "guidance", "guidance_scaling", "check_outputs")


def _dirac_flow(network, spec, **kwargs):
    from flowrestore.flows.dirac import STEP_OPTIONS
    from flowrestore.methods.flows import PredictorDiracSDE
    from flowrestore.schedules import Geometric

    unknown = sorted(set(kwargs) - set(_FLOW_OPTIONS) - set(STEP_OPTIONS))
    if unknown:
        raise ArgumentTypeError(
            f"the Dirac flow of {spec.name or 'this predictor'!r} takes no {unknown}; it takes "
            f"{list(_FLOW_OPTIONS)} (grids= and spacings= are the InDI flow's)"
        )

    s = spec.settings
    return PredictorDiracSDE(
        network,
        spec.task.family(spec.params),
        Geometric(s["sigma_min"], s["sigma_max"]),
        value_range=IMAGE_RANGE,
        noise_std=spec.input_noise,
        name=spec.name,
        **kwargs,
    )


def _dirac_observe(spec, x, generator=None):
    import torch

    family = spec.task.family(spec.params)
    y = family(x, torch.ones(x.shape[0], dtype=x.dtype, device=x.device))
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return y + spec.settings["sigma_max"] * z


def _dirac_objective():
    from flowrestore.training.objectives import DiracObjective

    return DiracObjective


def _dirac_explain(spec) -> str:
    return (
        "Dirac: 'phi' is the one-shot estimate Φ(y, 1); 'posterior_mean' is Φ(y_t_end, t_end) "
        "after the reverse SDE (one more NFE), 'last' its final iterate y_0 (carries σ_0 = "
        f"{spec.settings['sigma_min']:g} noise). Early stopping (t_end > 0) trades sharpness "
        "(HF/clean) for PSNR, as in the paper."
    )


DIRAC = Method(
    name="dirac",
    title="Dirac",
    summary="Dirac's reverse SDE of y_t = A_t(x0) + sigma_t z from t = 1 to t = 0",
    solvers=(
        SolverChoice(
            "em",
            "Dirac's reverse step (paper eq. 7: Euler-Maruyama with R-hat)",
            lambda: _solvers().DiracStep(),
        ),
        SolverChoice(
            "sra1",
            "Roessler's SRA1 (strong order 1.5 for additive noise)",
            lambda: _solvers().SRA1(),
        ),
    ),
    default_solver="em",
    default_output="posterior_mean",
    build_flow=_dirac_flow,
    settings_from_config=lambda config: {k: config[k] for k in _SETTINGS if k in config},
    settings_keys=_SETTINGS[:2],
    check_settings=_check_settings,
    input_noise=lambda spec: spec.settings["sigma_max"],
    observe=_dirac_observe,
    objective=_dirac_objective,
    explain=_dirac_explain,
    showcase=Showcase(
        runs=(
            ("phi", 1, "posterior_mean"),
            ("em", 2, "posterior_mean", 0.8),
            ("em", 5, "posterior_mean", 0.5),
            ("em", 10, "posterior_mean"),
            ("em", 25, "posterior_mean"),
            ("em", 25, "last"),
        ),
        quick_runs=(("phi", 1, "posterior_mean"), ("em", 5, "posterior_mean")),
        steps=(5, 10, 25),
        quick_steps=(5,),
        heldout=(
            ("phi", 1, "posterior_mean"),
            ("em", 5, "posterior_mean", 0.5),
            ("em", 10, "posterior_mean"),
            ("em", 25, "last"),
        ),
    ),
)
