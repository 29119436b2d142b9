"""The claims checker on synthetic tables: clear holds, clear failures, differences within noise."""

import math

import numpy as np
import pandas as pd
import pytest

from vaegaps.claims import (CLAIM_COLUMNS, CLAIM_INPUTS, TABLE_NAMES, decide, evaluate_claims, load_tables,
                            to_markdown, write_claims)
from vaegaps.errors import VaegapsError

VALUES = ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
          "amortization_gap", "inference_gap"]


def gap_row(log_px, flow, ffg, amortized, family, se=0.1, **ids):
    """A Table 2-style row whose gaps follow from the bounds (q* of the trained family)."""
    qstar = ffg if family == "ffg" else flow
    row = {**ids, "trained_family": family, "n_points": 1000, "log_px": log_px, "elbo_local_flow": flow,
           "elbo_local_ffg": ffg, "elbo_amortized": amortized, "approximation_gap": log_px - qstar,
           "amortization_gap": qstar - amortized, "inference_gap": log_px - amortized}
    row.update({f"{c}_se": se for c in VALUES})
    return row


def table2_frame(se=0.1):
    """mnist: every claim holds clearly. fashion: every claim fails clearly. noise: within noise."""
    return pd.DataFrame([
        # ffg: approx 2, amort 6; flow: approx 1 (smaller), amort 7 (not smaller); flow−ffg 5 vs 0.5
        gap_row(-90, -92.5, -92.0, -98.0, "ffg", se, dataset="mnist"),
        gap_row(-89, -90.0, -95.0, -97.0, "flow", se, dataset="mnist"),
        # ffg: approx 6, amort 1; flow: approx 8, amort 0.2; flow−ffg 0 vs 3
        gap_row(-230, -233.0, -236.0, -237.0, "ffg", se, dataset="fashion"),
        gap_row(-230, -238.0, -238.0, -238.2, "flow", se, dataset="fashion"),
        # ffg: approx 2.0, amort 2.05; flow: approx 1.95, amort 2.0 (se 1 each: all within noise)
        gap_row(-100, -101.0, -102.0, -104.05, "ffg", 1.0, dataset="noise"),
        gap_row(-100, -101.95, -102.0, -103.95, "flow", 1.0, dataset="noise"),
    ])


def verdicts(out, claim):
    sub = out[out["claim"] == claim]
    return dict(zip(sub["dataset"], sub["verdict"]))


def test_decision_rule():
    assert decide(10, 1, 5, 1, ">")[0] == "holds"
    assert decide(5, 1, 10, 1, ">")[0] == "does not hold"
    assert decide(5.5, 1, 5, 1, ">")[0] == "inconclusive"
    assert decide(4.5, 1, 5, 1, ">=")[0] == "holds"          # a small reversal within noise
    assert decide(1, 1, 5, 1, ">=")[0] == "does not hold"
    assert decide(1, 0.1, 5, 0.1, "<")[0] == "holds"
    assert decide(5, 0.1, 1, 0.1, "<=")[0] == "does not hold"
    # 2 se of the difference: sqrt(1 + 1) * 2 = 2.83
    assert decide(2.9, 1, 0, 1, ">")[0] == "holds"
    assert decide(2.7, 1, 0, 1, ">")[0] == "inconclusive"
    # no standard error: the point estimates decide, and the note says so
    v, note = decide(1.0, float("nan"), 0.0, float("nan"), ">")
    assert v == "holds" and "point estimates" in note
    v, note = decide(1.0, 0.1, 0.0, float("nan"), ">")
    assert v == "holds" and "side b" in note
    assert decide(0.0, float("nan"), 0.0, float("nan"), ">")[0] == "does not hold"
    assert decide(float("nan"), 1, 0, 1, ">")[0] == "not evaluated"


def test_output_columns_and_types():
    out = evaluate_claims({"table2": table2_frame()})
    assert list(out.columns) == CLAIM_COLUMNS
    assert out["claim"].map(type).eq(str).all()
    assert set(out["verdict"]) <= {"holds", "does not hold", "inconclusive", "not evaluated"}
    for c in ("value_a", "se_a", "value_b", "se_b"):
        assert out[c].dtype == float
    assert out["statement"].str.len().gt(10).all()


