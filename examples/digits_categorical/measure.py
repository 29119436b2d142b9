"""Measure the gaps of the example VAE from Python: per-datapoint L[q], L[q*_FFG], L[q*_Flow],
log p̂ and the gaps (vaegaps.measure), the BDMC certificate of its AIS setting (vaegaps.certify),
and the Table 2 row (vaegaps.summary). Run train.py first.

    python examples/digits_categorical/measure.py            # 50 training digits: ~6 CPU-minutes
    python examples/digits_categorical/measure.py --quick    # 6 digits, light settings: seconds (CI)

The settings (EXAMPLE) are the defaults of vaegaps.measure (docs/method.md §11) with q*_Flow's
nets 50 wide instead of 200 and q* capped at 2000 steps: with the defaults, 100 digits take
~25 minutes on one thread, mostly in q*_Flow. user.yaml uses the same settings, so the pipeline
gives the same rows.
"""

import argparse
import sys
from pathlib import Path

import torch

import vaegaps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import load  # noqa: E402

EXAMPLE = dict(n_points=50, flow_hidden=50, local={"max_steps": 2000})
# light settings for CI: the numbers are rough, the code path is the full one
QUICK = dict(n_points=6, amortized={"n_samples": 200}, flow_hidden=16,
             local={"n_samples": 10, "check_every": 20, "max_steps": 100, "final_samples": 200},
             ais={"n_chains": 4, "n_intermediate": 30, "pilot_chains": 2})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE), help="folder holding vae.pt and digits.npy (train.py --out)")
    ap.add_argument("--quick", action="store_true", help="6 digits and light estimator settings (CI)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    model = load(out / "vae.pt")
    settings = QUICK if args.quick else EXAMPLE
    gaps = vaegaps.measure(model, out / "digits.npy", **settings)   # one row per datapoint
    bdmc = vaegaps.certify(model, out / "digits.npy", bdmc_points=4 if args.quick else 20, **settings)
    gaps.to_csv(out / "gaps.csv", index=False)
    print(gaps[["index", "log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized",
                "approximation_gap", "amortization_gap", "inference_gap"]].round(2).to_string(index=False))
    row = vaegaps.summary(gaps, bdmc).iloc[0]
    print("\nTable 2 row (mean ± standard error over datapoints, nats):")
    for key in ("log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized",
                "approximation_gap", "amortization_gap", "inference_gap", "bdmc_gap"):
        print(f"  {key:18s} {row[key]:9.2f} ± {row[key + '_se']:.2f}")
    print(f"  q*_FFG converged on {row['frac_converged_local_ffg']:.0%}, AIS below an IWAE (of q* or q) on "
          f"{row['frac_ais_below_any_bound']:.0%} of the datapoints, IWAE(q) untrusted (k̂ > 0.7) on "
          f"{row['frac_iwae_amortized_untrusted']:.0%}; wrote {out / 'gaps.csv'}")


if __name__ == "__main__":
    main()
