"""The paper's claims (docs/method.md §7) tested on per-datapoint outputs, one verdict per check.

Inputs are per-datapoint frames (`INPUT_NAMES`), so every comparison of two quantities measured on the
same datapoints is made on the per-datapoint differences. The checks live in one declarative table,
`CHECKS`: per check its id, the paper's statement, the input it reads, the comparison in words, its
kind ("evidence", or "sanity check" for what is true by construction or validates a tool rather than
the paper), the estimates it depends on (which gates it is subject to) and the function computing it.

Output (`CLAIM_COLUMNS`), one row per (check, dataset):
``value_a, se_a, value_b, se_b``  the two sides: means over datapoints and their standard errors;
``diff, diff_se``  the tested difference, always value_a − value_b (for a paired check the mean of
    the per-datapoint differences a_i − b_i), and its standard error;
``paired``  True when diff_se = std(a_i − b_i, ddof=1)/√n over the datapoints both sides share
    (matched on `index`); False when it is √(se_a² + se_b²) (different datapoints: claim 6c) or when
    a side is a constant.
``verdict``  supported | contradicted | inconclusive | not evaluated.

Decision rule, k = `N_SE` = 2 standard errors of diff; a verdict means evidence:
* "a < b", "a > b" and the "at least" forms "a <= b", "a >= b" alike: supported when diff is beyond
  k·se in the claimed direction, contradicted when beyond k·se the other way, inconclusive in
  between. Not being contradicted is no evidence: such an "at least" row is inconclusive, and its
  note gives the point estimate;
* thresholds: 3a "far" is supported when diff − k·se > `FAR_NATS`, contradicted when diff + k·se <
  `FAR_NATS`; 3b "close" and 6c "≈" are equivalence tests: supported when |diff| + k·se ≤ tol,
  contradicted when |diff| − k·se > tol (tol = `CLOSE_NATS`, or `GENERALISE_REL_TOL` × |train gap|);
* without a standard error (one datapoint, or 7d's maximum) the point estimate decides and the note
  says so.

Gates, applied after the numbers (which stay in the row and the note): a check depending on L[q*]
of a model with fewer than `CONVERGED_MIN` of its datapoints converged, or on log p̂ of a model where
AIS fell below an IWAE (of q* or q) on more than `AIS_BELOW_MAX` of them, or whose AIS setting has no BDMC
certificate for that model (a bdmc row, matched on dataset, variant, family, setting and, for an
over-training snapshot, epoch, with gap + k·gap_se < `BDMC_PASS_NATS`), is "inconclusive" with the
reason.

Choices: 1b is evaluated only on `MUCH_LARGER_DATASETS` (no row for other datasets; one "not
evaluated" row when none of them is present). 4a/4b and 6a give rows only for datasets that have the
no_annealing / large_encoder model. A missing input gives one "not evaluated" row per check.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import VaegapsError
from .io import write_csv, write_text
from .tables import AIS_BELOW_MAX, BDMC_PASS_NATS, CONVERGED_MIN  # one home for the trust thresholds

N_SE = 2.0                  # standard errors that separate evidence from noise
FAR_NATS = 2.0              # 3a: L[q*_Flow] − L[q*_FFG] "far" (paper, MNIST: ≈ 23 nats)
CLOSE_NATS = 1.0            # 3b: |L[q*_Flow] − L[q*_FFG]| "close" (paper, MNIST: ≈ 0.4 nats)
GENERALISE_REL_TOL = 0.2    # 6c: |valid − train| approximation gap within 20% of the train gap
NON_GAUSSIAN_MIN = 0.1      # 7d: nats of KL(p || moment-matched Gaussian) that count as non-Gaussian
MUCH_LARGER_DATASETS = ("fashion_mnist", "cifar10")
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_EVALUATED = "supported", "contradicted", "inconclusive", "not evaluated"

NAMED_INPUTS = ("flows_amortization", "decoder_capacity", "over_training", "figure2_bounds", "figure2_grid",
                "bdmc")
INPUT_NAMES = ("gaps", *NAMED_INPUTS)     # "gaps" is stacked from per-model files by load_inputs
CLAIM_COLUMNS = ["claim", "dataset", "kind", "statement", "comparison", "value_a", "se_a", "value_b",
                 "se_b", "diff", "diff_se", "paired", "verdict", "note"]

# The estimates a check can depend on, and the per-datapoint column that gates each.
QSTAR, QSTAR_FFG, QSTAR_FLOW, LOG_PX = "L[q*]", "L[q*_FFG]", "L[q*_Flow]", "log p̂"
GATE_COLUMNS = {QSTAR: "qstar_converged", QSTAR_FFG: "converged_local_ffg",
                QSTAR_FLOW: "converged_local_flow", LOG_PX: "ais_below_any_bound"}

# Columns each input must have (what the checks and their gates read).
REQUIRED = {
    "gaps": ["dataset", "variant", "trained_family", "index", "log_px", "elbo_local_flow", "elbo_local_ffg",
             "approximation_gap", "amortization_gap", "qstar_converged", "converged_local_ffg",
             "converged_local_flow", "ais_below_any_bound"],
    "flows_amortization": ["dataset", "encoder", "index", "amortization_gap", "qstar_converged"],
    "decoder_capacity": ["dataset", "decoder_layers", "variant", "family", "index", "approximation_gap",
                         "qstar_converged", "ais_below_any_bound"],
    "over_training": ["dataset", "model", "variant", "family", "epoch", "split", "index", "approximation_gap",
                      "amortization_gap", "qstar_converged", "ais_below_any_bound"],
    "figure2_bounds": ["dataset", "index", "distribution", "elbo", "log_px"],
    "figure2_grid": ["dataset", "index", "distribution", "z1", "z2", "density"],
    "bdmc": ["dataset", "variant", "family", "setting", "gap", "gap_se", "procedure"],
}
_STRICT = {">": True, "<": True, ">=": False, "<=": False}
NAN = float("nan")


@dataclass(frozen=True)
class Used:
    """The per-datapoint rows of one model a check read, which the gates read, and the key of the
    BDMC certificate of its log p̂: (dataset, variant, family, setting, epoch), setting "main"
    (epoch None) or "over_training" (epoch: the snapshot); None where the check reads no log p̂."""
    label: str
    frame: pd.DataFrame
    key: tuple[str, str, str, str, int | None] | None = None


@dataclass
class Outcome:
    """One evaluated row before the table's fixed fields are added; `used`: the models it read."""
    dataset: str
    verdict: str = NOT_EVALUATED
    note: str = ""
    value_a: float = NAN
    se_a: float = NAN
    value_b: float = NAN
    se_b: float = NAN
    diff: float = NAN
    diff_se: float = NAN
    paired: bool = False
    detail: str = ""
    used: list[Used] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One claim of docs/method.md §7 and how it is tested on a run's results."""

    id: str
    statement: str
    input: str
    comparison: str
    kind: str
    depends: tuple[str, ...]
    run: Callable[[pd.DataFrame], list[Outcome]]