def test_table2_claims():
    out = evaluate_claims({"table2": table2_frame()})
    assert verdicts(out, "1") == {"mnist": "holds", "fashion": "does not hold", "noise": "holds"}
    assert verdicts(out, "2a") == {"mnist": "holds", "fashion": "does not hold", "noise": "inconclusive"}
    assert verdicts(out, "2b") == {"mnist": "holds", "fashion": "does not hold", "noise": "holds"}
    assert verdicts(out, "3") == {"mnist": "holds", "fashion": "does not hold", "noise": "inconclusive"}
    r = out[(out["claim"] == "1") & (out["dataset"] == "mnist")].iloc[0]
    assert (r["value_a"], r["value_b"]) == (6.0, 2.0)
    assert r["se_a"] == pytest.approx(0.1)
    r = out[(out["claim"] == "3") & (out["dataset"] == "mnist")].iloc[0]
    assert r["value_a"] == pytest.approx(5.0) and r["value_b"] == pytest.approx(-0.5)
    assert r["se_a"] == pytest.approx(math.sqrt(0.02))


def test_missing_row_is_not_evaluated():
    t = table2_frame()
    t = t[~((t["dataset"] == "mnist") & (t["trained_family"] == "flow"))]
    out = evaluate_claims({"table2": t})
    assert verdicts(out, "1")["mnist"] == "holds"
    for c in ("2a", "2b", "3"):
        r = out[(out["claim"] == c) & (out["dataset"] == "mnist")].iloc[0]
        assert r["verdict"] == "not evaluated" and "flow" in r["note"]


def test_missing_inputs_are_not_evaluated():
    out = evaluate_claims({})
    assert list(out.columns) == CLAIM_COLUMNS
    assert list(out["claim"]) == list(CLAIM_INPUTS)
    assert (out["verdict"] == "not evaluated").all()
    for _, r in out.iterrows():
        assert f"input {CLAIM_INPUTS[r['claim']]} is missing" in r["note"]
    out = evaluate_claims({"table2": table2_frame(), "bdmc": None})
    assert (out.loc[out["claim"] == "bdmc", "verdict"] == "not evaluated").all()
    assert (out.loc[out["claim"] == "1", "verdict"] != "not evaluated").all()


def test_unknown_table_and_missing_column_are_errors():
    with pytest.raises(VaegapsError, match="unknown table"):
        evaluate_claims({"tabel2": table2_frame()})
    with pytest.raises(VaegapsError, match="amortization_gap"):
        evaluate_claims({"table2": table2_frame().drop(columns=["amortization_gap"])})


def test_table3_claims():
    rows = []
    for ds, (noann_approx, noann_logpx) in {"mnist": (1.0, -95.0), "fashion": (4.0, -85.0),
                                             "noise": (2.9, -89.9)}.items():
        se = 1.0 if ds == "noise" else 0.1
        std = gap_row(-90.0, -91.0, -93.0, -97.0, "ffg", se, dataset=ds, variant="standard")
        lpx = noann_logpx
        noann = gap_row(lpx, lpx - 0.5, lpx - noann_approx, lpx - 8, "ffg", se, dataset=ds,
                        variant="no_annealing")
        rows += [std, noann]
    out = evaluate_claims({"table3": pd.DataFrame(rows)})
    assert verdicts(out, "4a") == {"mnist": "holds", "fashion": "does not hold", "noise": "inconclusive"}
    assert verdicts(out, "4b") == {"mnist": "holds", "fashion": "does not hold", "noise": "inconclusive"}


def test_table3_falls_back_to_table2_for_standard():
    t2 = table2_frame()
    lpx = -95.0
    t3 = pd.DataFrame([gap_row(lpx, lpx - 0.5, lpx - 1.0, lpx - 8, "ffg", 0.1, dataset="mnist",
                               variant="no_annealing")])
    out = evaluate_claims({"table2": t2, "table3": t3})
    r = out[out["claim"] == "4a"].iloc[0]
    assert r["verdict"] == "holds" and "table2" in r["note"]


def test_flows_amortization_claims():
    def row(ds, enc, gap, se=0.1):
        return {"dataset": ds, "encoder": enc, "family": enc.split("_")[0], "n_points": 1000,
                "elbo_amortized": -100 - gap, "elbo_amortized_se": se, "elbo_qstar": -100.0,
                "elbo_qstar_se": se, "amortization_gap": gap, "amortization_gap_se": se}
    t = pd.DataFrame([row("mnist", "ffg_small", 10), row("mnist", "realnvp_small", 5),
                      row("mnist", "flow_small", 9.9), row("mnist", "ffg", 4),
                      row("fashion", "ffg_small", 3), row("fashion", "flow_small", 6)])
    out = evaluate_claims({"flows_amortization": t})
    assert verdicts(out, "5a") == {"mnist": "inconclusive", "fashion": "does not hold"}
    assert verdicts(out, "5b")["mnist"] == "holds"
    r = out[(out["claim"] == "5b") & (out["dataset"] == "fashion")].iloc[0]
    assert r["verdict"] == "not evaluated" and "realnvp_small" in r["note"]


