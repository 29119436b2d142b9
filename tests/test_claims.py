"""The claims checks on made-up per-datapoint frames: every check once holding and once not."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest

from vaegaps.claims import (CHECKS, CLAIM_COLUMNS, CLAIM_IDS, CLOSE_NATS, FAR_NATS, GATE_COLUMNS, INPUT_NAMES,
                            decide, decide_beyond, decide_equivalent, evaluate_claims, load_inputs, negentropy,
                            to_markdown, write_claims)
from vaegaps.errors import VaegapsError

N = 200


def noise(seed, sd, n=N):
    return np.random.default_rng(seed).normal(0.0, sd, n)


def model(ds="mnist", variant="standard", family="ffg", approx=2.0, amort=6.0, flow_minus_ffg=None,
          n=N, conv=1.0, conv_ffg=1.0, conv_flow=1.0, ais_below=0.0, log_px=None):
    """Per-datapoint gaps rows of one model; approx, amort, flow_minus_ffg: scalars or arrays, plus
    the model's own noise. log p̂ is shared by the models of a dataset (a large common component)."""
    seed = zlib.crc32(f"{ds}/{variant}/{family}".encode()) % 10_000
    if flow_minus_ffg is None:
        flow_minus_ffg = 0.3 if family == "ffg" else 20.0
    lp = (-90.0 + noise(zlib.crc32(ds.encode()) % 10_000, 10.0, n)) if log_px is None else np.asarray(log_px, float)
    approx = np.broadcast_to(approx, n) + noise(seed + 1, 0.2, n)
    amort = np.broadcast_to(amort, n) + noise(seed + 2, 0.2, n)
    qstar = lp - approx
    other = qstar + flow_minus_ffg if family == "ffg" else qstar - flow_minus_ffg
    flow, ffg = (other, qstar) if family == "ffg" else (qstar, other)

    def frac(f):
        return np.arange(n) < round(f * n)
    return pd.DataFrame({
        "dataset": ds, "variant": variant, "trained_family": family, "index": np.arange(n),
        "ais": lp, "ais_se": 0.1, "iwae_qstar": lp - 0.5, "iwae_qstar_se": 0.1, "log_px": lp,
        "log_px_source": "ais", "ais_below_iwae": frac(ais_below),
        "elbo_local_flow": flow, "elbo_local_flow_se": 0.05, "elbo_local_ffg": ffg, "elbo_local_ffg_se": 0.05,
        "elbo_amortized": qstar - amort, "elbo_amortized_se": 0.05, "elbo_qstar": qstar, "elbo_qstar_se": 0.05,
        "converged_local_ffg": frac(conv_ffg), "converged_local_flow": frac(conv_flow), "qstar_converged": frac(conv),
        "approximation_gap": approx, "amortization_gap": amort, "inference_gap": approx + amort})


def gaps(*models):
    return pd.concat(models, ignore_index=True)


def run(**inputs):
    return evaluate_claims(inputs)


def row(out, claim, dataset=None):
    sub = out[out["claim"] == claim]
    if dataset is not None:
        sub = sub[sub["dataset"] == dataset]
    assert len(sub) == 1, sub
    return sub.iloc[0]


def verdict(out, claim, dataset=None):
    return row(out, claim, dataset)["verdict"]


# --------------------------------------------------------------------------- rule and table


def test_decision_rules():
    assert decide(5, 1, ">") == "holds" and decide(-5, 1, ">") == "does not hold"
    assert decide(1, 1, ">") == "inconclusive"
    assert decide(-1, 1, ">=") == "holds" and decide(-3, 1, ">=") == "does not hold"
    assert decide(-5, 1, "<") == "holds" and decide(5, 1, "<=") == "does not hold"
    assert decide(0.1, float("nan"), ">") == "holds" and decide(0.0, float("nan"), ">") == "does not hold"
    assert decide(float("nan"), 1, ">") == "not evaluated"
    assert decide_beyond(5, 1, 2) == "holds" and decide_beyond(3, 1, 2) == "inconclusive"
    assert decide_beyond(-1, 1, 2) == "does not hold"
    assert decide_equivalent(0.2, 0.1, 1) == "holds" and decide_equivalent(0.5, 0.5, 1) == "inconclusive"
    assert decide_equivalent(3, 0.5, 1) == "does not hold"


