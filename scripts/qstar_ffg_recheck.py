"""q*_FFG's unconverged datapoints of a finished run, optimised again and probed again.

Reads a model's `local_ffg.parquet` from a results folder, takes the datapoints not marked
`converged`, and runs the Newton iteration again from their stored q*_FFG (on a fresh random
stream, at the preset's q*_FFG settings), then the remaining-gain probe. Prints how much L[q*_FFG]
rose (both q scored on the same --eval-samples fresh draws, so the difference has little noise)
and how many the new probe calls converged. A rise well below `gain_tol` says those points were already at their optimum and the
probe read high there; a rise near their estimated gain says the optimiser stopped early.

    python scripts/qstar_ffg_recheck.py --preset workflow/presets/fashion_cpu_1000.yaml \\
        --results results --model fashion_mnist/standard/flow
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from vaegaps.config import SCHEMA, evaluation_config, local_config, validate
from vaegaps.evaluate import evaluation_set, qstar_params
from vaegaps.local_opt import optimize_local
from vaegaps.vae import load_vae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qstar_reference import elbo_common  # noqa: E402  (a sibling script)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="the config the run used")
    ap.add_argument("--results", required=True, type=Path, help="the run's results folder")
    ap.add_argument("--model", required=True, help="DATASET/VARIANT/FAMILY, e.g. fashion_mnist/standard/flow")
    ap.add_argument("--stream", default="recheck", help="random stream of the new run (default: recheck)")
    ap.add_argument("--eval-samples", type=int, default=20000, help="common fresh draws scoring both q")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = validate(yaml.safe_load(Path(args.preset).read_text()), SCHEMA)
    dataset = args.model.split("/")[0]
    ev = evaluation_config(config, dataset)
    cfg = local_config(ev["local"], "ffg")
    frame = pd.read_parquet(args.results / "eval" / args.model / "local_ffg.parquet").set_index("index")
    model = load_vae(args.results / "models" / args.model / "model.pt", "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    index, x = evaluation_set(args.results / "data" / f"{dataset}.parquet", ev["split"], len(frame), "cpu")
    frame = frame.loc[index]
    todo = ~frame["converged"].to_numpy()
    if not todo.any():
        print(f"{args.model}: every q*_FFG is converged; nothing to recheck")
        return
    rows = torch.as_tensor(todo)
    mean, logvar = (v.to(x.dtype) for v in qstar_params(frame.reset_index(), index[todo], "cpu"))
    t0 = time.process_time()
    r = optimize_local(model.log_likelihood(x[rows]), model.z_dim, int(todo.sum()), family="ffg",
                       n_samples=cfg["n_samples"], max_steps=cfg["max_steps"], final_samples=cfg["final_samples"],
                       generator=config["seed"], index=torch.as_tensor(index[todo]), init=(mean, logvar),
                       stream=args.stream, method="newton", newton_step=cfg["newton_step"],
                       newton_window=cfg["newton_window"], gain_tol=cfg["gain_tol"], gain_samples=cfg["gain_samples"])
    cpu = time.process_time() - t0
    old, new = elbo_common(model, model.log_likelihood(x[rows]), "ffg", [{"mean": mean, "logvar": logvar},
                           {k: r.params[k] for k in ("mean", "logvar")}], args.eval_samples, config["seed"])
    rise = (new - old).numpy()
    gain = frame["remaining_gain"].to_numpy()[todo]
    print(f"{args.model}: {int(todo.sum())} of {len(frame)} q*_FFG not converged (estimated remaining gain "
          f"{gain.min():.4f}-{gain.max():.4f} nats); optimised again ({cpu:.0f} CPU-s, "
          f"{float(r.steps.double().mean()):.0f} steps on average): L[q*_FFG] rose by {rise.mean():+.4f} ± "
          f"{rise.std(ddof=1) / math.sqrt(len(rise)):.4f} nats on average (median {np.median(rise):+.4f}, max "
          f"{rise.max():+.4f}; {int((rise > cfg['gain_tol']).sum())} rose by more than gain_tol); the new probe calls "
          f"{int(r.converged.sum())} of them converged")


if __name__ == "__main__":
    main()
