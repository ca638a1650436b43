"""Flows: what to integrate (InDI residual flow, Dirac reverse SDE, generic ODE/SDE flows)."""

from flowrestore.flows.base import Flow, batch_time, bcast
from flowrestore.flows.dirac import DiracEstimate, DiracSDE
from flowrestore.flows.indi import InDIFlow
from flowrestore.flows.ode import ODEFlow, SDEFlow

__all__ = [
    "DiracEstimate",
    "DiracSDE",
    "Flow",
    "InDIFlow",
    "ODEFlow",
    "SDEFlow",
    "batch_time",
    "bcast",
]