def test_table_is_declarative_and_complete():
    assert len(set(CLAIM_IDS)) == len(CHECKS)
    for c in CHECKS:
        assert c.input in INPUT_NAMES and c.kind in ("evidence", "sanity check")
        assert set(c.depends) <= set(GATE_COLUMNS) and len(c.statement) > 10 and c.comparison
    assert {c.id: c.kind for c in CHECKS}["7c"] == "sanity check"


def test_output_columns_and_types():
    out = run(gaps=gaps(model(), model(family="flow", approx=1.0, amort=7.0)))
    assert list(out.columns) == CLAIM_COLUMNS
    assert set(out["verdict"]) <= {"holds", "does not hold", "inconclusive", "not evaluated"}
    for c in ("value_a", "se_a", "value_b", "se_b", "diff", "diff_se"):
        assert out[c].dtype == float
    assert out["paired"].dtype == bool
    assert list(dict.fromkeys(out["claim"])) == list(CLAIM_IDS)


# --------------------------------------------------------------------------- 1, 1b


def test_claim1_holds_and_fails():
    out = run(gaps=gaps(model("mnist", approx=2.0, amort=6.0), model("fashion_mnist", approx=6.0, amort=1.0)))
    assert verdict(out, "1", "mnist") == "holds"
    assert verdict(out, "1", "fashion_mnist") == "does not hold"
    r = row(out, "1", "mnist")
    assert r["paired"] and r["diff"] == pytest.approx(r["value_a"] - r["value_b"])
    assert r["value_a"] == pytest.approx(6.0, abs=0.1) and "amortization/approximation" in r["note"]


