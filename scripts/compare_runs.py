"""Two results folders, compared datapoint by datapoint where their evaluation sets overlap.

For every model both folders evaluated (results/eval/DATASET/VARIANT/FAMILY/), reads one
estimator's per-datapoint Parquet from each, pairs the rows by datapoint `index`, and prints the
mean, standard error and extremes of (B − A) for its main column (`log_px` for ais, `elbo` for
the others), with each side's mean steps on those datapoints where the file has them. Use it to measure what a
preset's change of settings does to the numbers on the points both runs share, e.g. the
1000-point Fashion-MNIST preset against the 50-point one:

    python scripts/compare_runs.py --a RUN50/results --b RUN1000/results --estimator local_flow
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

ESTIMATORS = ("amortized", "local_ffg", "local_flow", "local_realnvp", "ais")


def shared_rows(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of both frames for the datapoints both hold, aligned by `index`."""
    a, b = a.set_index("index"), b.set_index("index")
    shared = a.index.intersection(b.index)
    return a.loc[shared], b.loc[shared]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, type=Path, help="first results folder (A)")
    ap.add_argument("--b", required=True, type=Path, help="second results folder (B)")
    ap.add_argument("--estimator", default="local_flow", choices=ESTIMATORS)
    args = ap.parse_args(argv)
    column = "log_px" if args.estimator == "ais" else "elbo"
    found = sorted(p.relative_to(args.a / "eval") for p in (args.a / "eval").glob(f"*/*/*/{args.estimator}.parquet"))
    pairs = [p for p in found if (args.b / "eval" / p).exists()]
    if not pairs:
        raise SystemExit(f"error: no {args.estimator}.parquet that both {args.a}/eval and {args.b}/eval hold; "
                         "give two results folders of runs that evaluated the same models")
    print(f"{args.estimator}: B − A of `{column}` on the datapoints both runs evaluated (nats)")
    for rel in pairs:
        a, b = shared_rows(pd.read_parquet(args.a / "eval" / rel), pd.read_parquet(args.b / "eval" / rel))
        d = (b[column] - a[column]).astype(float)
        if d.empty:
            print(f"  {rel.parent}: no shared datapoints")
            continue
        se = float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.nan
        steps = ""
        if "steps" in a and "steps" in b:
            steps = f"; mean steps on them A {a['steps'].mean():.0f}, B {b['steps'].mean():.0f}"
        print(f"  {rel.parent}: n = {len(d)}, mean {d.mean():+.4f} ± {se:.4f}, min {d.min():+.4f}, "
              f"max {d.max():+.4f}{steps}")


if __name__ == "__main__":
    main()
