"""q*_FFG: today's optimiser (Adam, patience rule) against the default (variational Newton), per model.

For each model: both optimisers at the preset's settings on the first --n-points datapoints of
the evaluation split (CPU time of this process, one thread, measured here, side by side), then a
reference optimum per datapoint: Adam from the better of the two q* with 4x the preset's draws and
a cosine-decayed learning rate. All three are scored on the same --eval-samples fresh draws
(common random numbers); L_ref is the best of the three per datapoint, so the paired
L[q*] - L_ref is never flattered. Targets (issue 22): CPU ratio (adam / newton) >= 5, paired mean
>= -0.02 nats, no datapoint below -0.1.

    python scripts/qstar_reference.py --preset workflow/presets/fashion_cpu.yaml \\
        --data results/data/fashion_mnist.parquet --model results/models/fashion_mnist/standard/ffg/model.pt \\
        --model results/models/fashion_mnist/standard/flow/model.pt --n-points 16
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import yaml

from vaegaps import rng
from vaegaps.bounds import log_normal_std
from vaegaps.config import SCHEMA, deep_merge, evaluation_config, local_config, validate
from vaegaps.evaluate import evaluation_set, fit_qstar
from vaegaps.families import gaussian_sample
from vaegaps.vae import load_vae


def reference_ffg(lik, mean, logvar, n_samples, steps, lr, seed):
    """Adam on (mean, logvar) of every datapoint at once (elementwise, so datapoints never
    interact), n_samples draws per step, lr cosine-decayed to 0 over `steps`."""
    mean, logvar = mean.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    opt = torch.optim.Adam([mean, logvar], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    idx = torch.arange(len(mean))
    for t in range(1, steps + 1):
        eps = rng.normal(seed, "reference", idx, t, (n_samples, mean.shape[-1]), dtype=mean.dtype)
        z, log_q = gaussian_sample(mean.unsqueeze(1), logvar.unsqueeze(1), eps)
        loss = -(lik(z) + log_normal_std(z) - log_q).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return mean.detach(), logvar.detach()


def elbo_common(lik, params, n_samples, seed, batch=500):
    """ELBO (N,) of each FFG (mean, logvar) in `params`, all on the same fresh draws."""
    mean0 = params[0][0]
    idx = torch.arange(len(mean0))
    totals = [torch.zeros(len(mean0), dtype=torch.float64) for _ in params]
    with torch.no_grad():
        for off in range(0, n_samples, batch):
            s = min(batch, n_samples - off)
            eps = rng.normal(seed, "reference/eval", idx, 0, (s, mean0.shape[-1]), offset=off, dtype=mean0.dtype)
            for k, (mean, logvar) in enumerate(params):
                z, log_q = gaussian_sample(mean.unsqueeze(1), logvar.unsqueeze(1), eps)
                totals[k] += (lik(z) + log_normal_std(z) - log_q).double().sum(1)
    return [t / n_samples for t in totals]


def compare(model_path, data_path, local, split, n_points, seed, ref_steps, eval_samples, newton_changes=None):
    model = load_vae(model_path, "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    index, x = evaluation_set(data_path, split, n_points, "cpu")
    runs, cpu = {}, {}
    for name, method in (("adam", "adam"), ("newton", "newton")):
        change = {"method": method, **((newton_changes or {}) if method == "newton" else {})}
        cfg = deep_merge(local, {**change, "ffg": change})
        t0 = time.process_time()
        runs[name] = fit_qstar(model, x, index, "ffg", cfg, seed)
        cpu[name] = time.process_time() - t0
    lik = model.log_likelihood(x)
    cand = [(runs[k].params["mean"], runs[k].params["logvar"]) for k in ("adam", "newton")]
    better = (runs["newton"].elbo > runs["adam"].elbo).unsqueeze(-1)
    start = [torch.where(better, cand[1][i], cand[0][i]) for i in range(2)]
    t0 = time.process_time()
    ref = reference_ffg(lik, *start, 4 * local_config(local, "ffg")["n_samples"], ref_steps, 1e-3, seed)
    cpu["reference"] = time.process_time() - t0
    l_adam, l_newton, l_ref = elbo_common(lik, [*cand, ref], eval_samples, seed)
    best = torch.maximum(torch.maximum(l_adam, l_newton), l_ref)
    return runs, cpu, {"adam": l_adam - best, "newton": l_newton - best}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="config whose evaluation.local settings both optimisers use")
    ap.add_argument("--data", required=True, help="the dataset's parquet (results/data/DATASET.parquet)")
    ap.add_argument("--dataset", default=None, help="dataset name for per-dataset overrides (default: the file's stem)")
    ap.add_argument("--model", action="append", required=True, help="model.pt (repeat for several)")
    ap.add_argument("--n-points", type=int, default=16)
    ap.add_argument("--ref-steps", type=int, default=2000, help="reference Adam steps (cosine-decayed lr)")
    ap.add_argument("--eval-samples", type=int, default=20000, help="common fresh draws scoring every q")
    ap.add_argument("--seed", type=int, default=None, help="default: the preset's seed")
    ap.add_argument("--newton-max-steps", type=int, default=None, help="max_steps for newton only (default: the preset's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = validate(yaml.safe_load(Path(args.preset).read_text()), SCHEMA)
    dataset = args.dataset or Path(args.data).stem
    ev = evaluation_config(config, dataset)
    seed = config["seed"] if args.seed is None else args.seed
    print(f"q*_FFG, {args.n_points} datapoints per model, {ev['split']} split, seed {seed}, 1 thread; "
          f"CPU ratio = adam CPU-s / newton CPU-s (process time, same run); "
          f"diff = L[q*] - L_ref on {args.eval_samples} common draws")
    for path in args.model:
        runs, cpu, diff = compare(path, args.data, ev["local"], ev["split"], args.n_points, seed,
                                  args.ref_steps, args.eval_samples,
                                  {"max_steps": args.newton_max_steps} if args.newton_max_steps else None)
        ratio = cpu["adam"] / cpu["newton"]
        print(f"{path}: CPU adam {cpu['adam']:.1f} s, newton {cpu['newton']:.1f} s, ratio {ratio:.1f}x "
              f"[target >= 5: {'met' if ratio >= 5 else 'NOT met'}]; reference {cpu['reference']:.1f} s")
        for name in ("adam", "newton"):
            d, r = diff[name], runs[name]
            se = float(d.std()) / math.sqrt(len(d))
            ok = float(d.mean()) >= -0.02 and float(d.min()) >= -0.1
            print(f"    {name:6s}: L - L_ref mean {float(d.mean()):+.4f} se {se:.4f} min {float(d.min()):+.4f}"
                  f" [{'meets' if ok else 'misses'} mean >= -0.02, min >= -0.1]; steps mean "
                  f"{float(r.steps.double().mean()):.0f}; converged {float(r.converged.double().mean()):.0%}; "
                  f"remaining_gain mean {float(r.remaining_gain.mean()):.4f} max {float(r.remaining_gain.max()):.4f}")


if __name__ == "__main__":
    main()
