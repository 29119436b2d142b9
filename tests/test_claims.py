"""The claims checks on made-up per-datapoint frames: every check once supported and once not."""

import math
import re
import zlib

import numpy as np
import pandas as pd
import pytest

from vaegaps.claims import (
    CHECKS,
    CLAIM_COLUMNS,
    CLAIM_IDS,
    CLOSE_NATS,
    FAR_NATS,
    GATE_COLUMNS,
    INPUT_NAMES,
    decide,
    decide_beyond,
    decide_equivalent,
    evaluate_claims,
    load_inputs,
    negentropy,
    to_markdown,
    write_claims,
)
from vaegaps.errors import VaegapsError
from vaegaps.tables import BDMC_PASS_NATS

SUP, CON, INC, NOT = "supported", "contradicted", "inconclusive", "not evaluated"

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
        "log_px_source": "ais", "ais_below_any_bound": frac(ais_below),
        "elbo_local_flow": flow, "elbo_local_flow_se": 0.05, "elbo_local_ffg": ffg, "elbo_local_ffg_se": 0.05,
        "elbo_amortized": qstar - amort, "elbo_amortized_se": 0.05, "elbo_qstar": qstar, "elbo_qstar_se": 0.05,
        "converged_local_ffg": frac(conv_ffg), "converged_local_flow": frac(conv_flow), "qstar_converged": frac(conv),
        "approximation_gap": approx, "amortization_gap": amort, "inference_gap": approx + amort})


def gaps(*models):
    return pd.concat(models, ignore_index=True)


def certificates(inputs, gap=0.1, gap_se=0.05):
    """A bdmc frame certifying log p̂ of every model the inputs hold: "main" rows for the final models
    (gaps, decoder_capacity), "over_training" rows, with their epoch, for the snapshots."""
    keys = set()
    if inputs.get("gaps") is not None:
        keys |= {(d, v, f, "main", 30) for d, v, f in inputs["gaps"][["dataset", "variant", "trained_family"]]
                 .drop_duplicates().itertuples(index=False)}
    if inputs.get("decoder_capacity") is not None:
        keys |= {(d, v, f, "main", 30) for d, v, f in inputs["decoder_capacity"][["dataset", "variant", "family"]]
                 .drop_duplicates().itertuples(index=False)}
    if inputs.get("over_training") is not None:
        keys |= set(inputs["over_training"][["dataset", "variant", "family", "epoch"]].drop_duplicates()
                    .assign(setting="over_training")[["dataset", "variant", "family", "setting", "epoch"]]
                    .itertuples(index=False, name=None))
    return pd.DataFrame(sorted(keys), columns=["dataset", "variant", "family", "setting", "epoch"]).assign(
        gap=gap, gap_se=gap_se, procedure="encoder-start AIS")


def run(**inputs):
    """The claims on `inputs`, with every log p̂ certified unless a bdmc frame is given."""
    if "bdmc" not in inputs:
        inputs["bdmc"] = certificates(inputs)
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


def test_decision_rule_strict():
    assert decide(5, 1, ">") == SUP and decide(-5, 1, "<") == SUP
    assert decide(-5, 1, ">") == CON and decide(5, 1, "<") == CON
    assert decide(1, 1, ">") == INC and decide(-1.9, 1, ">") == INC
    # without a standard error the point estimate decides; a tie is no evidence for "a > b"
    assert decide(0.1, float("nan"), ">") == SUP and decide(-0.1, float("nan"), ">") == CON
    assert decide(0.0, float("nan"), ">") == CON
    assert decide(float("nan"), 1, ">") == NOT


def test_decision_rule_non_strict_needs_evidence():
    """"at least": supported only beyond 2 se in its direction; merely not contradicted is
    inconclusive, a point estimate in the wrong direction included."""
    assert decide(3, 1, ">=") == SUP and decide(-3, 1, "<=") == SUP
    assert decide(-3, 1, ">=") == CON and decide(5, 1, "<=") == CON
    assert decide(-1, 1, ">=") == INC and decide(1, 1, ">=") == INC and decide(0, 1, "<=") == INC
    assert decide(0.0, float("nan"), ">=") == SUP and decide(-0.1, float("nan"), ">=") == CON
    with pytest.raises(ValueError):
        decide(1, 1, "=")


