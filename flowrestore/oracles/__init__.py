"""Closed-form oracles: priors whose exact posterior mean (and often flow) is known in closed form.

They are the ground truth for the solver tests, examples and benchmarks (docs/math.md §2, §4, §5):

- :class:`GaussianOracle` — Gaussian prior, diagonal linear degradation (InDI, docs/math.md
§2a/§2b);
- :class:`DiracMixture` — mixture of Dirac masses, any linear degradation (InDI §2c, Dirac §4);
- :class:`GaussianGenerativeOracle` — Gaussian prior from a noise latent (BIRD, docs/math.md §5);
- :class:`GaussianDiffusionOracle` — the exact ε/v/x₀ model of a Gaussian prior under a diffusion
  schedule, a ``model(x, timestep)`` for :class:`~flowrestore.DiffusionFlow` (docs/math.md §8);
- :class:`GaussianFlowMatchingOracle` / :class:`GaussianDenoiserOracle` — the exact rectified-flow
  velocity and EDM denoiser of a Gaussian prior, for :class:`~flowrestore.FlowMatchingFlow` and
  :class:`~flowrestore.DenoiserFlow` (docs/math.md §9);
- :class:`GaussianMixtureOracle` — the exact posterior mean of a Gaussian-mixture (multimodal)
  prior as an EDM denoiser, a diffusers-convention ε/v/x₀ model and a flow-matching velocity
  (docs/math.md §9; no closed-form flow map: a fine solve is the reference);
- :class:`LinearGaussianPosterior` — the closed-form posterior of a Gaussian prior under a linear
  measurement diagonal in a known basis, the ground truth of guided restoration (docs/math.md §10).

The first three expose ``posterior_mean(x_t, t)`` (also as ``.predictor`` and ``__call__``), usable
directly as a clean-image predictor, e.g. ``fr.InDIFlow(oracle.posterior_mean)``; the diffusion
oracle is called like a diffusers model, ``fr.DiffusionFlow(oracle, alphas_cumprod=...)``.
"""

from flowrestore.oracles.diffusion import GaussianDiffusionOracle
from flowrestore.oracles.flow_matching import GaussianDenoiserOracle, GaussianFlowMatchingOracle
from flowrestore.oracles.gaussian import GaussianOracle
from flowrestore.oracles.gaussian_mixture import GaussianMixtureOracle
from flowrestore.oracles.generative import GaussianGenerativeOracle
from flowrestore.oracles.mixture import DiracMixture
from flowrestore.oracles.posterior import LinearGaussianPosterior

__all__ = [
    "DiracMixture",
    "GaussianDenoiserOracle",
    "GaussianDiffusionOracle",
    "GaussianFlowMatchingOracle",
    "GaussianGenerativeOracle",
    "GaussianMixtureOracle",
    "GaussianOracle",
    "LinearGaussianPosterior",
]
