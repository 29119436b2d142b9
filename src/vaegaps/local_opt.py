"""L[q*]: the best member of a variational family for each datapoint, found by optimisation.

One q per datapoint (FFG: mean and log-variance; Flow: a whole flow, biases included), all
datapoints in one batched tensor. Adam with S samples per step; every `check_every` steps a
datapoint's mean loss over the window is compared with its best so far, and that datapoint
stops after `patience` checks without improvement (docs/method.md §4). `max_steps` caps every
datapoint, whatever `check_every` is. Stopped datapoints leave the working batch, so the rest
run faster; results are keyed by datapoint index and do not depend on the batch.

A datapoint whose loss turns non-finite is taken out at once and restarted from its initial
parameters at a tenth of the learning rate (up to `restarts` times); one that diverges at every
learning rate is reported in `diverged`, never as converged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.func import functional_call

from . import rng
from .adam import adam_update
from .bounds import SAMPLE_BATCH, elbo_loss_and_grads, monte_carlo_bounds
from .config import defaults, local_method
from .cycles import GRADIENTS, adam_cycles
from .errors import VaegapsError
from .families import FAMILIES, LocalPosterior
from .likelihood import (
    InputError,
    LogLikelihood,
    batches,
    check_index,
    check_int,
    check_likelihood,
    check_number,
    check_optional_int,
    restrict,
)
from .newton import gain_estimate, newton_ffg

log = logging.getLogger(__name__)

LR_BACKOFF = 0.1   # learning-rate factor for each restart of a diverged datapoint
MORE_RUNS = 2      # newton: further runs of a datapoint whose fresh probe still finds gain_tol left
# A direct call's defaults are a study's: the schema's evaluation.local section (config.schema.yaml),
# and its model.flow_steps for a flow's coupling steps.
LOCAL_DEFAULTS = defaults("local")
_D = LOCAL_DEFAULTS
FLOW_STEPS = defaults("model")["flow_steps"]
# Draws on which each datapoint picks its start (of several) and then the better of start and
# optimum: their own draws, so the reported bounds (final_samples fresh ones) carry no selection
# bias. Not a setting: it decides only which candidate a datapoint keeps, never a reported number.
SELECT_SAMPLES = 1000


def resolve_method(method: str, family: str) -> str:
    """config.local_method, as an InputError (an estimator's argument)."""
    try:
        return local_method(method, family)
    except VaegapsError as e:
        raise InputError(str(e)) from None


@dataclass
class LocalResult:
    """What `optimize_local` returns, per datapoint (N)."""

    elbo: torch.Tensor       # (N,) L[q*] with `final_samples` fresh samples
    iwae: torch.Tensor       # (N,) IWAE-`final_samples` of q*
    steps: torch.Tensor      # (N,) optimisation steps taken (of the last attempt)
    converged: torch.Tensor  # (N,) stopped by the patience rule (False: hit max_steps)
    elbo_se: torch.Tensor    # (N,) Monte Carlo standard error of `elbo`
    params: dict             # name -> (N, ...) final parameters of q*
    iwae_se: torch.Tensor | None = None    # (N,) delta-method standard error of `iwae`
    restarts: torch.Tensor | None = None   # (N,) restarts after divergence (0: none)
    diverged: torch.Tensor | None = None   # (N,) non-finite at every learning rate tried (q* = start)
    iwae_khat: torch.Tensor | None = None  # (N,) Pareto k̂ of the weights of `iwae` (vaegaps.pareto)
    remaining_gain: torch.Tensor | None = None   # (N,) FFG: estimated gain in L left at q* (NaN: flows)


class _Run:
    """Bookkeeping of one optimisation over n datapoints: the working (active) rows and, per
    datapoint, its final parameters, steps, convergence and divergence."""

    def __init__(self, params: dict, max_steps: int):
        n = next(iter(params.values())).shape[0]
        self.full = {k: p.detach().clone() for k, p in params.items()}
        self.work = {k: p.clone() for k, p in self.full.items()}
        self.adam_m = {k: torch.zeros_like(p) for k, p in self.full.items()}
        self.adam_v = {k: torch.zeros_like(p) for k, p in self.full.items()}
        dev = next(iter(params.values())).device
        self.active = torch.arange(n, device=dev)
        self.steps = torch.full((n,), max_steps, dtype=torch.int64)
        self.converged = torch.zeros(n, dtype=torch.bool)
        self.diverged = torch.zeros(n, dtype=torch.bool)
        self.best = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
        self.bad = torch.zeros(n, dtype=torch.int64, device=dev)
        self.window = torch.zeros(n, dtype=torch.float64, device=dev)

    def finish(self, done: torch.Tensor, step: int, converged: torch.Tensor, diverged: bool = False):
        """Take the active rows flagged in `done` out of the working batch."""
        rows = self.active[done]
        if not diverged:
            for k in self.full:
                self.full[k][rows] = self.work[k][done]
        self.steps[rows.cpu()] = step
        self.converged[rows.cpu()] = converged.cpu()
        self.diverged[rows.cpu()] = diverged
        keep = ~done
        self.active = self.active[keep]
        for d in (self.work, self.adam_m, self.adam_v):
            for k in d:
                d[k] = d[k][keep]


def _optimize_batch(q, params, log_likelihood, index, seed, stream, n_samples, lr, check_every,
                    patience, max_steps) -> _Run:
    """Optimise the per-datapoint `params` of q (functional form) from where they are."""
    run = _Run(params, max_steps)
    n = index.shape[0]
    loglik = log_likelihood
    z_dim, n_noise = params["mean"].shape[-1], q.n_noise
    for step in range(1, max_steps + 1):
        noise = rng.normal(seed, stream, index[run.active], step, (n_samples, n_noise, z_dim),
                           dtype=params["mean"].dtype)
        loss, grads = elbo_loss_and_grads(lambda p, e: functional_call(q, p, (e,)), run.work, loglik,
                                          noise)   # (n_active,) −ELBO
        with torch.no_grad():
            blown = ~torch.isfinite(loss)
            for g in grads:   # a non-finite gradient poisons the parameters just as surely
                blown |= ~torch.isfinite(g.reshape(g.shape[0], -1).sum(-1))   # 30x cheaper than .all()
            if blown.any():
                run.finish(blown, step, torch.zeros(int(blown.sum()), dtype=torch.bool), diverged=True)
                keep = ~blown
                loss, grads = loss[keep], [g[keep] for g in grads]
            keys = list(run.work)
            adam_update([run.work[k].detach_() for k in keys], list(grads), [run.adam_m[k] for k in keys],
                        [run.adam_v[k] for k in keys], step, lr)
            run.window[run.active] += loss.double()
            full_window = step % check_every == 0
            if full_window:
                mean_loss = run.window[run.active] / check_every
                run.window.zero_()
                improved = mean_loss < run.best[run.active]
                run.best[run.active] = torch.where(improved, mean_loss, run.best[run.active])
                run.bad[run.active] = torch.where(improved, 0, run.bad[run.active] + 1)
                if step % (10 * check_every) == 0:
                    log.info("%s: step %d, %d of %d datapoints still optimising, mean loss %.3f",
                             stream, step, run.active.numel(), n, mean_loss.mean().item())
            changed = bool(blown.any())
            if full_window or step == max_steps:
                stopped = run.bad[run.active] >= patience
                done = torch.ones_like(stopped) if step == max_steps else stopped
                if done.any():
                    run.finish(done, step, stopped[done])
                    changed = True
            if not run.active.numel():
                break
            if changed:
                loglik = restrict(log_likelihood, run.active, n)
    return run


def optimize_local(log_likelihood: LogLikelihood, z_dim: int, n_points: int, family: str = "ffg",
                   n_samples: int = _D["n_samples"], lr: float = _D["lr"], check_every: int = _D["check_every"],
                   patience: int = _D["patience"], max_steps: int = _D["max_steps"],
                   final_samples: int = _D["final_samples"],
                   generator: torch.Generator | int | None = None, *, index: torch.Tensor | None = None,
                   init: tuple[torch.Tensor, torch.Tensor] | dict | list[dict] | None = None,
                   hidden: int | None = None, flow_steps: int = FLOW_STEPS, restarts: int = _D["restarts"],
                   select_samples: int = SELECT_SAMPLES, batch_size: int | None = None,
                   sample_batch: int = SAMPLE_BATCH, dtype: torch.dtype | None = None, device=None,
                   stream: str = "local", method: str = _D["method"], newton_step: float = _D["newton_step"],
                   newton_window: int = _D["newton_window"], gain_tol: float = _D["gain_tol"],
                   gain_samples: int = _D["gain_samples"], cycle_lr: float = _D["cycle_lr"],
                   cycle_steps: int = _D["cycle_steps"], probe_steps: int = _D["probe_steps"],
                   gradient: str = _D["gradient"]) -> LocalResult:
    """Fit one q of `family` ('ffg', 'flow', 'realnvp') per datapoint and score it with fresh samples.

    Starts at the prior, or at `init`: a (mean, logvar) pair (e.g. the encoder's), a dict of
    per-datapoint parameters named as in `LocalPosterior` (e.g. `LocalPosterior.from_amortized`),
    each of leading size n_points, or a list of such dicts, of which each datapoint starts from
    the one with the highest ELBO. Each datapoint keeps the better of its start and its optimised
    q. Both choices are made on `select_samples` samples of their own, so the reported bounds,
    from `final_samples` fresh ones, carry no selection bias. A datapoint whose loss becomes
    non-finite restarts from its start with lr × 0.1, at most `restarts` times; `diverged` marks
    the ones that never finished (they keep their start, not converged).

    Arguments are checked first (a ValueError naming the argument and what it accepts), and the
    likelihood once, on z of shape (N, S, D): it must return (N, S) (vaegaps.likelihood).

    q* is found by `method` ('auto': newton for FFG, cycles for flows): 'newton' (FFG only,
    vaegaps.newton: a damped variational Newton iteration with antithetic draws, no learning rate;
    `newton_step` is its initial step fraction, and a datapoint stops when the gain estimated over
    a window of `newton_window` steps is below `gain_tol`), 'cycles' (flows only, vaegaps.cycles:
    Adam in the start's standardised coordinates, a first cosine cycle of `cycle_steps` at peak
    rate `cycle_lr`, then probe cycles of `probe_steps` until one gains less than `gain_tol` on
    `gain_samples` common draws; its steps follow the path-derivative gradient, or the
    reparametrised one with `gradient` 'reparam') or 'adam' (the patience rule below). Every FFG q* is then
    probed on rounds of `gain_samples` fresh draws, 2 to 16, more until the estimate is below
    `gain_tol` or far above it by 2 standard errors (`remaining_gain`, vaegaps.newton.gain_estimate), and is
    `converged` only where that estimate is below `gain_tol` nats (under 'newton', a datapoint
    that stopped by its own test but whose probe reads `gain_tol` or more runs again from there,
    on draws of its own, and is probed again, at most MORE_RUNS times; `steps` counts all runs); a flow's `remaining_gain` is
    its last probe cycle's gain (cycles) or NaN (adam, converged by the patience rule).

    Args:
        log_likelihood: z (N, S, D) -> log p(x_n | z_ns) (N, S); see vaegaps.likelihood.
        z_dim, n_points: D and N.
        family: 'ffg', 'flow' or 'realnvp' (with `hidden` width and `flow_steps` for flows).
        n_samples: samples per datapoint per step (≥ 1; newton and cycles draw antithetic pairs and
            round it up to even).
        lr: Adam learning rate of method 'adam' (> 0).
        cycle_lr, cycle_steps, probe_steps, gradient: method 'cycles' (see above; `gradient`
            'path' or 'reparam' changes the steps only, never how L[q*] is estimated).
        check_every, patience: a datapoint stops after `patience` windows of `check_every`
            steps without a lower mean loss (the convergence rule); `max_steps` caps it.
        final_samples: fresh samples for the reported ELBO and IWAE of q*.
        generator, index, stream: seed and datapoint ids that key every random draw.
        init: the start(s), as above; None for the prior.
        restarts: restarts at lr × 0.1 after a non-finite loss (≥ 0).
        select_samples: samples for choosing between starts and between start and optimum.
        batch_size, sample_batch: datapoints per batch and samples per batch (memory only;
            results do not depend on them).
        dtype, device: of the parameters (default: the likelihood's).
        The settings default to the schema's evaluation.local ones (LOCAL_DEFAULTS): a study's values.

    Returns:
        LocalResult: elbo, iwae, elbo_se, iwae_se, iwae_khat (N,), steps (N,), converged (N,), restarts (N,),
        diverged (N,), remaining_gain (N,) and params (the per-datapoint parameters of q*).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    method = resolve_method(method, family)
    for name, value in (("n_samples", n_samples), ("check_every", check_every), ("patience", patience),
                        ("max_steps", max_steps), ("final_samples", final_samples), ("flow_steps", flow_steps),
                        ("select_samples", select_samples), ("sample_batch", sample_batch),
                        ("newton_window", newton_window), ("gain_samples", gain_samples),
                        ("cycle_steps", cycle_steps), ("probe_steps", probe_steps)):
        check_int(name, value)
    check_int("restarts", restarts, 0)
    check_optional_int("batch_size", batch_size)
    check_optional_int("hidden", hidden)
    check_number("lr", lr)
    check_number("cycle_lr", cycle_lr)
    check_number("newton_step", newton_step, 0.0, 1.0, closed="high")
    check_number("gain_tol", gain_tol)
    if gradient not in GRADIENTS:
        raise InputError(f"gradient must be one of {', '.join(GRADIENTS)}, got {gradient!r}")
    dtype, device = check_likelihood(log_likelihood, z_dim, n_points, dtype, device)
    seed = rng.seed_from(generator)
    index = check_index(index, n_points).to(device, torch.int64)
    if isinstance(init, tuple):
        init = {"mean": init[0], "logvar": init[1]}
    candidates = _check_init(init if isinstance(init, list) else [init or {}],
                             LocalPosterior(family, 1, z_dim, hidden, flow_steps), n_points)
    results = []
    for sl in batches(n_points, batch_size):
        q = LocalPosterior(family, sl.stop - sl.start, z_dim, hidden, flow_steps)
        q = q.to(device=device, dtype=dtype).init_keyed(seed, stream, index[sl])
        loglik = restrict(log_likelihood, sl, n_points)

        def bounds(params, samples, name, with_se=False):
            def noise_fn(offset, s):
                return rng.normal(seed, f"{stream}/{name}", index[sl], 0, (s, q.n_noise, z_dim),
                                  offset=offset, dtype=dtype)
            with torch.no_grad():
                out = monte_carlo_bounds(lambda e: functional_call(q, params, (e,)), loglik, samples,
                                         noise_fn, sample_batch, iwae_diagnostics=with_se)
            return out if with_se else out.elbo

        starts = [_overlay(q, c, sl) for c in candidates]
        start = starts[0] if len(starts) == 1 else _pick(starts, [bounds(p, select_samples, "select_start")
                                                                 for p in starts])
        gain = torch.full((sl.stop - sl.start,), torch.nan, dtype=torch.float64)

        def newton(p0, lik, idx, strm):   # one Newton run; the probe's half of the draws as its minimum
            return newton_ffg(p0, lik, idx, seed, strm, n_samples, newton_step, newton_window, max_steps,
                              gain_tol, gain_samples // 2)

        def probe(p, lik, idx, strm):   # FFG's remaining gain on fresh draws (vaegaps.newton.gain_estimate)
            return gain_estimate(lik, p["mean"], p["logvar"], seed, strm, idx, gain_samples, gain_tol).cpu()

        if method == "newton":
            run = newton(start, loglik, index[sl], stream)
            params = {**start, **run.full}
            steps, converged, diverged = run.steps, run.converged, run.diverged
            n_restarts = torch.zeros(len(steps), dtype=torch.int64)
        elif method == "cycles":
            fresh = {k: p.detach() for k, p in q.named_parameters()}   # the keyed initial weights

            def fit(p0, lik, idx, strm, rate, rows):
                return adam_cycles(q, p0, lik, idx, seed, strm, n_samples, rate, cycle_steps, probe_steps,
                                   max_steps, gain_tol, gain_samples, select_samples, sample_batch,
                                   {k: v[rows] for k, v in fresh.items()}, gradient=gradient)
            params, steps, converged, n_restarts, diverged, gain = _with_restarts(
                fit, start, loglik, index[sl], stream, cycle_lr, restarts)
        else:
            def fit(p0, lik, idx, strm, rate, rows):
                return _optimize_batch(q, p0, lik, idx, seed, strm, n_samples, rate, check_every, patience,
                                       max_steps)
            params, steps, converged, n_restarts, diverged, _ = _with_restarts(
                fit, start, loglik, index[sl], stream, lr, restarts)
        # keep the start where the optimised q is no better (a diverged one never is)
        sel = [bounds(start, select_samples, "select_final"), bounds(params, select_samples, "select_final")]
        sel[1] = torch.where(diverged.to(sel[1].device), -torch.inf, torch.nan_to_num(sel[1], nan=-torch.inf))
        params = _pick([start, params], sel)
        if family == "ffg":   # converged means close to the optimum, judged on fresh draws
            gain = probe(params, loglik, index[sl], f"{stream}/gain")
            if method == "newton":
                params, steps, gain = _newton_until_probed(newton, probe, params, steps, gain, diverged, loglik,
                                                           index[sl], stream, max_steps, gain_tol)
            converged = (gain < gain_tol) & ~diverged
        elbo, iwae, se, iwae_se, khat = bounds(params, final_samples, "final", with_se=True)
        results.append((elbo, iwae, steps, converged, se, iwae_se, n_restarts, diverged, khat, gain, params))
    elbo, iwae, steps, converged, se, iwae_se, n_restarts, diverged, khat, gain = (
        torch.cat(x) for x in list(zip(*results))[:10])
    params = {k: torch.cat([r[10][k] for r in results]) for k in results[0][10]}
    return LocalResult(elbo, iwae, steps, converged, se, params, iwae_se, n_restarts, diverged,
                       iwae_khat=khat, remaining_gain=gain)


def _newton_until_probed(newton, probe, params, steps, gain, diverged, loglik, index, stream, max_steps, gain_tol):
    """Newton runs again, from where it stopped, on each datapoint that stopped by its own test
    but whose fresh probe still finds `gain_tol` or more left (at most MORE_RUNS times, each up
    to `max_steps`, on draws of their own), and is probed again on fresh draws. A datapoint stopped
    by `max_steps`, or diverged, is not continued. `newton(params, lik, index, stream)` and
    `probe(params, lik, index, stream)` are the first run's and probe's, with their settings.
    Returns params, total steps and the last probe's gain. The run only continues the search: the
    final L[q*] comes from fresh draws after."""
    params = {k: v.clone() for k, v in params.items()}
    steps, gain = steps.clone(), gain.clone()
    n = index.shape[0]
    for k in range(1, MORE_RUNS + 1):
        rows = ((gain >= gain_tol) & ~diverged & (steps < max_steps)).nonzero().squeeze(-1)
        if not rows.numel():
            break
        dev_rows = rows.to(index.device)
        lik = restrict(loglik, dev_rows, n)
        run = newton({key: params[key][dev_rows] for key in ("mean", "logvar")}, lik, index[dev_rows],
                     f"{stream}/more{k}")
        ok = ~run.diverged   # a run that blew up keeps where it was
        dev_ok = ok.to(index.device)
        for key in ("mean", "logvar"):
            params[key][dev_rows[dev_ok]] = run.full[key][dev_ok]
        steps[rows[ok]] += run.steps[ok]
        gain[rows] = probe({key: params[key][dev_rows] for key in ("mean", "logvar")}, lik, index[dev_rows],
                           f"{stream}/gain{k}")
    return params, steps, gain


def _check_init(starts: list, q: LocalPosterior, n: int) -> list[dict]:
    """The starts as dicts of tensors, each naming parameters of `q` (a local q of one datapoint)
    with this call's n datapoints in front of that parameter's shape."""
    shapes = {k: tuple(p.shape[1:]) for k, p in q.named_parameters()}
    out = []
    for i, start in enumerate(starts):
        where = "init" if len(starts) == 1 else f"init[{i}]"
        if not isinstance(start, dict):
            raise InputError(f"{where} must be a (mean, logvar) pair or a dict of per-datapoint parameters, "
                             f"got {type(start).__name__}")
        start = {k: torch.as_tensor(v) for k, v in start.items()}
        for k, v in start.items():
            if k not in shapes:
                raise InputError(f"{where} names {k!r}, not a parameter of this local q ({', '.join(shapes)})")
            if tuple(v.shape) != (n, *shapes[k]):
                raise InputError(f"{where} {k!r} must have shape (n_points, ...) = {(n, *shapes[k])}, "
                                 f"got {tuple(v.shape)}")
        out.append(start)
    return out


def _overlay(q: LocalPosterior, given: dict, sl: slice) -> dict:
    """q's own (keyed) initial parameters with those in `given` (rows `sl`) put in their place."""
    params = {k: p.detach().clone() for k, p in q.named_parameters()}
    for k, v in given.items():
        params[k].copy_(v[sl])
    return params


def _pick(candidates: list[dict], scores: list[torch.Tensor]) -> dict:
    """Per datapoint, the parameters of the candidate with the highest score."""
    best = torch.stack(scores).argmax(0)
    out = {}
    for k in candidates[0]:
        stacked = torch.stack([c[k] for c in candidates])
        out[k] = stacked[best, torch.arange(best.numel(), device=best.device)]
    return out


def _with_restarts(fit, start, loglik, index, stream, lr, restarts):
    """fit(start, loglik, index, stream, lr, rows) -> run (full, steps, converged, diverged[,
    remaining_gain]) for the datapoints `rows` of the batch,
    then again from the start at lr × LR_BACKOFF for the rows that diverged."""
    n = index.shape[0]
    run = fit(start, loglik, index, stream, lr, slice(None))
    params, steps, converged, diverged = run.full, run.steps, run.converged, run.diverged
    gain = getattr(run, "remaining_gain", None)
    n_restarts = torch.zeros(n, dtype=torch.int64)
    for attempt in range(1, restarts + 1):
        rows = diverged.nonzero().squeeze(-1)
        if not rows.numel():
            break
        lr_now = lr * LR_BACKOFF**attempt
        log.warning("%s: %d of %d datapoints diverged; restarting them at lr %.3g", stream, rows.numel(),
                    n, lr_now)
        dev_rows = rows.to(index.device)
        sub = fit({k: v[dev_rows] for k, v in start.items()}, restrict(loglik, dev_rows, n), index[dev_rows],
                  f"{stream}/restart{attempt}", lr_now, dev_rows)
        for k in params:
            params[k][dev_rows] = sub.full[k]
        steps[rows], converged[rows], diverged[rows] = sub.steps, sub.converged, sub.diverged
        if gain is not None:
            gain[rows] = sub.remaining_gain
        n_restarts[rows] = attempt
    return params, steps, converged, n_restarts, diverged, gain
