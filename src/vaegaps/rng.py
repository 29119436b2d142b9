"""Counter-based random numbers keyed by (seed, stream, datapoint index, step).

Every draw is a pure function of its key and its position, computed with vectorised 32-bit
integer hashing (MurmurHash3's finaliser) held in int64 tensors. A datapoint therefore gets the
same numbers whether it is evaluated alone, among 100 others, split across jobs or on another
device, which is what makes the estimators batching-invariant. No per-datapoint Python loop.
"""

from __future__ import annotations

import math
import zlib

import torch

_M32 = 0xFFFFFFFF
_TWO_PI = 2.0 * math.pi


def _fmix(x):
    """MurmurHash3 fmix32: a bijection of [0, 2^32) with full avalanche; int or int64 tensor."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def seed_from(generator: torch.Generator | int | None) -> int:
    """A 32-bit seed: an int as is, or one draw from a torch.Generator (so calls differ)."""
    if generator is None:
        return 0
    if isinstance(generator, int):
        return generator & _M32
    if isinstance(generator, torch.Generator):
        return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
    raise TypeError(f"generator must be an int, a torch.Generator or None, not {type(generator).__name__}")


def _stream_id(stream: str) -> int:
    return zlib.crc32(stream.encode()) & _M32


def _keys(seed: int, stream: str, index: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32-bit key words per datapoint (64 bits, so (point, step) keys do not collide)."""
    base1 = _fmix(_fmix(seed & _M32) ^ _stream_id(stream))
    base2 = _fmix(base1 ^ 0x9E3779B9)
    idx = index.to(torch.int64) & _M32
    step &= _M32
    k1 = _fmix(_fmix(idx ^ base1) ^ step)
    k2 = _fmix(_fmix(idx ^ _fmix(base2 ^ step)) ^ 0x5BD1E995)
    return k1, k2


def _bits(seed: int, stream: str, index: torch.Tensor, step: int, n: int, offset: int) -> torch.Tensor:
    """(N, n) uniform 32-bit words for counters offset..offset+n-1 of each datapoint's key."""
    k1, k2 = _keys(seed, stream, index, step)
    j = torch.arange(offset, offset + n, dtype=torch.int64, device=index.device)
    return _fmix(_fmix(j ^ k1[:, None]) ^ k2[:, None])


def uniform(seed: int, stream: str, index: torch.Tensor, step: int, shape: tuple[int, ...],
            offset: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U(0, 1) of shape (N, *shape); `offset` skips that many leading rows of shape[0]."""
    n = math.prod(shape)
    row = math.prod(shape[1:]) if len(shape) > 1 else 1
    h = _bits(seed, stream, index, step, n, offset * row)
    u = (h.to(torch.float64) + 0.5) * 2.0**-32
    return u.to(dtype).reshape(len(index), *shape)


def normal(seed: int, stream: str, index: torch.Tensor, step: int, shape: tuple[int, ...],
           offset: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) of shape (N, *shape) by Box-Muller on two counters per element.

    `offset` skips that many leading rows of shape[0], so drawing samples in batches gives the
    same numbers as drawing them at once.
    """
    n = math.prod(shape)
    row = math.prod(shape[1:]) if len(shape) > 1 else 1
    h = _bits(seed, stream, index, step, 2 * n, 2 * offset * row).reshape(len(index), n, 2)
    u1 = (h[..., 0].to(torch.float64) + 1.0) * 2.0**-32  # (0, 1]: log never sees 0
    u2 = h[..., 1].to(torch.float64) * 2.0**-32
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(_TWO_PI * u2)
    return z.to(dtype).reshape(len(index), *shape)


def antithetic(half: torch.Tensor) -> torch.Tensor:
    """Draws (N, K, ...) and their negatives, (N, 2K, ...): each is still standard normal, so an
    average over them stays unbiased, and the part of the averaged function that is odd in the
    noise (all of it, for a gradient on a Gaussian posterior, to first order) cancels in each pair."""
    return torch.cat([half, -half], 1)