def training_frame(le_train_amort, le_valid_amort_first, le_valid_amort_last, le_valid_approx):
    rows = []

    def add(model, split, epoch, approx, amort, se=0.1):
        rows.append({"dataset": "fashion", "model": model, "epoch": epoch, "split": split, "n_points": 1000,
                     "log_px": -100.0, "log_px_se": se, "elbo_qstar": -100 - approx, "elbo_qstar_se": se,
                     "elbo_amortized": -100 - approx - amort, "elbo_amortized_se": se,
                     "approximation_gap": approx, "approximation_gap_se": se,
                     "amortization_gap": amort, "amortization_gap_se": se})
    for e in (100, 1000, 3000):
        add("standard", "train", e, 5.0, 8.0)
        add("standard", "valid", e, 5.0, 9.0)
        add("large_encoder", "train", e, 5.0, le_train_amort)
    add("large_encoder", "valid", 100, 5.0, le_valid_amort_first)
    add("large_encoder", "valid", 1000, 5.0, (le_valid_amort_first + le_valid_amort_last) / 2)
    add("large_encoder", "valid", 3000, le_valid_approx, le_valid_amort_last)
    return pd.DataFrame(rows)


def test_gaps_over_training_claims():
    out = evaluate_claims({"gaps_over_training": training_frame(3.0, 4.0, 12.0, 5.3)})
    assert verdicts(out, "6a") == {"fashion": "holds"}
    assert verdicts(out, "6b") == {"fashion": "holds"}
    assert verdicts(out, "6c") == {"fashion": "holds"}
    r = out[out["claim"] == "6b"].iloc[0]
    assert "epoch 3000" in r["comparison"] and "epoch 100" in r["comparison"]
    assert (r["value_a"], r["value_b"]) == (12.0, 4.0)
    out = evaluate_claims({"gaps_over_training": training_frame(9.0, 12.0, 4.0, 9.0)})
    assert verdicts(out, "6a") == {"fashion": "does not hold"}
    assert verdicts(out, "6b") == {"fashion": "does not hold"}
    assert verdicts(out, "6c") == {"fashion": "does not hold"}
    out = evaluate_claims({"gaps_over_training": training_frame(7.9, 8.0, 8.1, 5.0)})
    assert verdicts(out, "6a") == {"fashion": "inconclusive"}
    assert verdicts(out, "6b") == {"fashion": "inconclusive"}


def test_gaps_over_training_single_validation_epoch_uses_train():
    t = training_frame(3.0, 4.0, 12.0, 5.0)
    t = t[~((t["model"] == "large_encoder") & (t["split"] == "valid") & (t["epoch"] < 3000))]
    r = evaluate_claims({"gaps_over_training": t}).query("claim == '6b'").iloc[0]
    assert r["verdict"] == "holds" and "train" in r["comparison"] and "only one validation epoch" in r["note"]


def figure2_frame(amortized_offsets, ffg_offsets, flow_offsets):
    rng = np.random.default_rng(0)
    rows = []
    for i, (a, f, fl) in enumerate(zip(amortized_offsets, ffg_offsets, flow_offsets)):
        lp = -50 + rng.normal()
        for dist, off in (("true", 0.0), ("amortized_ffg", a), ("optimal_ffg", f), ("optimal_flow", fl)):
            rows.append({"index": i, "distribution": dist, "elbo": lp - off, "log_px": lp})
    return pd.DataFrame(rows)


