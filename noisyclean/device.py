"""Choosing the compute device."""

from __future__ import annotations

import torch

from .config import DEVICES
from .errors import NoisyCleanError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA, then MPS, then CPU; an explicit device must be available."""
    if name not in DEVICES:
        raise NoisyCleanError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NoisyCleanError("--device cuda: no CUDA device is available (try --device auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise NoisyCleanError("--device mps: MPS is not available (try --device auto)")
    return torch.device(name)
