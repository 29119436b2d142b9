"""The likelihood callables the estimators take: z (N, S, D) -> log p(x_n | z_ns) of shape (N, S).

A callable may also offer `.subset(rows)` (the likelihood of those datapoints only), `.dtype`,
`.device` and `.value_and_grad(z)` (value and z-gradient without autograd);
`vaegaps.vae.DecoderLikelihood` does. Plain closures work too.

Values: finite, or −inf where z is impossible (zero density: such a chain or sample gets zero
weight). NaN is read as −inf too, with a warning (it usually means a bug in the likelihood);
+inf (an infinite density) is an error. The estimators' arguments are checked on entry by the
`check_*` functions below (an `InputError`, a ValueError, naming the argument and what it
accepts), and the likelihood once, by `check_likelihood`, before any work: its output shape,
that it is differentiable in z by autograd, and that it is finite somewhere.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable

import torch

from .errors import VaegapsError

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]


class InputError(VaegapsError, ValueError):
    """An estimator's argument (its likelihood included) that cannot be used; the message names
    it and what it must be."""


def ll_and_grad(log_likelihood: LogLikelihood, z: torch.Tensor, value: bool = True):
    """log p(x|z) (N, S) and its gradient w.r.t. z (N, S, D); no graph survives the call.

    With value=False the first element may be None: a fused likelihood (`value_and_grad`) then
    skips the pass that only the value needs. A NaN likelihood is read as −inf (zero density,
    zero gradient), with a warning: such a chain gets zero weight instead of turning the estimate
    into NaN. +inf is a ValueError. One check per call (the same cost as a NaN check alone).

    Args:
        log_likelihood: z (N, S, D) -> log p(x_n | z_ns) (N, S), the protocol of this module;
            with a `value_and_grad(z, value)` method its hand-derived gradient is used.
        z: latent points (N, S, D); detached first, so no graph of the caller's is touched.
        value: whether the caller needs log p(x|z) too (AIS's last leapfrog step does).

    Returns:
        (ll, grad): ll (N, S) or None when `value` is False and the likelihood is fused;
        grad (N, S, D), both without a graph.
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
        bad = ~(ll < math.inf)   # NaN or +inf
        if bad.any():
            if bool((ll == math.inf).any()):
                raise InputError("the likelihood returned +inf (an infinite density) for some z; "
                                 "log p(x|z) must be finite, or -inf where z is impossible")
            warnings.warn("the likelihood returned NaN for some z; read as -inf (zero density): "
                          "those chains get zero weight. Return -inf where z is impossible",
                          RuntimeWarning, stacklevel=2)
            ll = ll.masked_fill(bad, -torch.inf)
            grad = grad.masked_fill(bad.unsqueeze(-1), 0.0)
    return ll, torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def check_int(name: str, value, minimum: int = 1) -> None:
    """A ValueError unless `value` is an integer >= minimum (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_optional_int(name: str, value, minimum: int = 1) -> None:
    """As `check_int`, but None (the default: no limit) is accepted too."""
    if value is not None:
        check_int(name, value, minimum)


def check_number(name: str, value, low: float = 0.0, high: float = math.inf, *, closed: str = "") -> None:
    """A ValueError unless `value` is a real number strictly between low and high (by default:
    positive and finite); `closed` ("low", "high" or "both") admits that end too."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    low_ok = closed in ("low", "both")
    high_ok = closed in ("high", "both")
    if ok:
        ok = (value >= low if low_ok else value > low) and (value <= high if high_ok else value < high)
    if not ok:
        if (low, high, closed) == (0.0, math.inf, ""):
            what = "a positive number"
        else:
            what = f"a number in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
        raise InputError(f"{name} must be {what}, got {value!r}")


def check_index(index, n_points: int) -> torch.Tensor:
    """The datapoint index as an int64 tensor of shape (n_points,): arange(n_points) by default."""
    if index is None:
        return torch.arange(n_points)
    index = torch.as_tensor(index)
    if index.shape != (n_points,) or index.is_floating_point() or index.is_complex():
        raise InputError(f"index must hold n_points={n_points} integer datapoint keys, shape ({n_points},); "
                         f"got {index.dtype} of shape {tuple(index.shape)}")
    return index


def check_likelihood(log_likelihood: LogLikelihood, z_dim: int, n_points: int, dtype=None, device=None,
                     names: tuple[str, str] = ("z_dim", "n_points"), autograd: bool = True):
    """Check z_dim and n_points, call the likelihood once on z of shape (n_points, S, z_dim)
    (z = 0 and N(0, I) draws) and check that it returns log p(x|z) of shape (n_points, S), finite
    somewhere; return its (dtype, device). With `autograd`, call it once more with z requiring
    grad and check that its output depends on z through autograd (the estimators' gradients).

    The dtype and device are the likelihood's own attributes where it has them, else those of
    that call (tried in float32, then float64). Before any work: the estimators' loops never
    check again. `names`: what the caller calls z_dim and n_points, for the messages.
    """
    if not callable(log_likelihood):
        raise InputError("log_likelihood must be a callable z (N, S, D) -> (N, S), "
                         f"got {type(log_likelihood).__name__}")
    check_int(names[0], z_dim)
    check_int(names[1], n_points)
    dtype = dtype or getattr(log_likelihood, "dtype", None)
    device = device or getattr(log_likelihood, "device", None)
    s = next(k for k in (2, 3, 4) if k not in (n_points, z_dim))   # a transposed output cannot pass
    failure = None
    for probe in (dtype,) if dtype is not None else (torch.float32, torch.float64):
        z = _probe_z(n_points, s, z_dim, probe, device)
        try:
            with torch.no_grad():
                out = log_likelihood(z)
        except Exception as exc:  # noqa: BLE001 (re-raised below with what was asked of it)
            failure = failure or exc
            continue
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        if not isinstance(out, torch.Tensor) or out.shape != (n_points, s):
            raise InputError(f"the likelihood returned {got} for z of shape (N, S, D) = {(n_points, s, z_dim)}; "
                             f"it must return a tensor log p(x_n | z_ns) of shape (N, S) = {(n_points, s)}")
        if not out.is_floating_point():
            raise InputError(f"the likelihood returned {out.dtype} values; it must return floating-point log p(x|z)")
        if not bool(torch.isfinite(out).any()):
            raise InputError(f"the likelihood returned no finite value for z of shape (N, S, D) = {(n_points, s, z_dim)} "
                             "(z = 0 and N(0, I) draws); log p(x|z) must be finite wherever z is possible (NaN everywhere: "
                             "a bug in the likelihood; -inf everywhere: data outside its support?)")
        if autograd:
            _check_autograd(log_likelihood, z)
        return (dtype or out.dtype), torch.device(device) if device is not None else out.device
    msg = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
    why = f"{type(failure).__name__}{': ' + msg if msg else ''}"
    raise InputError(f"the likelihood fails on z of shape (N, S, D) = {(n_points, s, z_dim)} ({why}); check "
                     f"that {names[0]}={z_dim} and {names[1]}={n_points} match it (and pass dtype= and "
                     "device= if it needs them)") from failure


def _probe_z(n: int, s: int, d: int, dtype, device) -> torch.Tensor:
    """z (n, s, d) for the check: the first sample 0, the others N(0, I) draws (seeded)."""
    z = torch.randn(n, s, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z[:, 0] = 0.0
    return z.to(device=device, dtype=dtype)


def _check_autograd(log_likelihood: LogLikelihood, z: torch.Tensor) -> None:
    """An InputError unless the likelihood's output at `z` has a gradient in z by autograd."""
    fix = "the estimators need its gradient in z: compute log p(x|z) from z with torch operations"
    z = z.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = log_likelihood(z)
    except Exception as exc:  # it ran without grad: the autograd graph is the problem
        raise InputError(f"the likelihood fails when z requires grad ({type(exc).__name__}: "
                         f"{(str(exc).strip().splitlines() or [''])[0]}); {fix} (no .numpy(), no in-place "
                         "change of z)") from exc
    linked = isinstance(out, torch.Tensor) and out.requires_grad
    if linked:   # requires_grad through the model's weights alone is not enough
        linked = torch.autograd.grad(out.sum(), z, allow_unused=True)[0] is not None
    if not linked:
        raise InputError("the likelihood's output does not depend on z through autograd (computed under "
                         f"torch.no_grad(), from z.detach() or through NumPy?); {fix}, outside torch.no_grad()")


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


def batches(n: int, batch_size: int | None) -> list[slice]:
    """Consecutive slices of at most batch_size datapoints (all at once when None)."""
    size = batch_size or n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
