"""Where and how torch runs: device choice and thread count."""

from __future__ import annotations

import os

import torch

from .errors import VaegapsError


def slurm_withholds_gpu(env=os.environ) -> bool:
    """True inside a SLURM job that was given no GPU: without device cgroups the node's GPUs are
    still visible, but they belong to other jobs."""
    if "SLURM_JOB_ID" not in env:
        return False
    return not any(env.get(k) for k in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE",
                                        "CUDA_VISIBLE_DEVICES"))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the GPU when one is present (and, in a SLURM job, given to the job); 'cuda'
    without one is an error, not a silent CPU run."""
    if name == "auto":
        gpu = torch.cuda.is_available() and not slurm_withholds_gpu()
        return torch.device("cuda" if gpu else "cpu")
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
