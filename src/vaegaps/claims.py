"""The paper's claims (PROTOCOL §7) read against the outputs, one verdict per check.

`evaluate_claims(tables)` takes the summary tables of the study (any subset) and returns one row per
(claim, dataset) check with the columns of `CLAIM_COLUMNS`:

``claim``       "1", "2a", "2b", "3", "4a", "4b", "5a", "5b", "6a", "6b", "6c", "7a".."7d", "bdmc"
``dataset``     the dataset the check was made on ("" when the input is missing altogether)
``statement``   the paper's claim in words (PROTOCOL §7)
``comparison``  which quantity against which, e.g. "amortization_gap (ffg-trained) >= approximation_gap
                (ffg-trained)"
``value_a, se_a, value_b, se_b``  the two sides (nats) and their standard errors across datapoints
                (NaN where not applicable, e.g. a fixed threshold has no standard error)
``verdict``     "holds" | "does not hold" | "inconclusive" | "not evaluated"
``note``        the difference and its standard error, and anything that qualifies the verdict

Decision rule (k = `N_SE` = 2 standard errors; d is the difference in the direction of the claim, i.e.
d = a − b for "a > b" or "a >= b" and d = b − a for "a < b" or "a <= b"; se_d = sqrt(se_a² + se_b²)):

* **at least / does not shrink** ("a >= b", "a <= b"): the claim fails only if the data contradict
  it beyond noise. holds if d ≥ −k·se_d; does not hold if d < −k·se_d. There is no "inconclusive":
  "within noise" is what a non-strict claim asserts.
* **strictly smaller / larger, shrinks, reduces, worse** ("a < b", "a > b"): holds if d > k·se_d;
  does not hold if d < −k·se_d; inconclusive if |d| ≤ k·se_d (the difference is within noise).
* A fixed threshold (BDMC gap < 1 nat, max non-Gaussianity > 0.1 nat) is a strict comparison against a
  constant with no standard error: the BDMC check holds only if gap + k·se < 1, fails if gap − k·se > 1.
* With no standard error available (n_points < 2, or the column missing) the verdict is decided on the
  point estimates alone (with one side's missing, on the other side's alone) and the note says so.
  A missing value (NaN, or no row for a model/variant/encoder) gives "not evaluated", as does a
  missing input table; the note names what is missing.

se_d treats the two sides as independent. Both are usually means over the *same* datapoints, so the
exact standard error of the paired difference is sqrt(se_a² + se_b² − 2·cov). For quantities that are
positively correlated across datapoints (two bounds on the same log p(x), gaps of related models)
the independent se_d is larger than the paired one, so the verdicts are conservative: more
"inconclusive", fewer false "holds"/"does not hold". Where the per-datapoint values are available
(Figure 2's bounds) the paired standard error is used instead.

Claim 6c ("the approximation gap generalises") is an equivalence check: it holds when
|valid − train| at the last epoch is within k·se_d or within `GENERALISE_REL_TOL` (20%) of the
training approximation gap, and does not hold otherwise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import VaegapsError
from .io import atomic_path

N_SE = 2.0                  # standard errors that separate "holds" from noise
BDMC_MAX_GAP = 1.0          # nats: AIS is accurate at a setting if the BDMC gap is below this
NON_GAUSSIAN_MIN = 0.1      # nats: max over datapoints of log p(x) − L[q*_FFG] above this
GENERALISE_REL_TOL = 0.2    # claim 6c: |valid − train| approximation gap within 20% of the train gap

TABLE_NAMES = ("table2", "table3", "flows_amortization", "decoder_capacity", "gaps_over_training",
               "figure2_bounds", "bdmc", "table2_paired")
CLAIM_COLUMNS = ["claim", "dataset", "statement", "comparison", "value_a", "se_a", "value_b", "se_b",
                 "verdict", "note"]
VERDICTS = ("holds", "does not hold", "inconclusive", "not evaluated")

STATEMENTS = {
    "1": "For FFG, the amortization gap is at least as large as the approximation gap "
         "(much larger on Fashion-MNIST and CIFAR-10).",
    "2a": "Training with the Flow shrinks the approximation gap.",
    "2b": "Training with the Flow does not shrink the amortization gap.",
    "3": "The generator accommodates the approximation: for a Flow-trained model L[q*_FFG] is far below "
         "L[q*_Flow]; for an FFG-trained model the two are close.",
    "4a": "Without entropy annealing the FFG approximation gap is smaller.",
    "4b": "Without entropy annealing log p̂(x) is worse.",
    "5a": "With the decoder frozen, flow parameters (auxiliary flow) on a small encoder reduce the "
          "amortization gap.",
    "5b": "With the decoder frozen, flow parameters (RealNVP) on a small encoder reduce the amortization gap.",
    "6a": "A larger encoder reduces the training amortization gap.",
    "6b": "A larger encoder overfits: on validation data its amortization gap grows over training.",
    "6c": "The approximation gap generalises (validation ≈ training).",
    "7a": "In 2-D, L[q] < L[q*_FFG].",
    "7b": "In 2-D, L[q*_FFG] < L[q*_Flow].",
    "7c": "In 2-D, L[q*_Flow] ≤ log p(x).",
    "7d": "In 2-D, some true posteriors are visibly non-Gaussian.",
    "bdmc": "AIS is accurate at the settings used: the BDMC gap (upper − lower bound on simulated data) "
            "is below 1 nat.",
}

# Which input each check reads, in output order.
CLAIM_INPUTS = {
    "1": "table2", "2a": "table2", "2b": "table2", "3": "table2",
    "4a": "table3", "4b": "table3",
    "5a": "flows_amortization", "5b": "flows_amortization",
    "6a": "gaps_over_training", "6b": "gaps_over_training", "6c": "gaps_over_training",
    "7a": "figure2_bounds", "7b": "figure2_bounds", "7c": "figure2_bounds", "7d": "figure2_bounds",
    "bdmc": "bdmc",
}

# The comparison each check makes, in words (the evaluated rows name epochs, settings and so on).
COMPARISONS = {
    "1": "amortization_gap (ffg-trained) >= approximation_gap (ffg-trained)",
    "2a": "approximation_gap (flow-trained) < approximation_gap (ffg-trained)",
    "2b": "amortization_gap (flow-trained) >= amortization_gap (ffg-trained)",
    "3": "L[q*_Flow] − L[q*_FFG] (flow-trained) > L[q*_Flow] − L[q*_FFG] (ffg-trained)",
    "4a": "approximation_gap (no_annealing) < approximation_gap (standard)",
    "4b": "log_px (no_annealing) < log_px (standard)",
    "5a": "amortization_gap (flow_small) < amortization_gap (ffg_small)",
    "5b": "amortization_gap (realnvp_small) < amortization_gap (ffg_small)",
    "6a": "amortization_gap (large_encoder, train) < amortization_gap (standard, train) at the last epoch",
    "6b": "amortization_gap (large_encoder, valid) grows over training",
    "6c": "approximation_gap (large_encoder, valid) ≈ approximation_gap (large_encoder, train)",
    "7a": "mean L[q] < mean L[q*_FFG]",
    "7b": "mean L[q*_FFG] < mean L[q*_Flow]",
    "7c": "mean L[q*_Flow] <= mean log p(x)",
    "7d": f"max over datapoints of log p(x) − L[q*_FFG] > {NON_GAUSSIAN_MIN} nats",
    "bdmc": f"BDMC gap (upper − lower) < {BDMC_MAX_GAP:g} nat",
}

_STRICT = {">": True, "<": True, ">=": False, "<=": False}


# --------------------------------------------------------------------------- decision rule


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.2f}"


def decide(a: float, se_a: float, b: float, se_b: float, op: str, n_se: float = N_SE) -> tuple[str, str]:
    """Verdict and note for the claim "a op b" (op in >, <, >=, <=) under the module's rule."""
    if op not in _STRICT:
        raise ValueError(f"unknown comparison {op!r}")
    a, se_a, b, se_b = _f(a), _f(se_a), _f(b), _f(se_b)
    if not (math.isfinite(a) and math.isfinite(b)):
        return "not evaluated", "a value is missing (NaN)"
    d = a - b if op in (">", ">=") else b - a
    notes = []
    ses = [s for s in (se_a, se_b) if math.isfinite(s)]
    missing_se = [name for name, s in (("a", se_a), ("b", se_b)) if not math.isfinite(s)]
    se_d = math.sqrt(sum(s * s for s in ses)) if ses else 0.0
    tol = n_se * se_d
    side = "a − b" if op in (">", ">=") else "b − a"
    notes.append(f"{side} = {_fmt(d)} ± {_fmt(se_d)} (z = {d / se_d:.1f})" if se_d > 0
                 else f"{side} = {_fmt(d)}")
    if _STRICT[op]:
        if d > tol:
            verdict = "holds"
        elif d < -tol or (tol == 0 and d <= 0):
            verdict = "does not hold"
        else:
            verdict = "inconclusive"
            notes.append(f"the difference is within {n_se:g} standard errors")
    else:
        verdict = "holds" if d >= -tol else "does not hold"
        if verdict == "holds" and d < 0:
            notes.append(f"a small reversal, within {n_se:g} standard errors")
    if len(missing_se) == 2:
        notes.append("no standard errors; decided on the point estimates")
    elif missing_se:
        notes.append(f"no standard error for side {missing_se[0]}; only the other side's is used")
    return verdict, "; ".join(notes)


