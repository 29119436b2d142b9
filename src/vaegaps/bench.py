"""Speed ratios measured in one process (python -m vaegaps.bench).

(a) AIS: seconds per HMC transition ÷ (L × one bare decoder forward+backward w.r.t. z on the
    same batch), MNIST decoder 50-200-200-784 (ELU), 100 datapoints × 16 chains, L = 10.
    1.0 is the floor: a transition needs L gradient evaluations and nothing else should cost.
(b) Local optimisation: 200 datapoints batched vs the same optimisation one datapoint at a time
    (timed on a subset and scaled to 200).
Ratios, not absolute times, are what carry across machines.
"""

from __future__ import annotations

import argparse
import time

import torch

from .ais import ais
from .likelihood import ll_and_grad
from .local_opt import optimize_local
from .nets import MLP
from .vae import DecoderLikelihood


def _decoder(z_dim=50, x_dim=784, device="cpu"):
    torch.manual_seed(0)
    dec = MLP([z_dim, 200, 200, x_dim], "elu").to(device).eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec


def _best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_ais(n_points=100, n_chains=16, leapfrog=10, transitions=20, device="cpu"):
    dec = _decoder(device=device)
    x = (torch.rand(n_points, 784, generator=torch.Generator().manual_seed(1)) > 0.5).float().to(device)
    lik = DecoderLikelihood(dec, x)
    z = torch.randn(n_points, n_chains, 50, device=device)
    t_grad = _best_time(lambda: ll_and_grad(lik, z), 10)
    run = lambda: ais(lik, 50, n_points, n_chains, transitions + 1, "linear", leapfrog, 0)  # noqa: E731
    t_ais = _best_time(run, 3)
    per_transition = t_ais / transitions
    return per_transition / (leapfrog * t_grad), per_transition, t_grad


def bench_local(n_points=200, steps=100, sequential_subset=10, device="cpu"):
    dec = _decoder(device=device)
    x = (torch.rand(n_points, 784, generator=torch.Generator().manual_seed(2)) > 0.5).float().to(device)
    kw = dict(z_dim=50, family="ffg", n_samples=100, lr=1e-3, check_every=steps, patience=10**9,
              max_steps=steps, final_samples=100, generator=0)
    t_batched = _best_time(lambda: optimize_local(DecoderLikelihood(dec, x), n_points=n_points, **kw), 1)

    def one_at_a_time():
        for i in range(sequential_subset):
            optimize_local(DecoderLikelihood(dec, x[i:i + 1]), n_points=1, index=torch.tensor([i]), **kw)

    t_seq = _best_time(one_at_a_time, 1) * n_points / sequential_subset
    return t_seq / t_batched, t_batched, t_seq


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ratio, per_t, t_grad = bench_ais(device=args.device)
    print(f"(a) AIS transition / (L x decoder fwd+bwd): {ratio:.3f}  "
          f"[{per_t * 1e3:.1f} ms per transition, {t_grad * 1e3:.2f} ms per fwd+bwd; target <= 1.3]")
    speedup, t_b, t_s = bench_local(device=args.device)
    print(f"(b) local optimisation, batched 200 vs one at a time: {speedup:.1f}x faster  "
          f"[{t_b:.2f} s batched, {t_s:.1f} s sequential (scaled); target >= 20x]")


if __name__ == "__main__":
    main()