def test_same_datapoint_comparisons_use_paired_errors():
    """Both sides share a large per-datapoint component: the unpaired se (√(se_a² + se_b²)) would hide a
    clear paired difference."""
    common = noise(7, 10.0) + 20.0
    # claim 1 (non-strict): amortization is 0.3 below approximation on every datapoint, ± 0.05
    m = model(approx=common, amort=common - 0.3)
    r = row(run(gaps=m), "1", "mnist")
    assert r["verdict"] == "does not hold" and r["paired"]
    assert r["diff"] == pytest.approx(-0.3, abs=0.05)
    d = m["amortization_gap"] - m["approximation_gap"]
    assert r["diff_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(N))
    assert 2 * math.hypot(r["se_a"], r["se_b"]) > 0.3        # unpaired, it would have "held"
    # claim 2a (strict): flow-trained approximation gap 0.3 smaller on every datapoint
    out = run(gaps=gaps(model(approx=common), model(family="flow", approx=common - 0.3)))
    r = row(out, "2a", "mnist")
    assert r["verdict"] == "holds" and r["paired"]
    assert 2 * math.hypot(r["se_a"], r["se_b"]) > abs(r["diff"])  # unpaired: inconclusive


def test_claim1b_only_on_fashion_and_cifar():
    out = run(gaps=gaps(model("mnist"), model("fashion_mnist", approx=2.0, amort=8.0),
                        model("cifar10", approx=2.0, amort=2.0)))
    assert set(out.loc[out["claim"] == "1b", "dataset"]) == {"fashion_mnist", "cifar10"}
    assert verdict(out, "1b", "fashion_mnist") == "holds"
    assert verdict(out, "1b", "cifar10") == "inconclusive"
    out = run(gaps=model("cifar10", approx=8.0, amort=2.0))
    assert verdict(out, "1b", "cifar10") == "does not hold"
    r = row(run(gaps=model("mnist")), "1b")
    assert r["verdict"] == "not evaluated" and "fashion_mnist" in r["note"]


# --------------------------------------------------------------------------- 2, 3


def test_claim2_holds_and_fails():
    good = gaps(model("mnist", approx=2.0, amort=6.0), model("mnist", family="flow", approx=1.0, amort=7.0))
    bad = gaps(model("mnist", approx=2.0, amort=6.0), model("mnist", family="flow", approx=3.0, amort=4.0))
    out_good, out_bad = run(gaps=good), run(gaps=bad)
    assert verdict(out_good, "2a") == "holds" and verdict(out_good, "2b") == "holds"
    assert verdict(out_bad, "2a") == "does not hold" and verdict(out_bad, "2b") == "does not hold"
    r = row(run(gaps=model()), "2a")
    assert r["verdict"] == "not evaluated" and "flow-trained" in r["note"]


def test_claim3_thresholds():
    def out(flow_d, ffg_d, sd=0.1):
        return run(gaps=gaps(model(flow_minus_ffg=ffg_d + noise(3, sd)),
                             model(family="flow", flow_minus_ffg=flow_d + noise(4, sd))))
    o = out(20.0, 0.3)
    assert verdict(o, "3a") == "holds" and verdict(o, "3b") == "holds"
    assert row(o, "3a")["diff"] == pytest.approx(20.0, abs=0.1)
    o = out(0.5, 3.0)
    assert verdict(o, "3a") == "does not hold" and verdict(o, "3b") == "does not hold"
    o = out(FAR_NATS, CLOSE_NATS, sd=2.0)   # on the thresholds, noisy
    assert verdict(o, "3a") == "inconclusive" and verdict(o, "3b") == "inconclusive"


# --------------------------------------------------------------------------- 4, 6a


def test_claim4_holds_and_fails():
    lp = -90.0 + noise(11, 10.0)
    std = model("mnist", approx=3.0, log_px=lp)
    good = model("mnist", variant="no_annealing", approx=1.0, log_px=lp - 2.0 + noise(12, 0.2))
    bad = model("mnist", variant="no_annealing", approx=5.0, log_px=lp + 2.0 + noise(12, 0.2))
    out = run(gaps=gaps(std, good, model("cifar10")))
    assert verdict(out, "4a") == "holds" and verdict(out, "4b") == "holds"
    assert "cifar10" not in set(out.loc[out["claim"].isin(["4a", "4b"]), "dataset"])
    out = run(gaps=gaps(std, bad))
    assert verdict(out, "4a") == "does not hold" and verdict(out, "4b") == "does not hold"
    assert verdict(run(gaps=std), "4a") == "not evaluated"


def test_claim6a_holds_and_fails():
    std = model("mnist", amort=6.0)
    out = run(gaps=gaps(std, model("mnist", variant="large_encoder", amort=4.0)))
    assert verdict(out, "6a") == "holds"
    out = run(gaps=gaps(std, model("mnist", variant="large_encoder", amort=7.0)))
    assert verdict(out, "6a") == "does not hold"


# --------------------------------------------------------------------------- 5


def flows(gap_by_encoder, n=N):
    """gap_by_encoder: encoder -> mean amortization gap (scalar or per-datapoint array); every encoder
    shares one per-datapoint component, as on one frozen decoder."""
    rows = []
    for enc, g in gap_by_encoder.items():
        ag = g + noise(20, 3.0, n)
        rows.append(pd.DataFrame({"dataset": "mnist", "encoder": enc, "family": enc.split("_")[0],
                                  "index": np.arange(n), "elbo_qstar": -90.0, "elbo_amortized": -90.0 - ag,
                                  "amortization_gap": ag, "qstar_converged": True}))
    return pd.concat(rows, ignore_index=True)


def test_claim5_holds_and_fails():
    out = run(flows_amortization=flows({"ffg_small": 10.0, "flow_small": 8.0, "realnvp_small": 7.0, "ffg": 5.0}))
    assert verdict(out, "5a") == "holds" and verdict(out, "5b") == "holds"
    wobble = 10.02 + np.where(np.arange(N) % 2 == 0, 1.0, -1.0)    # mean +0.02 ± 0.07
    out = run(flows_amortization=flows({"ffg_small": 10.0, "flow_small": 12.0, "realnvp_small": wobble}))
    assert verdict(out, "5a") == "does not hold" and verdict(out, "5b") == "inconclusive"
    r = row(run(flows_amortization=flows({"ffg_small": 10.0, "flow_small": 8.0})), "5b")
    assert r["verdict"] == "not evaluated" and "realnvp_small" in r["note"]


# --------------------------------------------------------------------------- 6b, 6c


def over(spec, n=N):
    """spec: (model, split, epoch) -> (approximation gap, amortization gap, noise sd); valid indices
    differ from the train ones."""
    rows = []
    for k, ((m, split, epoch), (ap, am, sd)) in enumerate(spec.items()):
        ap, am = ap + noise(100 + k, sd, n), am + noise(200 + k, sd, n)
        idx = np.arange(n) + (0 if split == "train" else 50_000)
        rows.append(pd.DataFrame({"dataset": "fashion_mnist", "model": m, "epoch": epoch, "split": split,
                                  "index": idx, "ais": -100.0, "iwae_qstar": -100.5, "log_px": -100.0,
                                  "elbo_qstar": -100 - ap, "elbo_amortized": -100 - ap - am,
                                  "approximation_gap": ap, "amortization_gap": am,
                                  "qstar_converged": True, "ais_below_iwae": False}))
    return pd.concat(rows, ignore_index=True)


def growth_spec(large_growth, std_growth):
    return {("standard", "valid", 10): (5, 8, 0.3), ("standard", "valid", 100): (5, 8 + std_growth, 0.3),
            ("large_encoder", "valid", 10): (5, 6, 0.3), ("large_encoder", "valid", 100): (5, 6 + large_growth, 0.3),
            ("large_encoder", "valid", 500): (5, 20, 0.3)}   # only one model has epoch 500


def test_claim6b_contrast_over_training():
    out = run(over_training=over(growth_spec(large_growth=4.0, std_growth=1.0)))
    r = row(out, "6b")
    assert r["verdict"] == "holds" and r["paired"] and "10 → 100" in r["comparison"]
    assert r["diff"] == pytest.approx(3.0, abs=0.2)
    # both grow alike: the large encoder does not overfit more than the standard one
    assert verdict(run(over_training=over(growth_spec(1.0, 4.0))), "6b") == "does not hold"


def test_claim6c_equivalence():
    def spec(valid_ap, sd):
        return {("large_encoder", "train", 100): (5.0, 3.0, sd), ("large_encoder", "valid", 100): (valid_ap, 9.0, sd)}
    r = row(run(over_training=over(spec(5.1, 0.3))), "6c")
    assert r["verdict"] == "holds" and not r["paired"]
    assert r["diff_se"] == pytest.approx(math.hypot(r["se_a"], r["se_b"]))
    assert "amortization gap valid − train = 6" in r["note"]
    assert verdict(run(over_training=over(spec(8.0, 0.3))), "6c") == "does not hold"
    # ten noisy datapoints: equal means are not enough to "hold"
    assert verdict(run(over_training=over(spec(5.0, 3.0), n=10)), "6c") == "inconclusive"


# --------------------------------------------------------------------------- 7


def bounds(amortized, ffg, flow, n=20, sd=0.05):
    lp = -50.0 + noise(30, 3.0, n)
    rows = []
    for k, (dist, off) in enumerate((("true", 0.0), ("amortized_ffg", amortized), ("optimal_ffg", ffg),
                                     ("optimal_flow", flow))):
        off = off + (noise(40 + k, sd, n) if k else 0.0)
        rows.append(pd.DataFrame({"index": np.arange(n), "distribution": dist, "elbo": lp - off, "log_px": lp,
                                  "grid_mass": 1.0}))
    return pd.concat(rows, ignore_index=True)


def test_figure2_bounds_orderings():
    out = run(figure2_bounds=bounds(3.0, 1.0, 0.2))
    assert [verdict(out, c) for c in ("7a", "7b", "7c")] == ["holds"] * 3
    assert row(out, "7c")["kind"] == "sanity check" and row(out, "7a")["kind"] == "evidence"
    assert row(out, "7a")["dataset"] == "2d" and row(out, "7a")["paired"]
    out = run(figure2_bounds=bounds(1.0, 3.0, 4.0))            # optimised worse than amortized
    assert verdict(out, "7a") == "does not hold" and verdict(out, "7b") == "does not hold"
    out = run(figure2_bounds=bounds(1.0, 0.5, -1.0))           # Flow above log p(x): a bug
    assert verdict(out, "7c") == "does not hold"


def grid_frame(densities):
    g = np.linspace(-4, 4, 81)
    z1, z2 = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    rows = [pd.DataFrame({"index": i, "distribution": "true", "z1": z1, "z2": z2, "density": f(z1, z2)})
            for i, f in enumerate(densities)]
    # other distributions are ignored by 7d
    rows.append(rows[0].assign(distribution="optimal_ffg", density=np.exp(-z1 ** 4)))
    return pd.concat(rows, ignore_index=True)


def gaussian(rho, mean=(0.3, -0.2), sd=(1.0, 0.8)):
    s = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    p = np.linalg.inv(s)

    def f(z1, z2):
        z = np.stack([z1 - mean[0], z2 - mean[1]], 1)
        return np.exp(-0.5 * np.einsum("ni,ij,nj->n", z, p, z)) / (2 * np.pi * math.sqrt(np.linalg.det(s)))
    return f


def banana(z1, z2):
    d = np.exp(-0.5 * z1 ** 2 - 0.5 * ((z2 - 0.7 * (z1 ** 2 - 1)) / 0.3) ** 2)
    return d / (d.sum() * 0.1 ** 2)


def test_claim7d_non_gaussianity_on_the_grid():
    r = row(run(figure2_grid=grid_frame([gaussian(0.0), gaussian(0.95), gaussian(-0.8)])), "7d")
    assert r["verdict"] == "does not hold" and r["value_a"] < 0.01     # correlated Gaussians are Gaussian
    r = row(run(figure2_grid=grid_frame([gaussian(0.9), banana])), "7d")
    assert r["verdict"] == "holds" and r["value_a"] > 0.5 and "index 1" in r["note"]
    z = np.linspace(-4, 4, 81)
    assert negentropy(*np.meshgrid(z, z), np.ones((81, 81))) > 0  # uniform: far from Gaussian


# --------------------------------------------------------------------------- BDMC


def test_bdmc_rows():
    t = pd.DataFrame({"dataset": "mnist", "variant": "standard", "family": "ffg",
                      "setting": ["fast", "paper", "noisy"], "procedure": "prior-start AIS, 1000 steps",
                      "lower": [-95.0, -92.2, -93.0], "lower_se": 1.0, "upper": [-91.0, -92.0, -92.1],
                      "upper_se": 1.0, "gap": [4.0, 0.2, 0.9], "gap_se": [0.1, 0.05, 0.3]})
    b = run(bdmc=t).query("claim == 'bdmc'")
    assert list(b["verdict"]) == ["does not hold", "holds", "inconclusive"]
    assert b["comparison"].str.contains("prior-start AIS, 1000 steps").all()
    assert b["comparison"].str.contains("setting=paper").any()


# --------------------------------------------------------------------------- gates


def test_convergence_gate():
    r = row(run(gaps=model(conv=0.94)), "1", "mnist")
    assert r["verdict"] == "inconclusive" and r["value_a"] == pytest.approx(6.0, abs=0.1)
    assert "94.0%" in r["note"] and "evaluation.local.max_steps" in r["note"] and "holds" in r["note"]
    assert "standard ffg-trained model" in r["note"]
    assert verdict(run(gaps=model(conv=0.95)), "1") == "holds"
    # 3a depends on both local families' L[q*], not on the trained family's flag
    o = run(gaps=gaps(model(), model(family="flow", conv_ffg=0.9)))
    assert verdict(o, "3a") == "inconclusive" and "L[q*_FFG] of standard flow-trained" in row(o, "3a")["note"]
    assert verdict(o, "3b") == "holds"


def test_ais_gate():
    o = run(gaps=gaps(model(ais_below=0.12), model(family="flow", approx=1.0, amort=7.0)))
    r = row(o, "1", "mnist")
    assert r["verdict"] == "inconclusive"
    assert "IWAE(q*) on 12.0%" in r["note"] and "lower bound" in r["note"] and "n_intermediate" in r["note"]
    assert verdict(o, "2a") == "inconclusive"
    assert verdict(o, "2b") == "holds"           # amortization gap: no log p̂ in it
    assert verdict(run(gaps=model(ais_below=0.10)), "1") == "holds"


# --------------------------------------------------------------------------- inputs and files


def test_missing_inputs_are_not_evaluated():
    out = evaluate_claims({})
    assert list(out["claim"]) == list(CLAIM_IDS) and (out["verdict"] == "not evaluated").all()
    for c in CHECKS:
        assert f"input {c.input} is missing" in row(out, c.id)["note"]
    out = evaluate_claims({"gaps": model(), "bdmc": None})
    assert verdict(out, "bdmc") == "not evaluated" and verdict(out, "1") == "holds"


def test_missing_column_and_unknown_input_are_one_line_errors():
    with pytest.raises(VaegapsError, match="gaps lacks the column.s. qstar_converged") as e:
        run(gaps=model().drop(columns=["qstar_converged"]))
    assert "\n" not in str(e.value)
    with pytest.raises(VaegapsError, match="unknown input"):
        evaluate_claims({"table2": model()})
    with pytest.raises(VaegapsError, match="several rows"):
        run(gaps=gaps(model(), model()))


def test_write_and_load_roundtrip(tmp_path):
    paths = []
    for k, fam in enumerate(("ffg", "flow")):   # flow-trained: approximation gap 1 instead of 2
        p = tmp_path / f"gaps_{fam}.parquet"
        model(family=fam, approx=2.0 - k).drop(columns=["dataset", "variant", "trained_family"]).to_parquet(p)
        paths.append(p)
    (tmp_path / "bdmc.csv").write_text("dataset,gap,gap_se,procedure\nmnist,0.2,0.05,prior AIS\n")
    bounds(3.0, 1.0, 0.2).to_parquet(tmp_path / "bounds.parquet")
    inputs = load_inputs(paths, [["mnist", "standard", "ffg"], ["mnist", "standard", "flow"]],
                         {"bdmc": tmp_path / "bdmc.csv", "figure2_bounds": tmp_path / "bounds.parquet"})
    assert set(inputs) == {"gaps", "bdmc", "figure2_bounds"}
    assert set(inputs["gaps"]["trained_family"]) == {"ffg", "flow"} and len(inputs["gaps"]) == 2 * N
    out = write_claims(inputs, tmp_path / "out" / "claims.csv", tmp_path / "out" / "claims.md",
                       figure2_dataset="digits (2-D latent)")
    back = pd.read_csv(tmp_path / "out" / "claims.csv", dtype={"claim": str, "dataset": str},
                       keep_default_na=False, na_values=[""])
    assert list(back.columns) == CLAIM_COLUMNS and list(back["claim"]) == list(out["claim"])
    assert list(back["verdict"]) == list(out["verdict"]) and back["paired"].dtype == bool
    assert verdict(out, "2a") == "holds" and verdict(out, "bdmc") == "holds"
    assert verdict(out, "7a", "digits (2-D latent)") == "holds"
    md = (tmp_path / "out" / "claims.md").read_text()
    assert "**holds**" in md and to_markdown(out).count("\n") == len(out) + 4
    with pytest.raises(VaegapsError, match="missing file"):
        load_inputs([], [], {"bdmc": tmp_path / "nope.csv"})
    with pytest.raises(VaegapsError, match="keys"):
        load_inputs(paths, [["mnist", "standard", "ffg"]], {})
