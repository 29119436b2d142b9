"""One Adam step for many independent datapoints at once (q* and the refinement curve)."""

from __future__ import annotations

import torch


def adam_update(ps, gs, ms, vs, step, lr, b1=0.9, b2=0.999, eps=1e-8):
    """In-place Adam update of lists of tensors (elementwise, so datapoints never interact), as
    a few multi-tensor ops rather than a dozen small ones per parameter tensor."""
    bc1, bc2 = 1 - b1**step, 1 - b2**step
    torch._foreach_mul_(ms, b1)
    torch._foreach_add_(ms, gs, alpha=1 - b1)
    torch._foreach_mul_(vs, b2)
    torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_div_(denom, bc2**0.5)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(ps, ms, denom, value=-lr / bc1)