def test_decision_rule_threshold():
    assert decide_beyond(5, 1, 2) == SUP
    assert decide_beyond(3, 1, 2) == INC and decide_beyond(1, 1, 2) == INC
    assert decide_beyond(-1, 1, 2) == CON
    assert decide_beyond(2.1, float("nan"), 2) == SUP and decide_beyond(1.9, float("nan"), 2) == CON
    assert decide_beyond(float("nan"), 1, 2) == NOT


def test_decision_rule_equivalence():
    assert decide_equivalent(0.2, 0.1, 1) == SUP and decide_equivalent(-0.2, 0.1, 1) == SUP
    assert decide_equivalent(0.5, 0.5, 1) == INC and decide_equivalent(0.0, 1.0, 1) == INC
    assert decide_equivalent(3, 0.5, 1) == CON and decide_equivalent(-3, 0.5, 1) == CON
    assert decide_equivalent(0.9, float("nan"), 1) == SUP and decide_equivalent(1.1, float("nan"), 1) == CON
    assert decide_equivalent(0.2, 0.1, float("nan")) == NOT


def test_table_is_declarative_and_complete():
    assert len(set(CLAIM_IDS)) == len(CHECKS)
    for c in CHECKS:
        assert c.input in INPUT_NAMES and c.kind in ("evidence", "sanity check")
        assert set(c.depends) <= set(GATE_COLUMNS) and len(c.statement) > 10 and c.comparison


def test_output_columns_and_types():
    out = run(gaps=gaps(model(), model(family="flow", approx=1.0, amort=7.0)))
    assert list(out.columns) == CLAIM_COLUMNS
    assert set(out["verdict"]) <= {SUP, CON, INC, NOT}
    for c in ("value_a", "se_a", "value_b", "se_b", "diff", "diff_se"):
        assert out[c].dtype == float
    assert out["paired"].dtype == bool
    assert list(dict.fromkeys(out["claim"])) == list(CLAIM_IDS)


# --------------------------------------------------------------------------- 1, 1b