# --------------------------------------------------------------------------- helpers


def _require(df: pd.DataFrame, name: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VaegapsError(f"{name} lacks the column(s) {', '.join(missing)}; rebuild it with the workflow")


def _se(row: pd.Series | None, col: str) -> float:
    if row is None:
        return float("nan")
    return _f(row.get(f"{col}_se", float("nan")))


def _one(df: pd.DataFrame, name: str, **keys: Any) -> pd.Series | None:
    """The single row of `df` matching `keys`, None if there is none; several is an error."""
    mask = np.ones(len(df), dtype=bool)
    for k, v in keys.items():
        mask &= (df[k].astype(str) == str(v)).to_numpy()
    sub = df[mask]
    if len(sub) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in keys.items())
        raise VaegapsError(f"{name} has {len(sub)} rows for {desc}; expected one")
    return None if sub.empty else sub.iloc[0]


def _datasets(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["dataset"].astype(str)))


def _row(claim: str, dataset: str, comparison: str, a=np.nan, se_a=np.nan, b=np.nan, se_b=np.nan,
         verdict: str = "not evaluated", note: str = "") -> dict[str, Any]:
    return {"claim": claim, "dataset": dataset, "statement": STATEMENTS[claim], "comparison": comparison,
            "value_a": _f(a), "se_a": _f(se_a), "value_b": _f(b), "se_b": _f(se_b),
            "verdict": verdict, "note": note}


