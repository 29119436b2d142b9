"""The likelihood callables the estimators take: z (N, S, D) -> log p(x_n | z_ns) of shape (N, S).

A callable may also offer `.subset(rows)` (the likelihood of those datapoints only), `.dtype`,
`.device` and `.value_and_grad(z)` (value and z-gradient without autograd);
`vaegaps.vae.DecoderLikelihood` does. Plain closures work too.
"""

from __future__ import annotations

from typing import Callable

import torch

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]


def ll_and_grad(log_likelihood: LogLikelihood, z: torch.Tensor, value: bool = True):
    """log p(x|z) (N, S) and its gradient w.r.t. z (N, S, D); no graph survives the call.

    With value=False the first element may be None: a fused likelihood (`value_and_grad`) then
    skips the pass that only the value needs. A NaN likelihood is read as −inf (zero density,
    zero gradient): such a chain gets zero weight instead of turning the estimate into NaN.
    """
    fast = getattr(log_likelihood, "value_and_grad", None)
    if fast is not None:  # a hand-derived backward pass (vaegaps.decoder_grad)
        ll, grad = fast(z.detach(), value)
    else:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            ll = log_likelihood(z)
            (grad,) = torch.autograd.grad(ll.sum(), z)
        ll = ll.detach()
    if ll is not None:
        bad = torch.isnan(ll)
        if bad.any():
            ll = ll.masked_fill(bad, -torch.inf)
            grad = grad.masked_fill(bad.unsqueeze(-1), 0.0)
    return ll, torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def infer_dtype_device(log_likelihood: LogLikelihood, z_dim: int, n_points: int, dtype=None, device=None):
    """The likelihood's own dtype/device: from its attributes, else by a one-sample probe."""
    dtype = dtype or getattr(log_likelihood, "dtype", None)
    device = device or getattr(log_likelihood, "device", None)
    if dtype is not None:
        return dtype, torch.device(device or "cpu")
    for probe in (torch.float32, torch.float64):
        try:
            with torch.no_grad():
                out = log_likelihood(torch.zeros(n_points, 1, z_dim, dtype=probe, device=device))
            return out.dtype, out.device
        except (RuntimeError, TypeError):
            continue
    raise ValueError("cannot infer the likelihood's dtype; pass dtype= and device=")


def restrict(log_likelihood: LogLikelihood, rows: slice | torch.Tensor, n: int) -> LogLikelihood:
    """The likelihood of datapoints `rows` (of n) only.

    Uses `.subset` where the callable has it; a plain closure over all n datapoints is
    evaluated on a zero-padded full batch instead (correct, but without the saving).
    """
    if isinstance(rows, slice) and rows.indices(n) == (0, n, 1):
        return log_likelihood
    if hasattr(log_likelihood, "subset"):
        return log_likelihood.subset(rows)

    def padded(z: torch.Tensor) -> torch.Tensor:
        full = z.new_zeros(n, *z.shape[1:])
        full[rows] = z
        return log_likelihood(full)[rows]

    return padded


def chunks(n: int, chunk_size: int | None) -> list[slice]:
    """Consecutive slices of at most chunk_size datapoints (all at once when None)."""
    size = chunk_size or n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