def test_claim1_supported_and_contradicted():
    out = run(gaps=gaps(model("mnist", approx=2.0, amort=6.0), model("fashion_mnist", approx=6.0, amort=1.0)))
    assert verdict(out, "1", "mnist") == SUP
    assert verdict(out, "1", "fashion_mnist") == CON
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
    assert r["verdict"] == CON and r["paired"]
    assert r["diff"] == pytest.approx(-0.3, abs=0.05)
    d = m["amortization_gap"] - m["approximation_gap"]
    assert r["diff_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(N))
    assert 2 * math.hypot(r["se_a"], r["se_b"]) > 0.3        # unpaired, it would have been inconclusive
    # claim 2a (strict): flow-trained approximation gap 0.3 smaller on every datapoint
    out = run(gaps=gaps(model(approx=common), model(family="flow", approx=common - 0.3)))
    r = row(out, "2a", "mnist")
    assert r["verdict"] == SUP and r["paired"]
    assert 2 * math.hypot(r["se_a"], r["se_b"]) > abs(r["diff"])  # unpaired: inconclusive


def test_claim1b_only_on_fashion_and_cifar():
    out = run(gaps=gaps(model("mnist"), model("fashion_mnist", approx=2.0, amort=8.0),
                        model("cifar10", approx=2.0, amort=2.0)))
    assert set(out.loc[out["claim"] == "1b", "dataset"]) == {"fashion_mnist", "cifar10"}
    assert verdict(out, "1b", "fashion_mnist") == SUP
    assert verdict(out, "1b", "cifar10") == INC
    out = run(gaps=model("cifar10", approx=8.0, amort=2.0))
    assert verdict(out, "1b", "cifar10") == CON
    r = row(run(gaps=model("mnist")), "1b")
    assert r["verdict"] == NOT and "fashion_mnist" in r["note"]


# --------------------------------------------------------------------------- 2, 3


def test_claim2_supported_and_contradicted():
    good = gaps(model("mnist", approx=2.0, amort=6.0), model("mnist", family="flow", approx=1.0, amort=7.0))
    bad = gaps(model("mnist", approx=2.0, amort=6.0), model("mnist", family="flow", approx=3.0, amort=4.0))
    out_good, out_bad = run(gaps=good), run(gaps=bad)
    assert verdict(out_good, "2a") == SUP and verdict(out_good, "2b") == SUP
    assert verdict(out_bad, "2a") == CON and verdict(out_bad, "2b") == CON
    r = row(run(gaps=model()), "2a")
    assert r["verdict"] == NOT and "flow-trained" in r["note"]


def test_at_least_claim_not_contradicted_is_inconclusive():
    """2b "does not shrink": a flow-trained amortization gap 0.01 nat below the FFG-trained one, ± 0.035,
    is not contradicted, and no evidence either: inconclusive, the point estimate in the note."""
    ffg, flow = model(), model(family="flow", approx=1.0)
    flow["amortization_gap"] = ffg["amortization_gap"].to_numpy() - 0.01 + np.where(np.arange(N) % 2, 0.5, -0.5)
    r = row(run(gaps=gaps(ffg, flow)), "2b")
    assert r["verdict"] == INC and r["diff"] == pytest.approx(-0.01)
    assert "not contradicted" in r["note"] and "a − b = -0.01" in r["note"]
    # the same for claim 1: amortization gap within noise of the approximation gap
    m = model(approx=4.0, amort=4.0)
    r = row(run(gaps=m), "1")
    assert abs(r["diff"]) < 2 * r["diff_se"] and r["verdict"] == INC and "not contradicted" in r["note"]


def test_claim3_thresholds():
    def out(flow_d, ffg_d, sd=0.1):
        return run(gaps=gaps(model(flow_minus_ffg=ffg_d + noise(3, sd)),
                             model(family="flow", flow_minus_ffg=flow_d + noise(4, sd))))
    o = out(20.0, 0.3)
    assert verdict(o, "3a") == SUP and verdict(o, "3b") == SUP
    assert row(o, "3a")["diff"] == pytest.approx(20.0, abs=0.1)
    o = out(0.5, 3.0)
    assert verdict(o, "3a") == CON and verdict(o, "3b") == CON
    o = out(FAR_NATS, CLOSE_NATS, sd=2.0)   # on the thresholds, noisy
    assert verdict(o, "3a") == INC and verdict(o, "3b") == INC


# --------------------------------------------------------------------------- 4, 6a


def test_claim4_supported_and_contradicted():
    lp = -90.0 + noise(11, 10.0)
    std = model("mnist", approx=3.0, log_px=lp)
    good = model("mnist", variant="no_annealing", approx=1.0, log_px=lp - 2.0 + noise(12, 0.2))
    bad = model("mnist", variant="no_annealing", approx=5.0, log_px=lp + 2.0 + noise(12, 0.2))
    out = run(gaps=gaps(std, good, model("cifar10")))
    assert verdict(out, "4a") == SUP and verdict(out, "4b") == SUP
    assert "cifar10" not in set(out.loc[out["claim"].isin(["4a", "4b"]), "dataset"])
    out = run(gaps=gaps(std, bad))
    assert verdict(out, "4a") == CON and verdict(out, "4b") == CON
    assert verdict(run(gaps=std), "4a") == NOT


def test_claim6a_supported_and_contradicted():
    std = model("mnist", amort=6.0)
    out = run(gaps=gaps(std, model("mnist", variant="large_encoder", amort=4.0)))
    assert verdict(out, "6a") == SUP
    out = run(gaps=gaps(std, model("mnist", variant="large_encoder", amort=7.0)))
    assert verdict(out, "6a") == CON


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


def test_claim5_supported_and_contradicted():
    out = run(flows_amortization=flows({"ffg_small": 10.0, "flow_small": 8.0, "realnvp_small": 7.0, "ffg": 5.0}))
    assert verdict(out, "5a") == SUP and verdict(out, "5b") == SUP
    wobble = 10.02 + np.where(np.arange(N) % 2 == 0, 1.0, -1.0)    # mean +0.02 ± 0.07
    out = run(flows_amortization=flows({"ffg_small": 10.0, "flow_small": 12.0, "realnvp_small": wobble}))
    assert verdict(out, "5a") == CON and verdict(out, "5b") == INC
    r = row(run(flows_amortization=flows({"ffg_small": 10.0, "flow_small": 8.0})), "5b")
    assert r["verdict"] == NOT and "realnvp_small" in r["note"]


# --------------------------------------------------------------------------- 6b, 6c


OVER_MODELS = {"standard": ("standard", "ffg"), "flow": ("standard", "realnvp"),
               "large_decoder": ("large_decoder", "ffg"), "large_encoder": ("large_encoder", "ffg")}


def over(spec, n=N):
    """spec: (model, split, epoch) -> (approximation gap, amortization gap, noise sd); valid indices
    differ from the train ones."""
    rows = []
    for k, ((m, split, epoch), (ap, am, sd)) in enumerate(spec.items()):
        ap, am = ap + noise(100 + k, sd, n), am + noise(200 + k, sd, n)
        idx = np.arange(n) + (0 if split == "train" else 50_000)
        variant, family = OVER_MODELS[m]
        rows.append(pd.DataFrame({"dataset": "fashion_mnist", "model": m, "variant": variant, "family": family,
                                  "epoch": epoch, "split": split,
                                  "index": idx, "ais": -100.0, "iwae_qstar": -100.5, "log_px": -100.0,
                                  "elbo_qstar": -100 - ap, "elbo_amortized": -100 - ap - am,
                                  "approximation_gap": ap, "amortization_gap": am,
                                  "qstar_converged": True, "ais_below_any_bound": False}))
    return pd.concat(rows, ignore_index=True)


def growth_spec(large_growth, std_growth):
    return {("standard", "valid", 10): (5, 8, 0.3), ("standard", "valid", 100): (5, 8 + std_growth, 0.3),
            ("large_encoder", "valid", 10): (5, 6, 0.3), ("large_encoder", "valid", 100): (5, 6 + large_growth, 0.3),
            ("large_encoder", "valid", 500): (5, 20, 0.3)}   # only one model has epoch 500


def test_claim6b_contrast_over_training():
    out = run(over_training=over(growth_spec(large_growth=4.0, std_growth=1.0)))
    r = row(out, "6b")
    assert r["verdict"] == SUP and r["paired"] and "10 → 100" in r["comparison"]
    assert r["diff"] == pytest.approx(3.0, abs=0.2)
    # both grow alike: the large encoder does not overfit more than the standard one
    assert verdict(run(over_training=over(growth_spec(1.0, 4.0))), "6b") == CON


def test_claim6c_equivalence():
    def spec(valid_ap, sd):
        return {("large_encoder", "train", 100): (5.0, 3.0, sd), ("large_encoder", "valid", 100): (valid_ap, 9.0, sd)}
    r = row(run(over_training=over(spec(5.1, 0.3))), "6c")
    assert r["verdict"] == SUP and not r["paired"]
    assert r["diff_se"] == pytest.approx(math.hypot(r["se_a"], r["se_b"]))
    assert "amortization gap valid − train = 6" in r["note"]
    assert verdict(run(over_training=over(spec(8.0, 0.3))), "6c") == CON
    # ten noisy datapoints: equal means are no evidence of equivalence
    assert verdict(run(over_training=over(spec(5.0, 3.0), n=10)), "6c") == INC


def test_claim8bc_flow_and_large_decoder_over_training():
    """The flow (RealNVP) and large-decoder models against the standard one: approximation gap at the
    last common snapshot, training split, paired on its datapoints."""
    common = noise(50, 3.0) + 5.0     # a per-datapoint component all models share

    def spec(flow_ap, dec_ap):
        out = {}
        for e in (10, 100):
            out[("standard", "train", e)] = (common, 8.0, 0.1)
            out[("flow", "train", e)] = (common + flow_ap, 8.0, 0.1)
            out[("standard", "valid", e)] = (5.0, 8.0, 0.1)
        out[("large_decoder", "train", 100)] = (common + dec_ap, 8.0, 0.1)
        out[("flow", "train", 500)] = (0.0, 8.0, 0.1)     # only the flow model has epoch 500
        return out
    out = run(over_training=over(spec(-1.0, -0.5)))
    r = row(out, "8b")
    assert r["verdict"] == SUP and r["paired"] and "epoch 100, training split" in r["comparison"]
    assert r["diff"] == pytest.approx(-1.0, abs=0.05) and r["diff_se"] < 0.05
    assert verdict(out, "8c") == SUP
    out = run(over_training=over(spec(1.0, 0.0)))
    assert verdict(out, "8b") == CON and verdict(out, "8c") == INC
    # the snapshot's certificate: the over-training setting at that epoch, not another
    o = over(spec(-1.0, -0.5))
    certs = certificates({"over_training": o})
    r = row(run(over_training=o, bdmc=certs[certs["epoch"] != 100]), "8b")
    assert r["verdict"] == INC and "setting=over_training, epoch=100" in r["note"]
    r = row(run(over_training=over({("standard", "train", 10): (5, 8, 0.1)})), "8c")
    assert r["verdict"] == NOT and "large_decoder and standard" in r["note"]


# --------------------------------------------------------------------------- 8a: decoder capacity


def capacity(gap_by_layers, n=N):
    """Per-datapoint decoder-capacity rows: layers -> mean FFG approximation gap; the models share a
    per-datapoint component, as on one evaluation set."""
    refs = {0: ("decoder_0", "ffg"), 2: ("standard", "ffg"), 4: ("decoder_4", "ffg")}
    rows = []
    for layers, g in gap_by_layers.items():
        m = model("mnist", *refs[layers], approx=noise(60, 2.0, n) + g, n=n)
        rows.append(m.drop(columns=["variant", "trained_family"]).assign(
            decoder_layers=layers, variant=refs[layers][0], family=refs[layers][1]))
    return pd.concat(rows, ignore_index=True)


def test_claim8a_decoder_capacity():
    out = run(decoder_capacity=capacity({0: 5.0, 2: 4.0, 4: 3.0}))
    r = row(out, "8a")
    assert r["verdict"] == SUP and r["paired"] and "4 vs 0 hidden decoder layers" in r["comparison"]
    assert r["diff"] == pytest.approx(-2.0, abs=0.1)
    steps = dict(re.findall(r"(\d → \d): (-?[\d.]+) ±", r["note"]))
    assert set(steps) == {"0 → 2", "2 → 4"} and all(float(v) == pytest.approx(-1.0, abs=0.1) for v in steps.values())
    assert verdict(run(decoder_capacity=capacity({0: 3.0, 2: 4.0, 4: 5.0})), "8a") == CON
    assert verdict(run(decoder_capacity=capacity({0: 4.0, 2: 4.0, 4: 4.0})), "8a") == INC
    # gated like the others: the largest decoder's log p̂ uncertified
    dc = capacity({0: 5.0, 2: 4.0, 4: 3.0})
    certs = certificates({"decoder_capacity": dc})
    r = row(run(decoder_capacity=dc, bdmc=certs[certs["variant"] != "decoder_4"]), "8a")
    assert r["verdict"] == INC and "decoder_4 ffg-trained model has no BDMC certificate" in r["note"]
    r = row(run(decoder_capacity=capacity({0: 5.0})), "8a")
    assert r["verdict"] == NOT and "fewer than 2" in r["note"]


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
    assert [verdict(out, c) for c in ("7a", "7b", "7c")] == [SUP] * 3
    assert row(out, "7c")["kind"] == "sanity check" and row(out, "7a")["kind"] == "evidence"
    assert row(out, "7a")["dataset"] == "2d" and row(out, "7a")["paired"]
    out = run(figure2_bounds=bounds(1.0, 3.0, 4.0))            # optimised worse than amortized
    assert verdict(out, "7a") == CON and verdict(out, "7b") == CON
    out = run(figure2_bounds=bounds(1.0, 0.5, -1.0))           # Flow above log p(x): a bug
    assert verdict(out, "7c") == CON


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
    assert r["verdict"] == CON and r["value_a"] < 0.01     # correlated Gaussians are Gaussian
    r = row(run(figure2_grid=grid_frame([gaussian(0.9), banana])), "7d")
    assert r["verdict"] == SUP and r["value_a"] > 0.5 and "index 1" in r["note"]
    assert "no standard error" in r["note"] and "point estimate" in r["note"]
    z = np.linspace(-4, 4, 81)
    assert negentropy(*np.meshgrid(z, z), np.ones((81, 81))) > 0  # uniform: far from Gaussian


# --------------------------------------------------------------------------- BDMC


def test_bdmc_rows():
    t = pd.DataFrame({"dataset": "mnist", "variant": "standard", "family": "ffg",
                      "setting": ["fast", "paper", "noisy"], "procedure": "prior-start AIS, 1000 steps",
                      "lower": [-95.0, -92.2, -93.0], "lower_se": 1.0, "upper": [-91.0, -92.0, -92.1],
                      "upper_se": 1.0, "gap": [4.0, 0.2, 0.9], "gap_se": [0.1, 0.05, 0.3]})
    b = run(bdmc=t).query("claim == 'bdmc'")
    assert list(b["verdict"]) == [CON, SUP, INC]
    assert b["comparison"].str.contains("prior-start AIS, 1000 steps").all()
    assert b["comparison"].str.contains("setting=paper").any()


# --------------------------------------------------------------------------- gates


def test_convergence_gate():
    r = row(run(gaps=model(conv=0.94)), "1", "mnist")
    assert r["verdict"] == INC and r["value_a"] == pytest.approx(6.0, abs=0.1)
    assert "94.0%" in r["note"] and "evaluation.local.max_steps" in r["note"] and "alone: supported" in r["note"]
    assert "standard ffg-trained model" in r["note"]
    assert verdict(run(gaps=model(conv=0.95)), "1") == SUP
    # 3a depends on both local families' L[q*], not on the trained family's flag
    o = run(gaps=gaps(model(), model(family="flow", conv_ffg=0.9)))
    assert verdict(o, "3a") == INC and "L[q*_FFG] of standard flow-trained" in row(o, "3a")["note"]
    assert verdict(o, "3b") == SUP


def test_ais_gate():
    o = run(gaps=gaps(model(ais_below=0.12), model(family="flow", approx=1.0, amort=7.0)))
    r = row(o, "1", "mnist")
    assert r["verdict"] == INC
    assert "below an IWAE beyond noise on 12.0%" in r["note"] and "lower bound" in r["note"] and "n_intermediate" in r["note"]
    assert verdict(o, "2a") == INC
    assert verdict(o, "2b") == SUP           # amortization gap: no log p̂ in it
    assert verdict(run(gaps=model(ais_below=0.10)), "1") == SUP


def test_bdmc_gate():
    """A check on log p̂ is inconclusive unless bdmc certifies each model's AIS setting: a row for the
    model with gap + 2 se below the pass mark. Checks without log p̂ are not gated by it."""
    g = gaps(model(), model(family="flow", approx=1.0, amort=7.0))
    certs = certificates({"gaps": g})
    assert verdict(run(gaps=g, bdmc=certs), "2a") == SUP
    # "main" rows match without an epoch column
    assert verdict(run(gaps=g, bdmc=certs.drop(columns=["epoch"])), "2a") == SUP
    o = run(gaps=g, bdmc=certs[certs["family"] == "ffg"])
    r = row(o, "2a")
    assert r["verdict"] == INC and "alone: supported" in r["note"]
    assert ("log p̂ of standard flow-trained model has no BDMC certificate (bdmc has no row dataset=mnist, "
            "variant=standard, family=flow, setting=main)") in r["note"]
    assert verdict(o, "2b") == SUP and verdict(o, "3a") == SUP     # no log p̂ in them
    # a certificate whose gap is not below the pass mark beyond noise
    for gap, gap_se in ((BDMC_PASS_NATS + 1.0, 0.05), (BDMC_PASS_NATS - 0.05, 0.05)):
        r = row(run(gaps=g, bdmc=certs.assign(gap=gap, gap_se=gap_se)), "2a")
        assert r["verdict"] == INC and f"not below {BDMC_PASS_NATS:g} nat by 2 se" in r["note"]
    # another setting (or dataset) certifies nothing here
    assert verdict(run(gaps=g, bdmc=certs.assign(setting="over_training")), "2a") == INC


# --------------------------------------------------------------------------- inputs and files


def test_missing_inputs_are_not_evaluated():
    out = evaluate_claims({})
    assert list(out["claim"]) == list(CLAIM_IDS) and (out["verdict"] == NOT).all()
    for c in CHECKS:
        assert f"input {c.input} is missing" in row(out, c.id)["note"]
    out = evaluate_claims({"gaps": model(), "bdmc": None})
    assert verdict(out, "bdmc") == NOT
    r = row(out, "1")      # without bdmc no log p̂ is certified
    assert r["verdict"] == INC and "no BDMC certificate" in r["note"]
    assert verdict(out, "2b") == NOT and verdict(out, "6a") == NOT


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
    (tmp_path / "bdmc.csv").write_text("dataset,variant,family,setting,gap,gap_se,procedure\n"
                                       "mnist,standard,ffg,main,0.2,0.05,prior AIS\n"
                                       "mnist,standard,flow,main,0.1,0.05,prior AIS\n")
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
    assert verdict(out, "2a") == SUP and (out.loc[out["claim"] == "bdmc", "verdict"] == SUP).all()
    assert verdict(out, "7a", "digits (2-D latent)") == SUP
    md = (tmp_path / "out" / "claims.md").read_text()
    assert "**supported**" in md and to_markdown(out).count("\n") == len(out) + 4
    with pytest.raises(VaegapsError, match="missing file"):
        load_inputs([], [], {"bdmc": tmp_path / "nope.csv"})
    with pytest.raises(VaegapsError, match="keys"):
        load_inputs(paths, [["mnist", "standard", "ffg"]], {})
