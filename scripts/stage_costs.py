"""CPU-seconds per datapoint of each evaluation stage at a preset's settings, to plan a run.

For each --model, runs the pipeline's estimators on the first --n-points datapoints of the
preset's evaluation split, one thread, and prints the process CPU per datapoint of each stage
(L[q] and IWAE, q*_FFG, q*_Flow started from that q*_FFG, AIS) with q*'s steps and converged
share, then the projected CPU for --project datapoints (per-datapoint costs scale linearly:
every stage is batched over datapoints and stops per datapoint). Training and BDMC, whose cost
does not grow with the evaluation set, are not included.

    python scripts/stage_costs.py --preset workflow/presets/fashion_cpu.yaml \\
        --data results/data/fashion_mnist.parquet \\
        --model results/models/fashion_mnist/standard/ffg/model.pt \\
        --model results/models/fashion_mnist/standard/flow/model.pt --n-points 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from vaegaps.config import SCHEMA, evaluation_config, validate
from vaegaps.evaluate import ais_estimate, amortized_bounds, evaluation_set, fit_qstar
from vaegaps.vae import load_vae


def timed(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def stage_costs(model_path, data_path, ev: dict, n_points: int, seed: int) -> dict[str, float]:
    """{stage: CPU-s per datapoint} for one model, printing each stage as it finishes."""
    model = load_vae(model_path, "cpu")
    index, x = evaluation_set(data_path, ev["split"], n_points, "cpu")
    cost = {}
    _, c = timed(lambda: amortized_bounds(model, x, index, ev["amortized"]["n_samples"], seed))
    cost["L[q], IWAE"] = c / n_points
    print(f"  L[q], IWAE-{ev['amortized']['n_samples']}: {cost['L[q], IWAE']:.2f} CPU-s per datapoint", flush=True)
    ffg = None
    for family in ("ffg", "flow"):
        r, c = timed(lambda: fit_qstar(model, x, index, family, ev["local"], seed, ffg))
        cost[f"q*_{family}"] = c / n_points
        print(f"  q*_{family}: {c / n_points:.2f} CPU-s per datapoint, {float(r.steps.double().mean()):.0f} steps "
              f"on average, {float(r.converged.double().mean()):.0%} converged", flush=True)
        if family == "ffg":
            ffg = r.params["mean"], r.params["logvar"]
    a = ev["ais"]
    _, c = timed(lambda: ais_estimate(model, x, index, a, seed))
    cost["AIS"] = c / n_points
    print(f"  AIS {a['n_chains']} x {a['n_intermediate']} from the {a['init']}: {c / n_points:.2f} CPU-s per datapoint",
          flush=True)
    return cost


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="config whose evaluation settings the stages use")
    ap.add_argument("--data", required=True, help="the dataset's parquet (results/data/DATASET.parquet)")
    ap.add_argument("--model", action="append", required=True, help="model.pt (repeat for several)")
    ap.add_argument("--n-points", type=int, default=16)
    ap.add_argument("--project", type=int, default=1000, help="datapoints to project the CPU for")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = validate(yaml.safe_load(Path(args.preset).read_text()), SCHEMA)
    ev = evaluation_config(config, Path(args.data).stem)
    total = 0.0
    for path in args.model:
        print(f"{path}, {args.n_points} datapoints, 1 thread:", flush=True)
        per_point = sum(stage_costs(path, args.data, ev, args.n_points, config["seed"]).values())
        total += per_point
        print(f"  all stages: {per_point:.2f} CPU-s per datapoint; {args.project} datapoints: "
              f"{per_point * args.project / 60:.0f} CPU-minutes")
    print(f"all models: {total * args.project / 60:.0f} CPU-minutes for {args.project} datapoints each "
          f"(training and BDMC not included)")


if __name__ == "__main__":
    main()