def test_figure2_claims():
    out = evaluate_claims({"figure2_bounds": figure2_frame([3.0, 2.5, 4.0, 3.2], [0.5, 0.3, 1.2, 0.6],
                                                           [0.05, 0.02, 0.1, 0.03])}, figure2_dataset="mnist")
    assert verdicts(out, "7a") == {"mnist": "holds"}
    assert verdicts(out, "7b") == {"mnist": "holds"}
    assert verdicts(out, "7c") == {"mnist": "holds"}
    r = out[out["claim"] == "7d"].iloc[0]
    assert r["verdict"] == "holds" and r["value_a"] == pytest.approx(1.2) and "index 2" in r["note"]
    # Flow beats log p(x) on every point (a bug), FFG equals amortized, all posteriors Gaussian
    out = evaluate_claims({"figure2_bounds": figure2_frame([0.05, 0.02, 0.04, 0.03], [0.05, 0.02, 0.04, 0.03],
                                                           [-1.0, -1.1, -0.9, -1.05])})
    assert verdicts(out, "7a") == {"2d": "does not hold"}
    assert verdicts(out, "7b") == {"2d": "holds"}
    assert verdicts(out, "7c") == {"2d": "does not hold"}
    assert verdicts(out, "7d") == {"2d": "does not hold"}
    # within noise: the paired differences scatter around zero
    out = evaluate_claims({"figure2_bounds": figure2_frame([1.0, 1.0, 1.0, 1.0], [1.5, 0.5, 1.4, 0.7],
                                                           [0.5, 0.5, 0.5, 0.5])})
    assert verdicts(out, "7a") == {"2d": "inconclusive"}


def test_bdmc_rows():
    t = pd.DataFrame({"dataset": ["mnist"] * 3, "variant": "standard", "family": "ffg",
                      "setting": ["fast", "paper", "noisy"], "n_points": 100,
                      "n_intermediate": [100, 10000, 500],
                      "n_chains": 16, "lower": [-95.0, -92.2, -93.0], "lower_se": 1.0,
                      "upper": [-91.0, -92.0, -92.1], "upper_se": 1.0,
                      "gap": [4.0, 0.2, 0.9], "gap_se": [0.1, 0.05, 0.3]})
    out = evaluate_claims({"bdmc": t})
    b = out[out["claim"] == "bdmc"]
    assert list(b["verdict"]) == ["does not hold", "holds", "inconclusive"]
    assert b["comparison"].str.contains("setting=paper").any()


def test_write_and_load_roundtrip(tmp_path):
    p2, pf = tmp_path / "table2.csv", tmp_path / "fig2.parquet"
    table2_frame().to_csv(p2, index=False)
    figure2_frame([3.0, 2.5], [0.5, 0.3], [0.05, 0.02]).to_parquet(pf)
    tables = load_tables({"table2": p2, "figure2_bounds": pf})
    assert set(tables) == {"table2", "figure2_bounds"}
    out = write_claims(tables, tmp_path / "out" / "claims.csv", tmp_path / "out" / "claims.md")
    back = pd.read_csv(tmp_path / "out" / "claims.csv", dtype={"claim": str}, keep_default_na=False,
                       na_values=[""])
    assert list(back.columns) == CLAIM_COLUMNS and len(back) == len(out)
    assert list(back["claim"]) == list(out["claim"])
    assert "holds" in (tmp_path / "out" / "claims.md").read_text()
    assert to_markdown(out).count("\n") == len(out) + 4
    with pytest.raises(VaegapsError, match="missing file"):
        load_tables({"bdmc": tmp_path / "nope.csv"})
    assert set(TABLE_NAMES) >= set(CLAIM_INPUTS.values())


def test_claim3_uses_paired_differences_when_given():
    """Table 2's unpaired errors (±0.45 per ELBO) hide a clear paired difference."""
    from vaegaps.claims import evaluate_claims

    cols = ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
            "amortization_gap", "inference_gap"]
    rows = []
    for fam, flow, ffg in (("ffg", -19.73, -19.84), ("flow", -19.78, -20.29)):
        r = {"dataset": "d", "trained_family": fam, "n_points": 100, "log_px": -19.5,
             "elbo_local_flow": flow, "elbo_local_ffg": ffg, "elbo_amortized": -20.0,
             "approximation_gap": 0.3, "amortization_gap": 0.2, "inference_gap": 0.5}
        r.update({f"{c}_se": 0.45 for c in cols})
        rows.append(r)
    table2 = pd.DataFrame(rows)
    unpaired = evaluate_claims({"table2": table2})
    assert unpaired.set_index("claim").loc["3", "verdict"] == "inconclusive"
    paired = pd.DataFrame({"dataset": ["d", "d"], "trained_family": ["ffg", "flow"], "n_points": [100, 100],
                           "flow_minus_ffg": [0.11, 0.51], "flow_minus_ffg_se": [0.02, 0.03]})
    out = evaluate_claims({"table2": table2, "table2_paired": paired}).set_index("claim")
    assert out.loc["3", "verdict"] == "holds" and "paired" in out.loc["3", "note"]
