"""Benchmark (e) of `python -m vaegaps.bench`: the cost per datapoint of `vaegaps.measure` on a
user-protocol wrapper of a vaegaps VAE against the built-in estimators on the VAE itself.

Both run L[q], q*_FFG and AIS over one batch of the same datapoints with the same settings, on
one thread. The wrapper's decode(z) is Bernoulli(logits=decoder(z)) with the VAE's MLP decoder,
which the user path recognises and differentiates with the same fused pass as the built-in path
(target ≤ 1.1). For reference, a wrapper that hides its decoder network (a closure, not a module)
is differentiated by autograd and timed against the built-in path with the autograd likelihood.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.distributions import Bernoulli

SETTINGS = dict(amortized={"n_samples": 500},
                local={"n_samples": 16, "check_every": 20, "patience": 10**6, "max_steps": 60,
                       "final_samples": 500},
                ais={"n_chains": 8, "n_intermediate": 12, "leapfrog_steps": 5, "pilot_chains": 2})


class ProtocolWrapper:
    """A vaegaps VAE seen through the user-model protocol only."""

    def __init__(self, vae):
        self.vae = vae

    def encode(self, x):
        mean, logvar, _ = self.vae.encode(x)
        return mean, logvar

    def decode(self, z):
        return Bernoulli(logits=self.vae.decoder(z))


class OpaqueWrapper(ProtocolWrapper):
    """The same model with its networks out of sight (closures, no module attribute): the
    package cannot recognise the decoder, and autograd differentiates it."""

    def __init__(self, vae):
        self.encode_fn, self.decode_fn = vae.encode, vae.decoder.__call__

    def encode(self, x):
        mean, logvar, _ = self.encode_fn(x)
        return mean, logvar

    def decode(self, z):
        return Bernoulli(logits=self.decode_fn(z))


def _cpu_times(fns: dict, repeats: int) -> dict:
    """Best process CPU time (and its wall time) of each function over `repeats` rounds, the
    functions interleaved within a round so that a busy spell of a shared machine hits them alike."""
    best = {k: (float("inf"), float("nan")) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            best[k] = min(best[k], (time.process_time() - c0, time.perf_counter() - t0))
    return best


def bench_user(n_points: int = 50, repeats: int = 3, seed: int = 0):
    """CPU and wall seconds per datapoint of the user path ('user', fused gradient recognised), the
    built-in path ('fused'), and both with autograd ('user_opaque', 'autograd'); MNIST-sized VAE
    (784-200-200, z = 50), random weights and binary data."""
    from .evaluate import ais_estimate, amortized_bounds, local_optimum
    from .user_config import measure_settings
    from .user_eval import measure
    from .vae import VAE, DecoderLikelihood

    torch.manual_seed(seed)
    vae = VAE(784, 50, (200, 200), (200, 200)).eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    x = (torch.rand(n_points, 784, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    index = np.arange(n_points)
    ev = measure_settings(**SETTINGS)["evaluation"]

    def builtin(model):
        amortized_bounds(model, x, index, ev["amortized"]["n_samples"], seed)
        local_optimum(model, x, index, "ffg", ev["local"], seed)
        ais_estimate(model, x, index, ev["ais"], seed)

    def user(wrapper):
        measure(wrapper(vae), x, seed=seed, local_families=["ffg"], chunk_size=n_points, progress=False, **SETTINGS)

    plain = VAE(784, 50, (200, 200), (200, 200)).eval()
    plain.load_state_dict(vae.state_dict())
    plain.log_likelihood = lambda xx: DecoderLikelihood(plain.decoder, xx, fused=False)
    times = _cpu_times({"user": lambda: user(ProtocolWrapper), "fused": lambda: builtin(vae),
                        "user_opaque": lambda: user(OpaqueWrapper), "autograd": lambda: builtin(plain)}, repeats)
    return {k: (c / n_points, w / n_points) for k, (c, w) in times.items()}