# --------------------------------------------------------------------------- decision rule


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.2f}"


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def decide(diff: float, diff_se: float, op: str, n_se: float = N_SE) -> str:
    """Verdict for "a op b" (op in >, <, >=, <=) from diff = a − b and its standard error: supported
    beyond n_se·se in the claimed direction, contradicted beyond it the other way, else inconclusive;
    strict and "at least" alike, as not being contradicted is no evidence. Without a standard error
    the point estimate decides (a tie supports only the non-strict form)."""
    if op not in _STRICT:
        raise ValueError(f"unknown comparison {op!r}")
    if not _finite(diff):
        return NOT_EVALUATED
    d = diff if op in (">", ">=") else -diff       # d > 0 favours the claim
    if not _finite(diff_se):
        return SUPPORTED if d > 0 or (d == 0 and not _STRICT[op]) else CONTRADICTED
    k = n_se * diff_se
    return SUPPORTED if d > k else CONTRADICTED if d < -k else INCONCLUSIVE


def decide_beyond(diff: float, diff_se: float, threshold: float, n_se: float = N_SE) -> str:
    """"diff is larger than threshold": decided only when the k·se interval is clear of it."""
    if not _finite(diff):
        return NOT_EVALUATED
    if not _finite(diff_se):
        return SUPPORTED if diff > threshold else CONTRADICTED
    k = n_se * diff_se
    return SUPPORTED if diff - k > threshold else CONTRADICTED if diff + k < threshold else INCONCLUSIVE


def decide_equivalent(diff: float, diff_se: float, tol: float, n_se: float = N_SE) -> str:
    """Equivalence test "|diff| is within tol": noise alone can never support it."""
    if not (_finite(diff) and _finite(tol)):
        return NOT_EVALUATED
    if not _finite(diff_se):
        return SUPPORTED if abs(diff) <= tol else CONTRADICTED
    k = n_se * diff_se
    return SUPPORTED if abs(diff) + k <= tol else CONTRADICTED if abs(diff) - k > tol else INCONCLUSIVE


# --------------------------------------------------------------------------- statistics


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    n = len(x)
    if n == 0:
        return NAN, NAN
    return float(np.mean(x)), float(np.std(x, ddof=1) / math.sqrt(n)) if n > 1 else NAN


def _se_note(se: float) -> str:
    return "" if _finite(se) else "; no standard error (one datapoint): decided on the point estimate"


def _not_contradicted_note(verdict: str, op: str, diff: float) -> str:
    """An inconclusive "at least" row: not contradicted, which is no evidence for it."""
    if verdict != INCONCLUSIVE or _STRICT[op]:
        return ""
    return (f"; not contradicted, but a − b = {_fmt(diff)} lies within {N_SE:g} standard errors of 0: "
            "no evidence for the claim")


