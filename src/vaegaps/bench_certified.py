"""Benchmark (c) of `python -m vaegaps.bench`: CPU-seconds per datapoint to a certified answer.

What a user waits for is not a transition but an answer they can trust, so both sides are timed
to the same certificate, in one process on one thread:

* **log p̂**: AIS counts as certified when its BDMC gap (reverse minus forward AIS on datapoints
  simulated from the model, which brackets log p(x)) is at most `BDMC_PASS_NATS` on average. Each
  side climbs its own ladder of schedules and stops at the first that certifies; its cost is the
  process CPU per datapoint and direction at that schedule (pilot tuning included). Ours is the
  pipeline's procedure (AIS from the encoder's q, sigmoid schedule, pilot-tuned frozen steps);
  the baseline is the public code's (prior start, linear schedule, adaptive steps, autograd
  gradients: `vaegaps.bench.baseline_ais`), certified by its own reverse run.
* **q***: CPU per datapoint until every datapoint stops, by the default optimiser (`method: auto`:
  Newton for FFG, cycles for flows) and by Adam with the patience rule (the paper's optimiser,
  this package's before issue 22), at the preset's settings and from the same starts. A flow's
  start q*_FFG is fitted once beforehand and counted on neither side. The converged shares and
  mean L[q*] are printed beside the times: a fast optimiser that stops short is no win.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .tables import BDMC_PASS_NATS

OURS_LADDER = ((16, 30), (16, 100), (16, 300))            # (chains, distributions), cheapest first
BASELINE_LADDER = ((16, 1000), (16, 3000), (16, 10000))


def _gap(lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    gap = upper - lower
    return float(gap.mean()), float(gap.std(ddof=1) / math.sqrt(len(gap))) if len(gap) > 1 else float("nan")


def ours_bdmc(model, n_sim: int, chains: int, distributions: int, seed: int) -> dict:
    """BDMC of the pipeline's AIS (encoder start) on `n_sim` simulated datapoints, timed."""
    from .evaluate import bdmc_validation

    cfg = dict(n_chains=chains, n_intermediate=distributions, schedule="sigmoid", leapfrog_steps=10,
               step_size=0.2, target_accept=0.65, tuning="pilot", pilot_chains=4, init="encoder")
    c0 = time.process_time()
    b = bdmc_validation(model, n_sim, cfg, seed, "cpu")
    cpu = time.process_time() - c0
    gap, se = _gap(b["lower"].to_numpy(), b["upper"].to_numpy())
    return dict(gap=gap, gap_se=se, cpu_s=cpu / (2 * n_sim))


def baseline_bdmc(model, n_sim: int, chains: int, distributions: int, seed: int) -> dict:
    """BDMC of the public code's AIS (prior start, `baseline_ais` both ways) on the same simulated data."""
    from .bench import _trainable_copy, baseline_ais
    from .evaluate import simulate

    z, x = simulate(model, n_sim, seed, "cpu")
    dec = _trainable_copy(model.decoder)
    c0 = time.process_time()
    lower = baseline_ais(dec, x, model.z_dim, chains, distributions, seed=seed)
    upper = baseline_ais(dec, x, model.z_dim, chains, distributions, seed=seed + 1, z_true=z)
    cpu = time.process_time() - c0
    gap, se = _gap(lower.detach().numpy(), upper.detach().numpy())
    return dict(gap=gap, gap_se=se, cpu_s=cpu / (2 * n_sim))


def climb(run, ladder, log=print) -> dict:
    """Run `run(chains, distributions)` up the ladder until the gap is at most BDMC_PASS_NATS.
    Returns the certifying (or, if none certifies, the last) row, with `certified` set."""
    for chains, dists in ladder:
        row = dict(chains=chains, distributions=dists, **run(chains, dists))
        row["certified"] = row["gap"] <= BDMC_PASS_NATS
        log(f"      {chains:3d} x {dists:5d}: BDMC gap {row['gap']:.3f} ± {row['gap_se']:.3f}, "
            f"{row['cpu_s']:.2f} CPU-s per datapoint and direction")
        if row["certified"]:
            break
    return row