def _check(claim, dataset, comparison, ra, col_a, rb, col_b, op, what_missing, extra="") -> dict[str, Any]:
    """Compare column col_a of row ra with col_b of row rb; 'not evaluated' if a row is absent."""
    if ra is None or rb is None:
        return _row(claim, dataset, comparison, note=what_missing)
    a, se_a, b, se_b = _f(ra[col_a]), _se(ra, col_a), _f(rb[col_b]), _se(rb, col_b)
    verdict, note = decide(a, se_a, b, se_b, op)
    return _row(claim, dataset, comparison, a, se_a, b, se_b, verdict, "; ".join(filter(None, [note, extra])))


def _absent(claims: list[str], table: str) -> list[dict[str, Any]]:
    return [_row(c, "", COMPARISONS[c], note=f"input {table} is missing") for c in claims]


# --------------------------------------------------------------------------- the claims

_VALUE_COLUMNS = ["log_px", "elbo_local_flow", "elbo_local_ffg", "approximation_gap", "amortization_gap"]


def _claims_table2(t: pd.DataFrame, paired: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    _require(t, "table2", ["dataset", "trained_family", *_VALUE_COLUMNS])
    rows = []
    for ds in _datasets(t):
        ffg = _one(t, "table2", dataset=ds, trained_family="ffg")
        flow = _one(t, "table2", dataset=ds, trained_family="flow")
        no_ffg, no_flow = "table2 has no ffg-trained row", "table2 has no flow-trained row"
        extra = ""
        if ffg is not None and _f(ffg["approximation_gap"]) > 0:
            ratio = _f(ffg["amortization_gap"]) / _f(ffg["approximation_gap"])
            extra = f"amortization/approximation = {ratio:.2f}"
        rows.append(_check("1", ds, COMPARISONS["1"],
                           ffg, "amortization_gap", ffg, "approximation_gap", ">=", no_ffg, extra))
        both = no_ffg if ffg is None else no_flow
        rows.append(_check("2a", ds, COMPARISONS["2a"],
                           flow, "approximation_gap", ffg, "approximation_gap",
                           "<", both))
        rows.append(_check("2b", ds, COMPARISONS["2b"],
                           flow, "amortization_gap", ffg, "amortization_gap",
                           ">=", both))
        comp = COMPARISONS["3"]
        if ffg is None or flow is None:
            rows.append(_row("3", ds, comp, note=both))
        else:
            diffs = [_flow_minus_ffg(r, paired, ds, fam) for r, fam in ((flow, "flow"), (ffg, "ffg"))]
            verdict, note = decide(*diffs[0][:2], *diffs[1][:2], ">")
            how = ("paired per-datapoint se (table2_paired)" if diffs[0][2] and diffs[1][2] else
                   "se treating L[q*_Flow] and L[q*_FFG] as independent (conservative)")
            note += f"; {how}; ffg-trained difference = {_fmt(diffs[1][0])} nats"
            rows.append(_row("3", ds, comp, *diffs[0][:2], *diffs[1][:2], verdict, note))
    return rows


def _flow_minus_ffg(row: pd.Series, paired: pd.DataFrame | None, dataset: str, family: str):
    """(mean, se, is_paired) of L[q*_Flow] − L[q*_FFG] for one model: from the per-datapoint
    differences when `paired` (table2_paired) has the row, else from Table 2's two columns."""
    if paired is not None:
        hit = paired[(paired["dataset"] == dataset) & (paired["trained_family"] == family)]
        if len(hit) == 1:
            return _f(hit.iloc[0]["flow_minus_ffg"]), _f(hit.iloc[0]["flow_minus_ffg_se"]), True
    return (_f(row["elbo_local_flow"]) - _f(row["elbo_local_ffg"]),
            math.hypot(_se(row, "elbo_local_flow"), _se(row, "elbo_local_ffg")), False)


def _claims_table3(t: pd.DataFrame, table2: pd.DataFrame | None) -> list[dict[str, Any]]:
    _require(t, "table3", ["dataset", "variant", "trained_family", "log_px", "approximation_gap"])
    rows = []
    for ds in _datasets(t):
        noann = _one(t, "table3", dataset=ds, variant="no_annealing", trained_family="ffg")
        std = _one(t, "table3", dataset=ds, variant="standard", trained_family="ffg")
        extra = ""
        if std is None and table2 is not None and {"dataset", "trained_family"} <= set(table2.columns):
            std = _one(table2, "table2", dataset=ds, trained_family="ffg")
            extra = "standard taken from table2" if std is not None else ""
        missing = ("table3 has no ffg-trained no_annealing row" if noann is None
                   else "no ffg-trained standard row in table3 or table2")
        rows.append(_check("4a", ds, COMPARISONS["4a"],
                           noann, "approximation_gap", std, "approximation_gap", "<", missing, extra))
        rows.append(_check("4b", ds, COMPARISONS["4b"],
                           noann, "log_px", std, "log_px", "<", missing, extra))
    return rows


def _claims_flows(t: pd.DataFrame) -> list[dict[str, Any]]:
    _require(t, "flows_amortization", ["dataset", "encoder", "amortization_gap"])
    rows = []
    for ds in _datasets(t):
        base = _one(t, "flows_amortization", dataset=ds, encoder="ffg_small")
        for claim, enc in (("5a", "flow_small"), ("5b", "realnvp_small")):
            r = _one(t, "flows_amortization", dataset=ds, encoder=enc)
            missing = f"flows_amortization has no {'ffg_small' if base is None else enc} row"
            rows.append(_check(claim, ds, f"amortization_gap ({enc}) < amortization_gap (ffg_small)",
                               r if base is not None else None, "amortization_gap", base, "amortization_gap",
                               "<", missing))
    return rows


def _claims_training(t: pd.DataFrame) -> list[dict[str, Any]]:
    _require(t, "gaps_over_training", ["dataset", "model", "epoch", "split", "approximation_gap",
                                       "amortization_gap"])
    rows = []
    t = t.assign(model=t["model"].astype(str), split=t["split"].astype(str), dataset=t["dataset"].astype(str))
    for ds in _datasets(t):
        d = t[t["dataset"] == ds]

        def epochs(model, split):
            return sorted(d.loc[(d["model"] == model) & (d["split"] == split), "epoch"].unique())

        def at(model, split, epoch):
            return _one(d, "gaps_over_training", model=model, split=split, epoch=epoch)

        # 6a: train amortization gap, large_encoder vs standard, at the last epoch both have.
        comp = COMPARISONS["6a"]
        le_tr, st_tr = epochs("large_encoder", "train"), epochs("standard", "train")
        common = sorted(set(le_tr) & set(st_tr))
        if common:
            e = common[-1]
            rows.append(_check("6a", ds, comp + f" ({e})", at("large_encoder", "train", e), "amortization_gap",
                               at("standard", "train", e), "amortization_gap", "<", ""))
        elif le_tr and st_tr:
            ea, eb = le_tr[-1], st_tr[-1]
            rows.append(_check("6a", ds, comp + f" (large_encoder {ea}, standard {eb})",
                               at("large_encoder", "train", ea), "amortization_gap",
                               at("standard", "train", eb), "amortization_gap", "<", "",
                               "no epoch common to both models; each model's last epoch used"))
        else:
            which = "large_encoder" if not le_tr else "standard"
            rows.append(_row("6a", ds, comp, note=f"gaps_over_training has no train rows for {which}"))

        # 6b: validation amortization gap of large_encoder grows over training.
        le_va = epochs("large_encoder", "valid")
        if len(le_va) >= 2:
            e0, e1 = le_va[0], le_va[-1]
            rows.append(_check(
                "6b", ds, f"amortization_gap (large_encoder, valid, epoch {e1}) > "
                          f"amortization_gap (large_encoder, valid, epoch {e0})",
                at("large_encoder", "valid", e1), "amortization_gap", at("large_encoder", "valid", e0),
                "amortization_gap", ">", "", "last validation epoch against the first"))
        elif len(le_va) == 1 and le_va[0] in le_tr:
            e = le_va[0]
            rows.append(_check(
                "6b", ds, f"amortization_gap (large_encoder, valid, epoch {e}) > "
                          f"amortization_gap (large_encoder, train, epoch {e})",
                at("large_encoder", "valid", e), "amortization_gap", at("large_encoder", "train", e),
                "amortization_gap", ">", "",
                "only one validation epoch: validation against training at that epoch"))
        else:
            rows.append(_row("6b", ds, COMPARISONS["6b"],
                             note="gaps_over_training has no usable validation rows for large_encoder"))

        # 6c: approximation gap generalises, large_encoder, last epoch with both splits.
        both = sorted(set(le_tr) & set(le_va))
        comp = COMPARISONS["6c"]
        if not both:
            rows.append(_row("6c", ds, comp, note="no epoch with both train and valid rows for large_encoder"))
            continue
        e = both[-1]
        va, tr = at("large_encoder", "valid", e), at("large_encoder", "train", e)
        a, se_a = _f(va["approximation_gap"]), _se(va, "approximation_gap")
        b, se_b = _f(tr["approximation_gap"]), _se(tr, "approximation_gap")
        comp += f" at epoch {e}"
        if not (math.isfinite(a) and math.isfinite(b)):
            rows.append(_row("6c", ds, comp, a, se_a, b, se_b, note="a value is missing (NaN)"))
            continue
        ses = [s for s in (se_a, se_b) if math.isfinite(s)]
        se_d = math.sqrt(sum(s * s for s in ses))
        diff = a - b
        tol = max(N_SE * se_d, GENERALISE_REL_TOL * abs(b))
        verdict = "holds" if abs(diff) <= tol else "does not hold"
        note = (f"valid − train = {_fmt(diff)} ± {_fmt(se_d)}; tolerance max({N_SE:g} se, "
                f"{GENERALISE_REL_TOL:.0%} of the train gap) = {_fmt(tol)}")
        amort = _f(va["amortization_gap"]) - _f(tr["amortization_gap"])
        if math.isfinite(amort):
            note += f"; for contrast, amortization gap valid − train = {_fmt(amort)}"
        if len(ses) < 2:
            note += "; a standard error is missing"
        rows.append(_row("6c", ds, comp, a, se_a, b, se_b, verdict, note))
    return rows


_F2 = {"amortized_ffg": "L[q]", "optimal_ffg": "L[q*_FFG]", "optimal_flow": "L[q*_Flow]", "true": "log p(x)"}


def _claims_figure2(t: pd.DataFrame, dataset: str) -> list[dict[str, Any]]:
    _require(t, "figure2_bounds", ["index", "distribution", "elbo", "log_px"])
    t = t.assign(distribution=t["distribution"].astype(str))
    groups = [(str(ds), g) for ds, g in t.groupby("dataset", sort=False)] if "dataset" in t else [(dataset, t)]
    rows = []
    for ds, g in groups:
        dup = g.duplicated(["index", "distribution"])
        if dup.any():
            raise VaegapsError(f"figure2_bounds has several rows for one (index, distribution) in {ds}")
        wide = g.pivot(index="index", columns="distribution", values="elbo")
        log_px = g.groupby("index")["log_px"].first()
        if "true" in wide:  # "true" rows carry the exact log p(x) as their elbo
            log_px = wide["true"].where(wide["true"].notna(), log_px)
        wide["true"] = log_px.reindex(wide.index)

        def paired(claim, lo, hi, op):
            comp = f"mean {_F2[lo]} {op} mean {_F2[hi]}"
            missing = [k for k in (lo, hi) if k not in wide]
            if missing:
                return _row(claim, ds, comp, note=f"figure2_bounds has no {', '.join(missing)} rows")
            x = wide[[lo, hi]].dropna()
            n = len(x)
            if n == 0:
                return _row(claim, ds, comp, note="no datapoint has both values")

            def mse(v):
                return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")

            (a, se_a), (b, se_b), (d, se_d) = mse(x[lo]), mse(x[hi]), mse(x[hi] - x[lo])
            # decide on the paired difference: b − a against 0 with its own standard error
            verdict, note = decide(d, se_d, 0.0, 0.0, ">" if op == "<" else ">=")
            note = note.replace("a − b", f"paired mean of {_F2[hi]} − {_F2[lo]}")
            frac = float(((x[hi] - x[lo]) > 0).mean() if op == "<" else ((x[hi] - x[lo]) >= 0).mean())
            note += f"; ordering holds on {frac:.0%} of {n} datapoints (paired standard error)"
            return _row(claim, ds, comp, a, se_a, b, se_b, verdict, note)

        rows.append(paired("7a", "amortized_ffg", "optimal_ffg", "<"))
        rows.append(paired("7b", "optimal_ffg", "optimal_flow", "<"))
        rows.append(paired("7c", "optimal_flow", "true", "<="))
        comp = COMPARISONS["7d"]
        if "optimal_ffg" not in wide:
            rows.append(_row("7d", ds, comp, note="figure2_bounds has no optimal_ffg rows"))
        else:
            gap = (wide["true"] - wide["optimal_ffg"]).dropna()
            if gap.empty:
                rows.append(_row("7d", ds, comp, note="no datapoint has both values"))
            else:
                mx = float(gap.max())
                verdict = "holds" if mx > NON_GAUSSIAN_MIN else "does not hold"
                rows.append(_row("7d", ds, comp, mx, np.nan, NON_GAUSSIAN_MIN, np.nan, verdict,
                                 f"largest at index {gap.idxmax()}: {_fmt(mx)} nats (the FFG approximation "
                                 f"gap there); over {len(gap)} datapoints"))
    return rows


def _claims_bdmc(t: pd.DataFrame) -> list[dict[str, Any]]:
    _require(t, "bdmc", ["dataset", "gap"])
    keys = [c for c in ("variant", "family", "setting", "n_intermediate", "n_chains") if c in t]
    rows = []
    for _, r in t.iterrows():
        desc = ", ".join(f"{k}={r[k]}" for k in keys)
        comp = f"BDMC gap (upper − lower) < {BDMC_MAX_GAP:g} nat" + (f" [{desc}]" if desc else "")
        gap, se = _f(r["gap"]), _se(r, "gap")
        # strict: holds only when the whole 2-se interval is below the threshold
        verdict, note = decide(gap, se, BDMC_MAX_GAP, 0.0, "<")
        note = note.replace("b − a", f"{BDMC_MAX_GAP:g} − gap")
        if math.isfinite(gap) and gap < -N_SE * (se if math.isfinite(se) else 0.0):
            note += "; upper bound below lower bound beyond noise: check the BDMC run"
        for k in ("lower", "upper"):
            if k in r and math.isfinite(_f(r[k])):
                note += f"; {k} = {_fmt(_f(r[k]))}"
        rows.append(_row("bdmc", str(r["dataset"]), comp, gap, se, BDMC_MAX_GAP, np.nan, verdict, note))
    return rows


def evaluate_claims(tables: dict[str, pd.DataFrame], figure2_dataset: str = "2d") -> pd.DataFrame:
    """One row per (claim, dataset) check; see the module docstring for columns and the rule.

    `tables` maps names in `TABLE_NAMES` to DataFrames; a missing (or None) table makes its claims
    "not evaluated". `figure2_dataset` labels the Figure 2 rows when that table has no dataset column.
    ("decoder_capacity" is accepted, but no claim of PROTOCOL §7 reads it.)
    """
    unknown = set(tables) - set(TABLE_NAMES)
    if unknown:
        raise VaegapsError(f"unknown table(s) {', '.join(sorted(unknown))}; expected some of "
                           f"{', '.join(TABLE_NAMES)}")
    tabs = {k: v for k, v in tables.items() if v is not None}

    def claims_of(table):
        return [c for c, t in CLAIM_INPUTS.items() if t == table]

    rows: list[dict[str, Any]] = []
    runners = [
        ("table2", lambda t: _claims_table2(t, tabs.get("table2_paired"))),
        ("table3", lambda t: _claims_table3(t, tabs.get("table2"))),
        ("flows_amortization", _claims_flows),
        ("gaps_over_training", _claims_training),
        ("figure2_bounds", lambda t: _claims_figure2(t, figure2_dataset)),
        ("bdmc", _claims_bdmc),
    ]
    for name, run in runners:
        if name not in tabs:
            rows += _absent(claims_of(name), name)
        elif tabs[name].empty:
            rows += [_row(c, "", COMPARISONS[c], note=f"input {name} is empty") for c in claims_of(name)]
        else:
            rows += run(tabs[name])
    out = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    order = {c: i for i, c in enumerate(CLAIM_INPUTS)}
    out = out.iloc[np.argsort([order[c] for c in out["claim"]], kind="stable")].reset_index(drop=True)
    return out.astype({"claim": str, "dataset": str})


def load_tables(paths: dict[str, str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """Read each named table: Parquet by its suffix, otherwise CSV."""
    unknown = set(paths) - set(TABLE_NAMES)
    if unknown:
        raise VaegapsError(f"unknown table(s) {', '.join(sorted(unknown))}; expected some of "
                           f"{', '.join(TABLE_NAMES)}")
    out = {}
    for name, path in paths.items():
        path = Path(path)
        if not path.exists():
            raise VaegapsError(f"missing file {path} (table {name}); run the stage that writes it first")
        out[name] = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return out


def to_markdown(claims: pd.DataFrame) -> str:
    """The verdicts as a Markdown table (claim, dataset, comparison, values, verdict, note)."""
    lines = ["| claim | dataset | comparison | a | b | verdict | note |", "|---|---|---|---:|---:|---|---|"]

    def cell(v, s):
        if not math.isfinite(v):
            return ""
        return f"{v:.2f} ± {s:.2f}" if math.isfinite(s) else f"{v:.2f}"

    for _, r in claims.iterrows():
        txt = [str(r["claim"]), str(r["dataset"]), str(r["comparison"]), cell(r["value_a"], r["se_a"]),
               cell(r["value_b"], r["se_b"]), f"**{r['verdict']}**", str(r["note"])]
        lines.append("| " + " | ".join(t.replace("|", "\\|") for t in txt) + " |")
    lines += ["", "Values in nats; ± is the standard error across datapoints. "
              f"Rule: a strict claim holds when the difference exceeds {N_SE:g} standard errors, fails when it "
              f"is beyond {N_SE:g} standard errors the other way, and is inconclusive in between; an "
              f"\"at least\" claim fails only when contradicted beyond {N_SE:g} standard errors."]
    return "\n".join(lines) + "\n"


def write_claims(tables: dict[str, pd.DataFrame], csv_path: str | os.PathLike,
                 md_path: str | os.PathLike | None = None, **kwargs: Any) -> pd.DataFrame:
    """Evaluate the claims and write them as CSV (and optionally Markdown), atomically."""
    claims = evaluate_claims(tables, **kwargs)
    with atomic_path(csv_path) as tmp:
        claims.to_csv(tmp, index=False)
    if md_path is not None:
        with atomic_path(md_path) as tmp:
            tmp.write_text(to_markdown(claims))
    return claims