def _paired(ds: str, a: pd.Series, b: pd.Series, op: str, used: list[Used] | None = None) -> Outcome:
    """a op b on the datapoints both Series (indexed by datapoint index) share, paired."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    out = Outcome(ds, used=used or [])
    if both.empty:
        out.note = "no datapoint has both values"
        return out
    x, y = both["a"].to_numpy(float), both["b"].to_numpy(float)
    (out.value_a, out.se_a), (out.value_b, out.se_b) = _mean_se(x), _mean_se(y)
    out.diff, out.diff_se = _mean_se(x - y)
    out.paired = True
    out.verdict = decide(out.diff, out.diff_se, op)
    out.note = (f"a − b = {_fmt(out.diff)} ± {_fmt(out.diff_se)} paired over {len(x)} datapoints "
                f"(unpaired se would be {_fmt(math.hypot(out.se_a, out.se_b))})" + _se_note(out.diff_se)
                + _not_contradicted_note(out.verdict, op, out.diff))
    if len(x) < max(len(a), len(b)):
        out.note += f"; only {len(x)} of {max(len(a), len(b))} datapoints are common to both sides"
    return out


def _missing(ds: str, what: str) -> Outcome:
    return Outcome(ds, note=what)


# --------------------------------------------------------------------------- selecting models


def _select(df: pd.DataFrame, name: str, **keys: Any) -> pd.DataFrame | None:
    """The per-datapoint rows of one model, indexed by datapoint index; None if there are none."""
    mask = np.ones(len(df), dtype=bool)
    for k, v in keys.items():
        mask &= (df[k].astype(str) == str(v)).to_numpy()
    sub = df[mask]
    if sub.empty:
        return None
    if sub["index"].duplicated().any():
        desc = ", ".join(f"{k}={v}" for k, v in keys.items())
        raise VaegapsError(f"{name} has several rows for one index at {desc}; expected one per datapoint")
    return sub.set_index("index", drop=False)


def _datasets(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["dataset"].astype(str)))


def _gaps_model(g: pd.DataFrame, ds: str, variant: str, family: str) -> pd.DataFrame | None:
    return _select(g, "gaps", dataset=ds, variant=variant, trained_family=family)


def _label(variant: str, family: str) -> str:
    return f"{variant} {family}-trained model"


def _gaps_used(ds: str, variant: str, family: str, frame: pd.DataFrame) -> Used:
    """A final model of Table 2/3 or of decoder capacity: its log p̂ is certified at setting "main"."""
    return Used(_label(variant, family), frame, (ds, variant, family, "main", None))


def _compare_models(g, ds, col, first: tuple[str, str], second: tuple[str, str], op,
                    col_b: str | None = None) -> Outcome:
    """col of model `first` (variant, family) op col_b (default col) of model `second`, paired."""
    fa, fb = _gaps_model(g, ds, *first), _gaps_model(g, ds, *second)
    missing = [_label(*k) for k, f in ((first, fa), (second, fb)) if f is None]
    if missing:
        return _missing(ds, f"gaps has no {' or '.join(dict.fromkeys(missing))}")
    used = [_gaps_used(ds, *first, fa)] + ([_gaps_used(ds, *second, fb)] if second != first else [])
    return _paired(ds, fa[col], fb[col_b or col], op, used)


# --------------------------------------------------------------------------- the checks: gaps (Tables 2, 3)


def _claim1(g: pd.DataFrame, datasets=None, op=">=") -> list[Outcome]:
    rows = []
    for ds in datasets if datasets is not None else _datasets(g):
        out = _compare_models(g, ds, "amortization_gap", ("standard", "ffg"), ("standard", "ffg"), op,
                              col_b="approximation_gap")
        if out.value_b > 0:
            out.note += f"; amortization/approximation = {out.value_a / out.value_b:.2f}"
        rows.append(out)
    return rows


def _claim1b(g: pd.DataFrame) -> list[Outcome]:
    present = [d for d in _datasets(g) if d in MUCH_LARGER_DATASETS]
    if not present:
        return [_missing("", f"evaluated only on {', '.join(MUCH_LARGER_DATASETS)}; gaps has neither")]
    return _claim1(g, present, ">")


def _across_families(col: str, op: str) -> Callable[[pd.DataFrame], list[Outcome]]:
    def run(g: pd.DataFrame) -> list[Outcome]:
        return [_compare_models(g, ds, col, ("standard", "flow"), ("standard", "ffg"), op)
                for ds in _datasets(g)]
    return run


def _flow_minus_ffg(g: pd.DataFrame, ds: str, family: str) -> Outcome:
    m = _gaps_model(g, ds, "standard", family)
    if m is None:
        return _missing(ds, f"gaps has no {_label('standard', family)}")
    # the sides' own verdict is replaced by the threshold rule of 3a/3b
    return _paired(ds, m["elbo_local_flow"], m["elbo_local_ffg"], ">", [_gaps_used(ds, "standard", family, m)])


def _flow_minus_ffg_rule(family: str, rule: Callable, nats: float, words: str):
    """3a/3b: L[q*_Flow] − L[q*_FFG] of the `family`-trained model against a threshold of `nats`."""
    def run(g: pd.DataFrame) -> list[Outcome]:
        rows = []
        for ds in _datasets(g):
            out = _flow_minus_ffg(g, ds, family)
            if out.paired:
                out.verdict = rule(out.diff, out.diff_se, nats)
                out.note = words.format(nats=nats, n_se=N_SE) + "; " + out.note
            rows.append(out)
        return rows
    return run


_claim3a = _flow_minus_ffg_rule("flow", decide_beyond, FAR_NATS, "threshold {nats:g} nats")
_claim3b = _flow_minus_ffg_rule("ffg", decide_equivalent, CLOSE_NATS,
                                "|a − b| must be within {nats:g} nat beyond {n_se:g} se")


def _against_standard(variant: str, col: str, op: str) -> Callable[[pd.DataFrame], list[Outcome]]:
    """Table 3: `variant` (ffg-trained) against the standard ffg-trained model, on the datasets
    that have the variant."""
    def run(g: pd.DataFrame) -> list[Outcome]:
        present = [d for d in _datasets(g) if _gaps_model(g, d, variant, "ffg") is not None]
        if not present:
            return [_missing("", f"gaps has no {_label(variant, 'ffg')}")]
        return [_compare_models(g, ds, col, (variant, "ffg"), ("standard", "ffg"), op) for ds in present]
    return run


# --------------------------------------------------------------------------- flows and amortization


def _small_encoder(encoder: str) -> Callable[[pd.DataFrame], list[Outcome]]:
    def run(t: pd.DataFrame) -> list[Outcome]:
        rows = []
        for ds in _datasets(t):
            fa = _select(t, "flows_amortization", dataset=ds, encoder=encoder)
            fb = _select(t, "flows_amortization", dataset=ds, encoder="ffg_small")
            missing = [e for e, f in ((encoder, fa), ("ffg_small", fb)) if f is None]
            if missing:
                rows.append(_missing(ds, f"flows_amortization has no {' or '.join(missing)} encoder"))
                continue
            rows.append(_paired(ds, fa["amortization_gap"], fb["amortization_gap"], "<",
                                [Used(f"encoder {encoder}", fa), Used("encoder ffg_small", fb)]))
        return rows
    return run


# --------------------------------------------------------------------------- over training


def _epochs(d: pd.DataFrame, model: str, split: str) -> list:
    return sorted(d.loc[(d["model"].astype(str) == model) & (d["split"].astype(str) == split), "epoch"].unique())


def _at(d: pd.DataFrame, model: str, split: str, epoch) -> pd.DataFrame:
    return _select(d, "over_training", model=model, split=split, epoch=epoch)


def _snapshot(ds: str, frame: pd.DataFrame, model: str, split: str, epoch) -> Used:
    """An over-training snapshot: its log p̂ is certified at setting "over_training" and its epoch."""
    key = (ds, str(frame["variant"].iloc[0]), str(frame["family"].iloc[0]), "over_training", int(epoch))
    return Used(f"{model} {split} epoch {epoch}", frame, key)


def _claim6b(t: pd.DataFrame) -> list[Outcome]:
    rows = []
    for ds in _datasets(t):
        d = t[t["dataset"].astype(str) == ds]
        common = sorted(set(_epochs(d, "large_encoder", "valid")) & set(_epochs(d, "standard", "valid")))
        if len(common) < 2:
            rows.append(_missing(ds, "over_training has fewer than 2 validation epochs common to "
                                     "large_encoder and standard"))
            continue
        e0, e1 = common[0], common[-1]
        f = {(m, e): _at(d, m, "valid", e) for m in ("large_encoder", "standard") for e in (e0, e1)}

        def growth(m):
            return f[m, e1]["amortization_gap"] - f[m, e0]["amortization_gap"]
        # the contrast c_i = growth(large) − growth(standard), paired on the validation indices
        out = _paired(ds, growth("large_encoder"), growth("standard"), ">",
                      [_snapshot(ds, fr, m, "valid", e) for (m, e), fr in f.items()])
        out.detail = f" [epochs {e0} → {e1}]"
        rows.append(out)
    return rows


def _claim6c(t: pd.DataFrame) -> list[Outcome]:
    rows = []
    for ds in _datasets(t):
        d = t[t["dataset"].astype(str) == ds]
        both = sorted(set(_epochs(d, "large_encoder", "train")) & set(_epochs(d, "large_encoder", "valid")))
        if not both:
            rows.append(_missing(ds, "over_training has no epoch with both splits for large_encoder"))
            continue
        e = both[-1]
        va, tr = _at(d, "large_encoder", "valid", e), _at(d, "large_encoder", "train", e)
        rows.append(_generalises(ds, va, tr, e))
    return rows


def _generalises(ds: str, va: pd.DataFrame, tr: pd.DataFrame, epoch) -> Outcome:
    """Equivalence of valid and train approximation gaps; different datapoints, so unpaired."""
    out = Outcome(ds, detail=f" [epoch {epoch}]", used=[_snapshot(ds, va, "large_encoder", "valid", epoch),
                                                        _snapshot(ds, tr, "large_encoder", "train", epoch)])
    out.value_a, out.se_a = _mean_se(va["approximation_gap"].dropna().to_numpy(float))
    out.value_b, out.se_b = _mean_se(tr["approximation_gap"].dropna().to_numpy(float))
    out.diff, out.diff_se = out.value_a - out.value_b, math.hypot(out.se_a, out.se_b)
    tol = GENERALISE_REL_TOL * abs(out.value_b)
    out.verdict = decide_equivalent(out.diff, out.diff_se, tol)
    (am_v, s_v), (am_t, s_t) = (_mean_se(f["amortization_gap"].dropna().to_numpy(float)) for f in (va, tr))
    out.note = (f"valid − train = {_fmt(out.diff)} ± {_fmt(out.diff_se)} (unpaired, {len(va)} vs {len(tr)} "
                f"datapoints); tolerance {GENERALISE_REL_TOL:.0%} of the train gap = {_fmt(tol)}; for "
                f"contrast, amortization gap valid − train = {_fmt(am_v - am_t)} ± {_fmt(math.hypot(s_v, s_t))}"
                + _se_note(out.diff_se))
    return out


def _smaller_approximation_over_training(model: str) -> Callable[[pd.DataFrame], list[Outcome]]:
    """8b/8c: the approximation gap of over-training model `model` below the standard model's, at
    their last common snapshot, on the training split (as Table 2's), paired on its datapoints."""
    def run(t: pd.DataFrame) -> list[Outcome]:
        rows = []
        for ds in _datasets(t):
            d = t[t["dataset"].astype(str) == ds]
            common = sorted(set(_epochs(d, model, "train")) & set(_epochs(d, "standard", "train")))
            if not common:
                rows.append(_missing(ds, f"over_training has no training-split epoch common to {model} and standard"))
                continue
            e = common[-1]
            a, b = (_snapshot(ds, _at(d, m, "train", e), m, "train", e) for m in (model, "standard"))
            out = _paired(ds, a.frame["approximation_gap"], b.frame["approximation_gap"], "<", [a, b])
            out.detail = f" [epoch {e}, training split]"
            rows.append(out)
        return rows
    return run


# --------------------------------------------------------------------------- decoder capacity


def _claim8a(t: pd.DataFrame) -> list[Outcome]:
    """The largest decoder's FFG approximation gap below the smallest's, paired; the steps between
    adjacent capacities go in the note (the 2-layer model is Table 2's, tested there)."""
    rows = []
    for ds in _datasets(t):
        d = t[t["dataset"].astype(str) == ds]
        layers = sorted({int(k) for k in d["decoder_layers"]})
        if len(layers) < 2:
            rows.append(_missing(ds, "decoder_capacity has fewer than 2 decoder sizes"))
            continue
        f = {k: _select(d, "decoder_capacity", decoder_layers=k) for k in layers}
        lo, hi = layers[0], layers[-1]
        used = [_gaps_used(ds, str(f[k]["variant"].iloc[0]), str(f[k]["family"].iloc[0]), f[k]) for k in (hi, lo)]
        out = _paired(ds, f[hi]["approximation_gap"], f[lo]["approximation_gap"], "<", used)
        out.detail = f" [{hi} vs {lo} hidden decoder layers]"
        steps = []
        for k0, k1 in zip(layers, layers[1:]):
            m, se = _mean_se((f[k1]["approximation_gap"] - f[k0]["approximation_gap"]).dropna().to_numpy(float))
            steps.append(f"{k0} → {k1}: {_fmt(m)} ± {_fmt(se)}")
        if out.paired:
            out.note += "; per step of capacity, paired change of the gap: " + ", ".join(steps)
        rows.append(out)
    return rows


# --------------------------------------------------------------------------- Figure 2


_F2 = {"amortized_ffg": "L[q]", "optimal_ffg": "L[q*_FFG]", "optimal_flow": "L[q*_Flow]", "true": "log p(x)"}


def _figure2_wide(g: pd.DataFrame, ds: str) -> pd.DataFrame:
    """One column per distribution of its bound, "true" holding log p(x), indexed by datapoint."""
    if g.duplicated(["index", "distribution"]).any():
        raise VaegapsError(f"figure2_bounds has several rows for one (index, distribution) in {ds}")
    wide = g.pivot(index="index", columns="distribution", values="elbo")
    log_px = g.groupby("index")["log_px"].first()
    if "true" in wide:  # "true" rows carry the exact log p(x) as their elbo
        log_px = wide["true"].where(wide["true"].notna(), log_px)
    wide["true"] = log_px.reindex(wide.index)
    return wide


def _bounds_order(lo: str, hi: str, op: str) -> Callable[[pd.DataFrame], list[Outcome]]:
    def run(t: pd.DataFrame) -> list[Outcome]:
        rows = []
        for ds in _datasets(t):
            wide = _figure2_wide(t[t["dataset"].astype(str) == ds].assign(
                distribution=lambda x: x["distribution"].astype(str)), ds)
            missing = [k for k in (lo, hi) if k not in wide]
            rows.append(_missing(ds, f"figure2_bounds has no {', '.join(missing)} rows") if missing
                        else _paired(ds, wide[lo], wide[hi], op))
        return rows
    return run


def _grid_spacing(values: np.ndarray, what: str) -> float:
    step = np.diff(np.unique(values))
    if len(step) == 0 or not np.allclose(step, step[0], rtol=1e-3):
        raise VaegapsError(f"figure2_grid's {what} nodes are not a regular grid; rebuild it with the workflow")
    return float(step[0])


def negentropy(z1: np.ndarray, z2: np.ndarray, density: np.ndarray) -> float:
    """KL(p || N(μ_p, Σ_p)) of a 2-D density given on a regular grid against its moment-matched
    full-covariance Gaussian: zero for any Gaussian (correlated too), > 0 otherwise."""
    z = np.stack([np.ravel(z1).astype(float), np.ravel(z2).astype(float)], axis=1)
    if len(np.unique(z[:, 0])) * len(np.unique(z[:, 1])) != len(z):
        raise VaegapsError("figure2_grid has not one node per grid point; rebuild it with the workflow")
    area = _grid_spacing(z[:, 0], "z1") * _grid_spacing(z[:, 1], "z2")
    p = np.ravel(density).astype(float) * area
    p = p / p.sum()                 # renormalise the mass the grid holds
    mu = p @ z
    c = z - mu
    cov = (c * p[:, None]).T @ c
    pos = p > 0                     # 0 · log 0 = 0
    h_p = -float(np.sum(p[pos] * np.log(p[pos] / area)))
    h_gauss = 0.5 * float(np.linalg.slogdet(2 * math.pi * math.e * cov)[1])
    return h_gauss - h_p


def _claim7d(t: pd.DataFrame) -> list[Outcome]:
    rows = []
    for ds in _datasets(t):
        g = t[(t["dataset"].astype(str) == ds) & (t["distribution"].astype(str) == "true")]
        if g.empty:
            rows.append(_missing(ds, "figure2_grid has no distribution == 'true' rows"))
            continue
        ng = pd.Series({i: negentropy(x["z1"], x["z2"], x["density"]) for i, x in g.groupby("index")})
        out = Outcome(ds, value_a=float(ng.max()), value_b=NON_GAUSSIAN_MIN)
        out.diff = out.value_a - out.value_b
        out.verdict = decide(out.diff, NAN, ">")
        per = ", ".join(f"{i}: {_fmt(v)}" for i, v in ng.items())
        out.note = (f"largest at index {ng.idxmax()}; KL to the moment-matched Gaussian per index: {per}; "
                    "no standard error (a maximum over datapoints): decided on the point estimate")
        rows.append(out)
    return rows


# --------------------------------------------------------------------------- BDMC


def _bdmc_verdict(gap: float, gap_se: float) -> str:
    """AIS is certified when its BDMC gap lies below `BDMC_PASS_NATS` by N_SE standard errors: the one
    rule of the bdmc check and of the log p̂ gate."""
    return decide(gap - BDMC_PASS_NATS, gap_se, "<")


def _bdmc_desc(r: pd.Series) -> str:
    keys = [k for k in ("variant", "family", "setting", "epoch") if k in r and pd.notna(r[k])]
    return ", ".join(f"{k}={int(r[k]) if k == 'epoch' else r[k]}" for k in keys)


def _bdmc(t: pd.DataFrame) -> list[Outcome]:
    rows = []
    for _, r in t.iterrows():
        out = Outcome(str(r["dataset"]), value_a=float(r["gap"]), se_a=float(r["gap_se"]),
                      value_b=BDMC_PASS_NATS)
        out.diff, out.diff_se = out.value_a - BDMC_PASS_NATS, out.se_a
        out.verdict = _bdmc_verdict(out.value_a, out.se_a)
        out.detail = f" for AIS procedure {r['procedure']} [{_bdmc_desc(r)}]"
        out.note = f"gap = {_fmt(out.value_a)} ± {_fmt(out.se_a)}" + _se_note(out.se_a)
        if out.value_a < -N_SE * (out.se_a if _finite(out.se_a) else 0.0):
            out.note += "; upper bound below lower bound beyond noise: check the BDMC run"
        rows.append(out)
    return rows


# --------------------------------------------------------------------------- the table

_S1 = "For FFG, the amortization gap is at least as large as the approximation gap"
_S3 = "The generator accommodates the approximation: "
_S6 = "A larger encoder reduces the training amortization gap but overfits"
_S8 = "A more flexible model leaves a smaller approximation gap: "

CHECKS: tuple[Check, ...] = (
    Check("1", _S1 + ".", "gaps",
          "amortization_gap >= approximation_gap (standard ffg-trained model)",
          "evidence", (QSTAR, LOG_PX), _claim1),
    Check("1b", _S1 + " (much larger on Fashion-MNIST and CIFAR-10).", "gaps",
          "amortization_gap > approximation_gap (standard ffg-trained model; fashion_mnist, cifar10 only)",
          "evidence", (QSTAR, LOG_PX), _claim1b),
    Check("2a", "Training with the Flow shrinks the approximation gap.", "gaps",
          "approximation_gap (flow-trained) < approximation_gap (ffg-trained)",
          "evidence", (QSTAR, LOG_PX), _across_families("approximation_gap", "<")),
    Check("2b", "Training with the Flow: the amortization gap does not shrink.", "gaps",
          "amortization_gap (flow-trained) >= amortization_gap (ffg-trained)",
          "evidence", (QSTAR,), _across_families("amortization_gap", ">=")),
    Check("3a", _S3 + "for a Flow-trained model L[q*_FFG] is far below L[q*_Flow].", "gaps",
          f"L[q*_Flow] − L[q*_FFG] (flow-trained) > {FAR_NATS:g} nats",
          "evidence", (QSTAR_FFG, QSTAR_FLOW), _claim3a),
    Check("3b", _S3 + "for an FFG-trained model L[q*_FFG] and L[q*_Flow] are close.", "gaps",
          f"|L[q*_Flow] − L[q*_FFG]| (ffg-trained) < {CLOSE_NATS:g} nat",
          "evidence", (QSTAR_FFG, QSTAR_FLOW), _claim3b),
    Check("4a", "Without entropy annealing the FFG approximation gap is smaller.", "gaps",
          "approximation_gap (no_annealing, ffg) < approximation_gap (standard, ffg)",
          "evidence", (QSTAR, LOG_PX), _against_standard("no_annealing", "approximation_gap", "<")),
    Check("4b", "Without entropy annealing log p̂(x) is worse.", "gaps",
          "log_px (no_annealing, ffg) < log_px (standard, ffg)",
          "evidence", (LOG_PX,), _against_standard("no_annealing", "log_px", "<")),
    Check("5a", "With the decoder frozen, flow parameters on a small encoder reduce the amortization gap "
                "(auxiliary flow).", "flows_amortization",
          "amortization_gap (flow_small) < amortization_gap (ffg_small)",
          "evidence", (QSTAR,), _small_encoder("flow_small")),
    Check("5b", "With the decoder frozen, flow parameters on a small encoder reduce the amortization gap "
                "(RealNVP).", "flows_amortization",
          "amortization_gap (realnvp_small) < amortization_gap (ffg_small)",
          "evidence", (QSTAR,), _small_encoder("realnvp_small")),
    Check("6a", _S6 + ": it reduces the training amortization gap.", "gaps",
          "amortization_gap (large_encoder, ffg) < amortization_gap (standard, ffg), on the training split",
          "evidence", (QSTAR,), _against_standard("large_encoder", "amortization_gap", "<")),
    Check("6b", _S6 + ": on validation data its amortization gap grows over training.", "over_training",
          "growth of amortization_gap (large_encoder, valid) > growth of amortization_gap (standard, valid), "
          "first to last common epoch",
          "evidence", (QSTAR,), _claim6b),
    Check("6c", _S6 + "; the approximation gap generalises.", "over_training",
          f"approximation_gap (large_encoder, valid) ≈ (large_encoder, train) within "
          f"{GENERALISE_REL_TOL:.0%} of the train gap, last epoch with both splits",
          "evidence", (QSTAR, LOG_PX), _claim6c),
    Check("7a", "In 2-D, L[q] < L[q*_FFG].", "figure2_bounds", "L[q] < L[q*_FFG]",
          "evidence", (), _bounds_order("amortized_ffg", "optimal_ffg", "<")),
    Check("7b", "In 2-D, L[q*_FFG] < L[q*_Flow].", "figure2_bounds", "L[q*_FFG] < L[q*_Flow]",
          "evidence", (), _bounds_order("optimal_ffg", "optimal_flow", "<")),
    Check("7c", "In 2-D, L[q*_Flow] ≤ log p(x).", "figure2_bounds", "L[q*_Flow] <= log p(x)",
          "sanity check", (), _bounds_order("optimal_flow", "true", "<=")),
    Check("7d", "In 2-D, some true posteriors are visibly non-Gaussian.", "figure2_grid",
          f"max over datapoints of KL(true posterior || moment-matched Gaussian) > {NON_GAUSSIAN_MIN:g} nat",
          "evidence", (), _claim7d),
    Check("8a", _S8 + "a decoder with more hidden layers gives a smaller FFG approximation gap (the paper's "
                "decoder-capacity experiment, MNIST, 0/2/4 hidden layers; our reading of its table).",
          "decoder_capacity",
          "approximation_gap (largest decoder, ffg) < approximation_gap (smallest decoder, ffg), paired",
          "evidence", (QSTAR, LOG_PX), _claim8a),
    Check("8b", _S8 + "the flow-trained (RealNVP) model has a smaller approximation gap than the standard "
                "model (the paper's gaps-over-training figure, Fashion-MNIST; our reading of its panels).",
          "over_training",
          "approximation_gap (flow, i.e. RealNVP-trained) < approximation_gap (standard), last common snapshot",
          "evidence", (QSTAR, LOG_PX), _smaller_approximation_over_training("flow")),
    Check("8c", _S8 + "the larger decoder has a smaller approximation gap than the standard model (the "
                "paper's gaps-over-training figure, Fashion-MNIST; our reading of its panels).",
          "over_training",
          "approximation_gap (large_decoder) < approximation_gap (standard), last common snapshot",
          "evidence", (QSTAR, LOG_PX), _smaller_approximation_over_training("large_decoder")),
    Check("bdmc", "AIS is accurate at the settings used: the BDMC gap (upper − lower bound on simulated "
                  "data) is below the pass mark.", "bdmc",
          f"BDMC gap (upper − lower) < {BDMC_PASS_NATS:g} nat (vaegaps.tables.BDMC_PASS_NATS)",
          "sanity check", (), _bdmc),
)
CLAIM_IDS = tuple(c.id for c in CHECKS)


# --------------------------------------------------------------------------- gates and assembly


def _bdmc_rows(bdmc: pd.DataFrame | None, key: tuple) -> pd.DataFrame | None:
    """The bdmc rows certifying log p̂ of the model and AIS setting `key` (see `Used`): "main" rows
    match on dataset, variant, family and setting; "over_training" rows also on `epoch` (a bdmc
    frame without that column certifies no snapshot)."""
    if bdmc is None or bdmc.empty:
        return None
    ds, variant, family, setting, epoch = key
    m = np.ones(len(bdmc), dtype=bool)
    for col, v in (("dataset", ds), ("variant", variant), ("family", family), ("setting", setting)):
        m &= (bdmc[col].astype(str) == str(v)).to_numpy()
    if setting != "main":
        if "epoch" not in bdmc:
            return None
        m &= (pd.to_numeric(bdmc["epoch"], errors="coerce") == epoch).to_numpy()
    return bdmc[m]


def _certificate_reason(bdmc: pd.DataFrame | None, u: Used) -> str | None:
    """Why log p̂ of `u` is not certified by BDMC, or None when it is (every matching row passes)."""
    rows = _bdmc_rows(bdmc, u.key)
    ds, variant, family, setting, epoch = u.key
    where = f"dataset={ds}, variant={variant}, family={family}, setting={setting}" + (
        f", epoch={epoch}" if setting != "main" else "")
    if rows is None or rows.empty:
        return f"log p̂ of {u.label} has no BDMC certificate (bdmc has no row {where}): run BDMC for it"
    for _, r in rows.iterrows():
        if _bdmc_verdict(float(r["gap"]), float(r["gap_se"])) != SUPPORTED:
            return (f"log p̂ of {u.label}: its BDMC gap {_fmt(float(r['gap']))} ± {_fmt(float(r['gap_se']))} "
                    f"({where}) is not below {BDMC_PASS_NATS:g} nat by {N_SE:g} se: raise "
                    "evaluation.ais.n_intermediate/n_chains")
    return None


def _gate_reasons(check: Check, used: list[Used], bdmc: pd.DataFrame | None) -> list[str]:
    reasons = []
    for estimate in check.depends:
        col = GATE_COLUMNS[estimate]
        for u in used:
            frac = float(u.frame[col].astype(float).mean())
            if estimate == LOG_PX and frac > AIS_BELOW_MAX:
                reasons.append(f"AIS of {u.label} is below an IWAE beyond noise on {frac:.1%}: the approximation gap is a "
                               "lower bound; raise evaluation.ais.n_intermediate/n_chains")
            elif estimate != LOG_PX and frac < CONVERGED_MIN:
                reasons.append(f"{estimate} of {u.label} converged on {frac:.1%} of datapoints: raise "
                               f"evaluation.local.max_steps (or patience/lr) until ≥ {CONVERGED_MIN:.0%} converge")
            if estimate == LOG_PX and u.key is not None:
                reasons.append(_certificate_reason(bdmc, u))
    return [r for r in dict.fromkeys(reasons) if r]


def _row(check: Check, out: Outcome, bdmc: pd.DataFrame | None = None) -> dict[str, Any]:
    reasons = _gate_reasons(check, out.used, bdmc) if out.verdict != NOT_EVALUATED else []
    note = out.note
    if reasons:
        note = "; ".join([f"inconclusive by the gates (the numbers alone: {out.verdict})", *reasons, note])
        out.verdict = INCONCLUSIVE
    return {"claim": check.id, "dataset": out.dataset, "kind": check.kind, "statement": check.statement,
            "comparison": check.comparison + out.detail, "value_a": out.value_a, "se_a": out.se_a,
            "value_b": out.value_b, "se_b": out.se_b, "diff": out.diff, "diff_se": out.diff_se,
            "paired": bool(out.paired), "verdict": out.verdict, "note": note}


def _prepare(inputs: dict[str, pd.DataFrame | None], figure2_dataset: str) -> dict[str, pd.DataFrame]:
    unknown = set(inputs) - set(INPUT_NAMES)
    if unknown:
        raise VaegapsError(f"unknown input(s) {', '.join(sorted(unknown))}; expected some of "
                           f"{', '.join(INPUT_NAMES)}")
    out = {}
    for name, df in inputs.items():
        if df is None:
            continue
        if name.startswith("figure2") and "dataset" not in df:   # Figure 2 is one 2-D model
            df = df.assign(dataset=figure2_dataset)
        missing = [c for c in REQUIRED[name] if c not in df.columns]
        if missing:
            raise VaegapsError(f"{name} lacks the column(s) {', '.join(missing)}; rebuild it with the workflow")
        out[name] = df
    return out


def evaluate_claims(inputs: dict[str, pd.DataFrame | None], figure2_dataset: str = "2d") -> pd.DataFrame:
    """One row per (check, dataset), in the order of `CHECKS`, with the columns of `CLAIM_COLUMNS`.

    `inputs` maps names in `INPUT_NAMES` to per-datapoint frames; a missing (or None, or empty) input
    makes its checks "not evaluated". `figure2_dataset` labels Figure 2 frames without a dataset column.
    """
    frames = _prepare(inputs, figure2_dataset)
    rows = []
    for check in CHECKS:
        df = frames.get(check.input)
        if df is None or df.empty:
            state = "missing" if df is None else "empty"
            rows.append(_row(check, _missing("", f"input {check.input} is {state}")))
            continue
        rows += [_row(check, out, frames.get("bdmc")) for out in check.run(df)]
    out = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    return out.astype({"claim": str, "dataset": str, "paired": bool})


# --------------------------------------------------------------------------- files


def _read(path: str | os.PathLike, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise VaegapsError(f"missing file {path} ({what}); run the stage that writes it first")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def load_inputs(gap_paths: list, gap_keys: list[tuple[str, str, str]],
                paths: dict[str, str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """Read the inputs: the per-model gaps files (Parquet or CSV), stacked into one long `gaps` frame
    with (dataset, variant, trained_family) from `gap_keys`, and the named inputs in `paths`."""
    gap_paths, gap_keys = list(gap_paths), [tuple(k) for k in gap_keys]
    if len(gap_paths) != len(gap_keys) or any(len(k) != 3 for k in gap_keys):
        raise VaegapsError(f"{len(gap_paths)} gaps files but {len(gap_keys)} keys; each file needs one "
                           "[dataset, variant, family] key")
    unknown = set(paths) - set(NAMED_INPUTS)
    if unknown:
        raise VaegapsError(f"unknown input(s) {', '.join(sorted(unknown))}; expected some of "
                           f"{', '.join(NAMED_INPUTS)}")
    out = {name: _read(p, name) for name, p in paths.items()}
    if gap_paths:
        ids = ("dataset", "variant", "trained_family")
        parts = [_read(p, f"gaps of {'/'.join(k)}").assign(**dict(zip(ids, k)))
                 for p, k in zip(gap_paths, gap_keys)]
        out["gaps"] = pd.concat(parts, ignore_index=True)
    return out


def to_markdown(claims: pd.DataFrame) -> str:
    """The verdicts as a Markdown table."""
    lines = ["| claim | dataset | kind | comparison | a | b | a − b | verdict | note |",
             "|---|---|---|---|---:|---:|---:|---|---|"]

    def cell(v, s):
        if not math.isfinite(v):
            return ""
        return f"{v:.2f} ± {s:.2f}" if math.isfinite(s) else f"{v:.2f}"

    for _, r in claims.iterrows():
        d = cell(r["diff"], r["diff_se"]) + (" (paired)" if r["paired"] and math.isfinite(r["diff"]) else "")
        txt = [str(r["claim"]), str(r["dataset"]), str(r["kind"]), str(r["comparison"]),
               cell(r["value_a"], r["se_a"]), cell(r["value_b"], r["se_b"]), d, f"**{r['verdict']}**",
               str(r["note"])]
        lines.append("| " + " | ".join(t.replace("|", "\\|") for t in txt) + " |")
    lines += ["", "Values in nats, means over datapoints ± standard error; a − b is the tested difference, "
              "paired per datapoint where both sides share the datapoints. "
              f"Rule: supported when a − b lies beyond {N_SE:g} standard errors in the claimed direction "
              f"(\"at least\" claims too), contradicted when beyond {N_SE:g} the other way, inconclusive in "
              f"between; thresholds and equivalences need their whole {N_SE:g}-se interval past the threshold "
              f"or inside the tolerance. Without a standard error the point estimate decides (the note says "
              f"so). Checks on L[q*] with under {CONVERGED_MIN:.0%} converged, or on log p̂ with AIS below "
              f"an IWAE on over {AIS_BELOW_MAX:.0%} of datapoints or without a BDMC certificate (gap below "
              f"{BDMC_PASS_NATS:g} nat by {N_SE:g} se for that model and AIS setting), are inconclusive. "
              "\"sanity check\" rows are not evidence."]
    return "\n".join(lines) + "\n"


def write_claims(inputs: dict[str, pd.DataFrame | None], csv_path: str | os.PathLike,
                 md_path: str | os.PathLike | None = None, **kwargs: Any) -> pd.DataFrame:
    """Evaluate the claims and write them as CSV (and optionally Markdown), atomically."""
    claims = evaluate_claims(inputs, **kwargs)
    write_csv(claims, csv_path)
    if md_path is not None:
        write_text(to_markdown(claims), md_path)
    return claims