def time_qstar(model, x, index, family: str, local: dict, seed: int, ffg=None) -> dict[str, tuple]:
    """{optimiser: (LocalResult, CPU-s)} for `family`'s q* by the default method and by Adam."""
    from .config import deep_merge
    from .evaluate import fit_qstar

    out = {}
    for name, method in (("default", "auto"), ("adam", "adam")):
        cfg = deep_merge(local, {family: {"method": method}})
        c0 = time.process_time()
        r = fit_qstar(model, x, index, family, cfg, seed, ffg)
        out[name] = (r, time.process_time() - c0)
    return out


def bench_certified(model_paths, data_path, preset, n_sim=4, n_real=8, seed=0, ours_ladder=OURS_LADDER,
                    baseline_ladder=BASELINE_LADDER, log=print) -> list[dict]:
    """Benchmark (c) on each model: rows of (model, answer, ours, baseline, ratio), printed as it goes."""
    from pathlib import Path

    import yaml

    from .config import SCHEMA, evaluation_config, validate
    from .evaluate import evaluation_set
    from .vae import load_vae

    config = validate(yaml.safe_load(Path(preset).read_text()), SCHEMA)
    local = evaluation_config(config, Path(data_path).stem)["local"]
    rows = []
    for path in model_paths:
        model = load_vae(path, "cpu")
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        log(f"(c) {path} ({model.family_name}-trained)")
        log(f"    log p̂ certified (BDMC gap <= {BDMC_PASS_NATS:g} nats on {n_sim} simulated points); ours, encoder start:")
        ours = climb(lambda c, d: ours_bdmc(model, n_sim, c, d, seed), ours_ladder, log)
        log("    baseline (the public code's AIS from the prior):")
        base = climb(lambda c, d: baseline_bdmc(model, n_sim, c, d, seed), baseline_ladder, log)
        rows.append(dict(model=path, answer="log p̂", ours=ours, baseline=base))
        _print_ratio(rows[-1], log)
        index, x = evaluation_set(data_path, config["evaluation"]["split"], n_real, "cpu")
        ffg = None   # both flow runs start from the default q*_FFG, counted on neither side
        for family in ("ffg", "flow"):
            runs = time_qstar(model, x, index, family, local, seed, ffg)
            if family == "ffg":
                params = runs["default"][0].params
                ffg = params["mean"], params["logvar"]
            sides = {k: dict(cpu_s=c / n_real, converged=float(r.converged.float().mean()),
                             elbo=float(r.elbo.mean()), certified=bool(r.converged.all()))
                     for k, (r, c) in runs.items()}
            rows.append(dict(model=path, answer=f"q*_{family}", ours=sides["default"], baseline=sides["adam"]))
            _print_ratio(rows[-1], log)
    return rows


def _print_ratio(row: dict, log) -> None:
    o, b = row["ours"], row["baseline"]
    if row["answer"] == "log p̂":
        desc = {k: f"{v['chains']} x {v['distributions']}" + ("" if v["certified"] else " (NOT certified)")
                for k, v in (("ours", o), ("baseline", b))}
        bound = "" if b["certified"] else ">= "   # the baseline would need a longer schedule still
    else:
        desc = {k: f"{v['converged']:.0%} converged, mean L[q*] {v['elbo']:.2f}" for k, v in (("ours", o), ("baseline", b))}
        bound = ">= " if b["converged"] < o["converged"] else ""   # the baseline stopped short of converging
    log(f"    {row['answer']}: ours {o['cpu_s']:.2f} CPU-s per datapoint ({desc['ours']}), baseline "
        f"{b['cpu_s']:.2f} ({desc['baseline']}): {bound}{b['cpu_s'] / o['cpu_s']:.1f}x")
