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

Each --variant NAME=JSON runs q*_Flow again from the same q*_FFG with the preset's
evaluation.local.flow changed by JSON (checked against the schema), timed like the preset's, and
is scored on the same draws: its gain over q*_Flow and its distance to the reference, so that a
setting which buys more per CPU-second would show. For example
--variant 'rate/2={"cycle_lr": 0.001}' --variant 'draws x4={"n_samples": 200, "cycle_steps": 100,
"probe_steps": 25}'.

    python scripts/qstar_flow_budget.py --preset workflow/presets/fashion_cpu.yaml \\
        --data results/data/fashion_mnist.parquet --model results/models/fashion_mnist/standard/ffg/model.pt \\
        --n-points 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qstar_reference import (  # noqa: E402
    dataset_of,
    elbo_common,
    load_frozen,
    load_preset,
    paired,
    parse_common,
    reference_flow,
    settings,
)

from vaegaps.config import evaluation_config, local_config  # noqa: E402
from vaegaps.errors import VaegapsError  # noqa: E402
from vaegaps.evaluate import evaluation_set, fit_qstar  # noqa: E402


def continuations(k: int, s: int) -> dict[str, tuple[int, int]]:
    """name: (steps, draws per step) of each continuation (module docstring)."""
    return {"ref": (k, 4 * s), "steps": (k, s), "draws": (max(1, k // 4), 4 * s), "long": (4 * k, s)}


def variants(args, dataset: str) -> dict[str, dict]:
    """NAME: the evaluation settings of the preset with that --variant's evaluation.local.flow
    changes, validated against the schema (an error names the variant and the key)."""
    out = {}
    for spec in args.variant:
        name, sep, text = spec.partition("=")
        try:
            changes = json.loads(text) if sep else None
        except json.JSONDecodeError as e:
            raise SystemExit(f"error: --variant {spec!r}: JSON after '=' does not parse ({e}); e.g. "
                             "'rate/2={\"cycle_lr\": 0.001}'") from None
        if not name or not isinstance(changes, dict):
            raise SystemExit(f"error: --variant {spec!r} must be NAME=JSON object, e.g. 'rate/2={{\"cycle_lr\": 0.001}}'")
        try:
            out[name] = evaluation_config(load_preset(args.preset, {"evaluation": {"local": {"flow": changes}}}),
                                          dataset)
        except VaegapsError as e:
            raise SystemExit(f"error: --variant {name!r}: {e}") from None
    return out


def timed_flow(model, x, index, ev, seed, ffg):
    """q*_Flow at the settings `ev` from q*_FFG `ffg`, and its process CPU-seconds."""
    c0 = time.process_time()
    r = fit_qstar(model, x, index, "flow", ev["local"], seed, (ffg["mean"], ffg["logvar"]))
    return r, time.process_time() - c0


def run(model_path, data_path, ev, seed, ref_steps, n_points, eval_samples, others=None):
    model = load_frozen(model_path)
    index, x = evaluation_set(data_path, ev["split"], n_points, "cpu")
    ffg = fit_qstar(model, x, index, "ffg", ev["local"], seed).params
    qstar, cpu_q = timed_flow(model, x, index, ev, seed, ffg)
    cpu = {"q*_Flow": cpu_q}
    cfg = local_config(ev["local"], "flow")
    lik = model.log_likelihood(x)
    params = {"q*_Flow": qstar.params}
    for name, (steps, draws) in continuations(ref_steps, cfg["n_samples"]).items():
        c0 = time.process_time()
        params[name] = reference_flow(model, lik, "flow", qstar.params, cfg, steps, seed, draws, stream="budget")
        cpu[name] = time.process_time() - c0
    runs = {}
    for name, ev_v in (others or {}).items():
        runs[name], cpu[name] = timed_flow(model, x, index, ev_v, seed, ffg)
        params[name] = runs[name].params
    scores = dict(zip(params, elbo_common(model, lik, "flow", list(params.values()), eval_samples, seed)))
    return qstar, cpu, scores, cfg, runs


def describe(r, cfg) -> str:
    """Steps, convergence and remaining gain of a q*_Flow run."""
    rg = r.remaining_gain.nan_to_num(0)
    return (f"{float(r.steps.double().mean()):.0f} steps x {cfg['n_samples']} draws; converged "
            f"{float(r.converged.double().mean()):.0%}; remaining_gain mean {float(rg.mean()):.4f} max "
            f"{float(rg.max()):.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="also run q*_Flow with these evaluation.local.flow changes (repeat; module docstring)")
    args = parse_common(ap, argv, n_points=8, ref_steps=1500, eval_samples=10000,
                        preset_help="config whose evaluation.local settings q*_Flow uses")
    ev, seed = settings(args)
    others = variants(args, dataset_of(args))
    print(f"q*_Flow, {args.n_points} datapoints per model, {ev['split']} split, seed {seed}, 1 thread, process "
          f"CPU; gain = L[continued] - L[q*_Flow] on {args.eval_samples} common draws")
    for path in args.model:
        qstar, cpu, scores, cfg, runs = run(path, args.data, ev, seed, args.ref_steps, args.n_points,
                                            args.eval_samples, others)
        print(f"{path}: q*_Flow {cpu['q*_Flow']:.1f} CPU-s, {describe(qstar, cfg)}", flush=True)
        for name, (steps, draws) in continuations(args.ref_steps, cfg["n_samples"]).items():
            g = scores[name] - scores["q*_Flow"]
            print(f"    {name:5s} {steps:5d} steps x {draws:3d} draws: {cpu[name]:6.1f} CPU-s; gain {paired(g)} "
                  f"max {float(g.max()):+.4f}; points gaining > gain_tol: {int((g > cfg['gain_tol']).sum())} "
                  f"of {len(g)}", flush=True)
        for name, r in runs.items():
            cfg_v = local_config(others[name]["local"], "flow")
            print(f"    variant {name}: {cpu[name]:.1f} CPU-s, {describe(r, cfg_v)}; L - L[q*_Flow] "
                  f"{paired(scores[name] - scores['q*_Flow'])}; L - L[ref] {paired(scores[name] - scores['ref'])}",
                  flush=True)


if __name__ == "__main__":
    main()
