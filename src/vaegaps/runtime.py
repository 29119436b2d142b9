"""Where and how torch runs: device choice and thread count."""

from __future__ import annotations

import torch

from .errors import VaegapsError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the GPU when one is present; 'cuda' without one is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaegapsError(f"device: {name} but no CUDA GPU is visible; set device: auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise VaegapsError(f"device: {name!r} is not a torch device; use auto, cpu or cuda") from None


def set_threads(n: int) -> None:
    """Pin torch's intra-op threads to the job's share: several jobs each spinning on every
    core slow each other down by orders of magnitude."""
    torch.set_num_threads(max(1, int(n)))
