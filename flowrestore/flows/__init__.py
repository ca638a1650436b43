"""Flows: what to integrate (InDI's residual flow, a diffusion model's probability-flow ODE, Dirac's
reverse SDE, generic ODE/SDE flows)."""

from flowrestore.flows.base import ODE, SDE, Flow, ResidualFlow, batch_time, bcast
from flowrestore.flows.diffusion import (
    ClipSample,
    DiffusionFlow,
    DiffusionSDE,
    DynamicThreshold,
    Karras,
)
from flowrestore.flows.dirac import DiracEstimate, DiracSDE
from flowrestore.flows.indi import InDIFlow
from flowrestore.flows.ode import ODEFlow, SDEFlow

__all__ = [
    "ODE",
    "SDE",
    "ClipSample",
    "DiracEstimate",
    "DiffusionFlow",
    "DiffusionSDE",
    "DiracSDE",
    "DynamicThreshold",
    "Flow",
    "InDIFlow",
    "Karras",
    "ODEFlow",
    "ResidualFlow",
    "SDEFlow",
    "batch_time",
    "bcast",
]
