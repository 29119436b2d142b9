"""The refinement curves of a finished run against what they must satisfy (docs/method.md §12).

For every results/eval/DATASET/VARIANT/FAMILY/refinement.parquet of a run, on the same datapoints:

* k = 0 is the encoder's q: the paired mean of L_0 − L[q] (L[q] from amortized.parquet) with its
  standard error, and how many datapoints differ by more than 3 combined Monte Carlo standard errors;
* the curve stays below log p(x): the largest over k of the paired mean of L_k − log p̂ (log p̂
  from the gaps Parquet) with its standard error, and how many (datapoint, k) lie above log p̂ by
  more than 3 combined standard errors;
* the fraction of the amortization gap closed at the largest k (results/refinement.csv).

    python scripts/refinement_checks.py --results results
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def _paired(d: np.ndarray) -> tuple[float, float]:
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    res = Path(args.results)
    table = pd.read_csv(res / "refinement.csv")
    for path in sorted((res / "eval").glob("*/*/*/refinement.parquet")):
        dataset, variant, family = path.parts[-4], path.parts[-3], path.parts[-2]
        curve = pd.read_parquet(path)
        amortized = pd.read_parquet(path.parent / "amortized.parquet").set_index("index")
        gaps = pd.read_parquet(path.parent / "gaps.parquet").set_index("index")
        k0 = curve[curve["steps"] == 0].set_index("index")
        d0 = k0["elbo"] - amortized.loc[k0.index, "elbo"]
        se0 = np.hypot(k0["elbo_se"], amortized.loc[k0.index, "elbo_se"])
        m0, s0 = _paired(d0.to_numpy())
        over = curve.assign(log_px=gaps.loc[curve["index"], "log_px"].to_numpy(),
                            log_px_se=gaps.loc[curve["index"], "log_px_se"].to_numpy())
        over["d"] = over["elbo"] - over["log_px"]
        worst = max((_paired(g["d"].to_numpy()) for _, g in over.groupby("steps")), key=lambda t: t[0])
        beyond = int((over["d"] > 3 * np.hypot(over["elbo_se"], over["log_px_se"])).sum())
        rows = table[(table["dataset"] == dataset) & (table["variant"] == variant) & (table["family"] == family)]
        last = rows.sort_values("steps").iloc[-1]
        print(f"{dataset} {variant}/{family} ({len(k0)} points): L_0 − L[q] = {m0:.3f} ± {s0:.3f} nats "
              f"({int((d0.abs() > 3 * se0).sum())} beyond 3 se); largest mean L_k − log p̂ = {worst[0]:.3f} ± "
              f"{worst[1]:.3f} nats ({beyond} of {len(over)} points above log p̂ beyond 3 se); fraction closed "
              f"at k = {int(last['steps'])}: {last['fraction_closed']:.3f} ± {last['fraction_closed_se']:.3f}")


if __name__ == "__main__":
    main()
