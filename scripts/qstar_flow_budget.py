"""What q*_Flow still gains past its stopping point, and whether draws or steps buy it.

For each model: q*_FFG (not timed), then q*_Flow at the preset's settings (timed, from that
q*_FFG, as the pipeline runs it). From that q*_Flow, four continuations, each one cosine cycle
of Adam in standardised coordinates on the path-derivative gradient at half the cycle rate
(qstar_reference.py's reference search, with its steps and draws varied):

    ref        K steps  x 4S draws   (the reference of qstar_reference.py)
    steps      K steps  x  S draws   (the reference's steps, the preset's draws)
    draws      K/4      x 4S         (the reference's draws per step, a quarter of its steps)
    long       4K       x  S         (the reference's total draws, at the preset's draws per step)

K = --ref-steps, S = the preset's n_samples. Each is scored with q*_Flow on the same
--eval-samples fresh draws (common random numbers), so the printed gains are paired. The
preset's own estimate of what is left, `remaining_gain` (the last probe cycle's gain), is printed
beside them: issue 22 asks that `converged` mean within gain_tol of the optimum.

    python scripts/qstar_flow_budget.py --preset workflow/presets/fashion_cpu.yaml \\
        --data results/data/fashion_mnist.parquet --model results/models/fashion_mnist/standard/ffg/model.pt \\
        --n-points 8
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qstar_reference import elbo_common, load_frozen, parse_common, reference_flow, settings  # noqa: E402

from vaegaps.config import local_config  # noqa: E402
from vaegaps.evaluate import evaluation_set, fit_qstar  # noqa: E402


def continuations(k: int, s: int) -> dict[str, tuple[int, int]]:
    """name: (steps, draws per step) of each continuation (module docstring)."""
    return {"ref": (k, 4 * s), "steps": (k, s), "draws": (max(1, k // 4), 4 * s), "long": (4 * k, s)}


def run(model_path, data_path, ev, seed, ref_steps, n_points, eval_samples):
    model = load_frozen(model_path)
    index, x = evaluation_set(data_path, ev["split"], n_points, "cpu")
    ffg = fit_qstar(model, x, index, "ffg", ev["local"], seed).params
    c0 = time.process_time()
    qstar = fit_qstar(model, x, index, "flow", ev["local"], seed, (ffg["mean"], ffg["logvar"]))
    cpu = {"q*_Flow": time.process_time() - c0}
    cfg = local_config(ev["local"], "flow")
    lik = model.log_likelihood(x)
    params = {"q*_Flow": qstar.params}
    for name, (steps, draws) in continuations(ref_steps, cfg["n_samples"]).items():
        c0 = time.process_time()
        params[name] = reference_flow(model, lik, "flow", qstar.params, cfg, steps, seed, draws, stream="budget")
        cpu[name] = time.process_time() - c0
    scores = dict(zip(params, elbo_common(model, lik, "flow", list(params.values()), eval_samples, seed)))
    return qstar, cpu, scores, cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_common(ap, argv, n_points=8, ref_steps=1500, eval_samples=10000,
                        preset_help="config whose evaluation.local settings q*_Flow uses")
    ev, seed = settings(args)
    print(f"q*_Flow, {args.n_points} datapoints per model, {ev['split']} split, seed {seed}, 1 thread, process "
          f"CPU; gain = L[continued] - L[q*_Flow] on {args.eval_samples} common draws")
    for path in args.model:
        qstar, cpu, scores, cfg = run(path, args.data, ev, seed, args.ref_steps, args.n_points, args.eval_samples)
        rg = qstar.remaining_gain.nan_to_num(0)
        print(f"{path}: q*_Flow {cpu['q*_Flow']:.1f} CPU-s, {float(qstar.steps.double().mean()):.0f} steps x "
              f"{cfg['n_samples']} draws; converged {float(qstar.converged.double().mean()):.0%}; remaining_gain "
              f"mean {float(rg.mean()):.4f} max {float(rg.max()):.4f}", flush=True)
        for name, (steps, draws) in continuations(args.ref_steps, cfg["n_samples"]).items():
            g = scores[name] - scores["q*_Flow"]
            print(f"    {name:5s} {steps:5d} steps x {draws:3d} draws: {cpu[name]:6.1f} CPU-s; gain mean "
                  f"{float(g.mean()):+.4f} se {float(g.std()) / math.sqrt(len(g)):.4f} min {float(g.min()):+.4f} "
                  f"max {float(g.max()):+.4f}; points gaining > gain_tol: {int((g > cfg['gain_tol']).sum())} "
                  f"of {len(g)}", flush=True)


if __name__ == "__main__":
    main()
