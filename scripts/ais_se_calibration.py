"""Are AIS's per-datapoint standard errors honest? The pipeline's AIS run twice, with two seeds, on
the same datapoints of a trained model.

Two independent runs differ by more than 2 combined standard errors on about 4.6% of datapoints
when the errors are right. Prints that rate for the delta method alone and for the package's
`log_px_se` (the larger of the delta method's and a log-normal plug-in's, docs/method.md §5), and,
against the run's IWAE(q*) (its gaps.parquet), how often each run's AIS falls below it by 2
combined errors and on how many datapoints both runs do: a real shortfall of AIS repeats, noise
does not.

    python scripts/ais_se_calibration.py --preset workflow/presets/fashion_cpu_1000.yaml \\
        --results results --model fashion_mnist/standard/flow --n-points 500
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from vaegaps.ais import delta_method_se
from vaegaps.config import SCHEMA, evaluation_config, validate
from vaegaps.evaluate import ais_run, evaluation_set
from vaegaps.tables import ais_below
from vaegaps.vae import load_vae

NOMINAL = 2 * 0.5 * math.erfc(2 / math.sqrt(2))   # P(|Z| > 2) of a standard normal


def outside(a: np.ndarray, b: np.ndarray, se_a: np.ndarray, se_b: np.ndarray) -> np.ndarray:
    """Where a and b differ by more than 2 combined standard errors."""
    return np.abs(a - b) > 2 * np.hypot(se_a, se_b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="the config the run used")
    ap.add_argument("--results", required=True, type=Path, help="the run's results folder")
    ap.add_argument("--model", required=True, help="DATASET/VARIANT/FAMILY, e.g. fashion_mnist/standard/flow")
    ap.add_argument("--n-points", type=int, default=500, help="the first N datapoints of the evaluation set")
    ap.add_argument("--seeds", type=int, nargs=2, default=(0, 1), help="the two runs' seeds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = validate(yaml.safe_load(Path(args.preset).read_text()), SCHEMA)
    dataset = args.model.split("/")[0]
    ev = evaluation_config(config, dataset)
    cfg = ev["ais"]
    model = load_vae(args.results / "models" / args.model / "model.pt", "cpu")
    index, x = evaluation_set(args.results / "data" / f"{dataset}.parquet", ev["split"], args.n_points, "cpu")
    runs = []
    for seed in args.seeds:
        t = time.process_time()
        r = ais_run(model, x, index, cfg, seed)
        runs.append(tuple(v.double().numpy() for v in (r.log_px, r.log_px_se, delta_method_se(r.log_weights.double()))))
        print(f"seed {seed}: {time.process_time() - t:.0f} CPU-s", flush=True)
    (a0, se0, d0), (a1, se1, d1) = runs
    print(f"{args.model}, {len(index)} datapoints, {cfg['n_chains']} chains x {cfg['n_intermediate']}; "
          f"two runs outside 2 combined errors (nominal {NOMINAL:.1%}):")
    print(f"  delta method alone: {outside(a0, a1, d0, d1).mean():.1%};  log_px_se: {outside(a0, a1, se0, se1).mean():.1%}")
    gaps = args.results / "eval" / args.model / "gaps.parquet"
    if gaps.exists():
        g = pd.read_parquet(gaps).set_index("index").loc[index]
        iw, iw_se = g["iwae_qstar"].to_numpy(), g["iwae_qstar_se"].to_numpy()
        for name, s0, s1 in (("delta method alone", d0, d1), ("log_px_se", se0, se1)):
            b0, b1 = ais_below(a0, s0, iw, iw_se), ais_below(a1, s1, iw, iw_se)
            print(f"  AIS below IWAE(q*) by 2 combined errors, {name}: {b0.mean():.1%} and {b1.mean():.1%} "
                  f"({b0.sum()} and {b1.sum()} datapoints, {(b0 & b1).sum()} in both runs)")
        print(f"  paired AIS - IWAE(q*): {(a0 - iw).mean():+.4f} and {(a1 - iw).mean():+.4f}")


if __name__ == "__main__":
    main()
