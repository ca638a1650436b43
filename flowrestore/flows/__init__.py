"""Flows: what to integrate (InDI's residual flow, a diffusion model's probability-flow ODE, Dirac's
reverse SDE, generic ODE/SDE flows)."""

from flowrestore.flows.base import (
    ODE,
    SDE,
    Flow,
    ResidualFlow,
    TimeVariable,
    batch_time,
    bcast,
)
from flowrestore.flows.denoiser import DenoiserFlow
from flowrestore.flows.diffusion import (
    ClipSample,
    DiffusionFlow,
    DiffusionSDE,
    DynamicThreshold,
    Karras,
)
from flowrestore.flows.dirac import DiracEstimate, DiracSDE
from flowrestore.flows.flow_matching import FlowMatchingFlow, Shifted
from flowrestore.flows.guided import DiffPIRFlow, GuidedFlow
from flowrestore.flows.indi import InDIFlow
from flowrestore.flows.ode import ODEFlow, SDEFlow

__all__ = [
    "ODE",
    "SDE",
    "ClipSample",
    "DenoiserFlow",
    "DiffPIRFlow",
    "DiracEstimate",
    "DiffusionFlow",
    "DiffusionSDE",
    "DiracSDE",
    "DynamicThreshold",
    "Flow",
    "FlowMatchingFlow",
    "GuidedFlow",
    "InDIFlow",
    "Karras",
    "ODEFlow",
    "ResidualFlow",
    "SDEFlow",
    "Shifted",
    "TimeVariable",
    "batch_time",
    "bcast",
]
