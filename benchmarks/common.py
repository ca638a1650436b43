"""Shared helpers: machine description, markdown tables, timing (min over interleaved repeats)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """One line naming the CPU (lscpu's model name), core count, GPU and library versions."""
    cpu = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    import torchdiffeq
    import torchsde

    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, torchdiffeq "
        f"{getattr(torchdiffeq, '__version__', '?')}, "
        f"torchsde {getattr(torchsde, '__version__', '?')}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )


def declare_grid(flow, spacing) -> None:
    """Make ``spacing`` this flow object's declared grid (what ``steps=N`` lays), in place of its
    class's: the loop's end rules (RK4's end refinement, Midpoint's Euler-matched end) apply to it
    as to the default's, which a grid passed as ``spacing=`` does not get."""
    flow.default_spacing = lambda: spacing


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, device="cpu", warmup: int = 1
) -> dict[str, float]:
    """Min wall time (s) of each variant over ``repeats`` rounds, the variants interleaved."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    sync(device)
    best = {k: float("inf") for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def split_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The command line of a benchmark with validation and test splits: ``--split val|test|both``
    (default both); :func:`splits` reads the choice."""
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--split", choices=("val", "test", "both"), default="both")
    return p


def splits(args) -> tuple[str, ...]:
    """The splits to run, validation first, from :func:`split_parser`'s parsed ``args``."""
    return ("val", "test") if args.split == "both" else (args.split,)
