"""The refinement curve of finished models at several learning rates (docs/method.md §12).

For each model (results/models/DATASET/VARIANT/FAMILY/model.pt of a finished run, with its
amortized and local_<family> Parquet under results/eval/), the refinement curve of its evaluation
set at each --lr, with the study's other refinement settings (or --optimizer, --n-samples), and
the fraction of the amortization gap closed at each k (`vaegaps.tables.refinement_table`): how the
default `evaluation.refinement.lr` was chosen. Also prints the largest posterior precision of
q*_FFG (exp(−qstar_logvar)), which bounds the stable plain-gradient rate (lr · precision < 2).

    python scripts/refinement_lr.py --results results --dataset digits \\
        --model standard/ffg --model standard/flow --lr 1e-3 3e-3 1e-2
    python scripts/refinement_lr.py --results RESULTS --config workflow/presets/fashion_cpu.yaml \
        --dataset fashion_mnist --model standard/ffg --lr 1e-3 1.5e-3 3e-3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from vaegaps.config import SCHEMA, evaluation_config, refinement_config, validate
from vaegaps.errors import VaegapsError
from vaegaps.evaluate import evaluation_set, refinement_curve
from vaegaps.tables import refinement_table
from vaegaps.vae import load_vae


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results", help="the results folder of a finished run")
    ap.add_argument("--config", default="config.yaml", help="the run's study (config.yaml or its --configfile)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", action="append", required=True, help="VARIANT/FAMILY (repeatable)")
    ap.add_argument("--lr", type=float, nargs="+", required=True)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default=None)
    ap.add_argument("--n-samples", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = Path(args.results)
    study = yaml.safe_load(Path(args.config).read_text())
    ev = evaluation_config(validate(study, SCHEMA), args.dataset)
    index, x = evaluation_set(res / "data" / f"{args.dataset}.parquet", ev["split"], ev["n_points"], "cpu")
    for ref in args.model:
        variant, family = ref.split("/")
        model = load_vae(res / "models" / args.dataset / variant / family / "model.pt", "cpu")
        amortized = pd.read_parquet(res / "eval" / args.dataset / variant / family / "amortized.parquet")
        qstar = pd.read_parquet(res / "eval" / args.dataset / variant / family / f"local_{family}.parquet")
        ffg = res / "eval" / args.dataset / variant / family / "local_ffg.parquet"
        sharpness = ""
        if ffg.exists():
            precision = np.exp(-np.stack(pd.read_parquet(ffg)["qstar_logvar"].to_numpy()))
            sharpness = f"; q*_FFG precision: largest {precision.max():.1f}, median {np.median(precision):.2f}"
        print(f"\n{args.dataset} {ref}: amortization gap {float((qstar['elbo'] - amortized['elbo']).mean()):.3f} nats "
              f"on {len(index)} points{sharpness}")
        base = refinement_config(ev["refinement"], family)   # the study's settings for this family
        base.update({k: v for k, v in (("optimizer", args.optimizer), ("n_samples", args.n_samples)) if v is not None})
        for lr in args.lr:
            cfg = {**base, "lr": lr}
            start = time.process_time()
            try:
                curve = refinement_curve(model, x, index, family, cfg, study.get("seed", 0))
            except VaegapsError as exc:
                print(f"  {cfg['optimizer']} lr {lr:g}: {exc}")
                continue
            table = refinement_table(curve, amortized, qstar)
            print(f"  {cfg['optimizer']} lr {lr:g}, {cfg['n_samples']} draws per step "
                  f"({time.process_time() - start:.0f} CPU-s):")
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
