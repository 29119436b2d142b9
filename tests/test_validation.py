"""What a new user hits first (issue 11): nested --config overrides and YAML 1.1 exponents read as
numbers, diverging training stopped with one line, and the estimators' arguments checked on entry
(a ValueError naming the argument and what it accepts)."""

from __future__ import annotations

import copy
import math
import warnings

import groundtruth as gt
import pytest
import torch
import yaml
from workflow_runner import assert_one_line_error, snakemake

from vaegaps.ais import ais, bdmc
from vaegaps.bounds import log_mean_exp, monte_carlo_bounds
from vaegaps.config import SCHEMA, coerce_scalars, defaults, validate
from vaegaps.data import prepare_dataset
from vaegaps.errors import VaegapsError
from vaegaps.io import read_metadata
from vaegaps.local_opt import optimize_local
from vaegaps.train import diverged_below, train_vae

# ----------------------------------------------------------------------------- config: strings as scalars


@pytest.mark.slow
def test_nested_config_override_dry_run(tmp_path):
    """Snakemake passes nested --config values as strings; before the fix this dry run failed with
    "config error at 'train.lr': '0.5' is not of type 'number'"."""
    out = snakemake(tmp_path, "-n", "results/table2.csv", "--config", "train={lr: 0.5, epochs: 2}",
                    "evaluation={ais: {n_chains: 3}, local: {lr: 1e-2}}", check=False)
    assert out.returncode == 0, out.stderr[-3000:]


def test_validate_reads_strings_as_the_scalars_they_spell():
    """What a nested --config gives (every value a string) validates to the typed config; strings
    stay strings where the schema accepts one (a path, a model reference, "auto")."""
    config = {"datasets": ["digits"], "results": "123", "device": "auto", "seed": "3",
              "model": {"z_dim": "4", "encoder_hidden": ["16", "8"], "flow_context": "false"},
              "train": {"lr": "0.5", "adam_eps": "1e-4", "epochs": "1e3", "snapshots": ["1", "3"],
                        "init_decoder": "standard/ffg"},
              "evaluation": {"ais": {"n_intermediate": "2.0e+2", "step_size": ".5"},
                             "local": {"lr": "1.0e-2"}}}
    out = validate(config, SCHEMA)
    assert out["results"] == "123" and out["device"] == "auto" and out["seed"] == 3
    assert out["model"]["z_dim"] == 4 and out["model"]["encoder_hidden"] == [16, 8]
    assert out["model"]["flow_context"] is False
    t = out["train"]
    assert (t["lr"], t["adam_eps"], t["epochs"], t["snapshots"]) == (0.5, 1e-4, 1000, [1, 3])
    assert type(t["epochs"]) is int and t["init_decoder"] == "standard/ffg"
    ev = out["evaluation"]
    assert ev["ais"]["n_intermediate"] == 200 and type(ev["ais"]["n_intermediate"]) is int
    assert ev["ais"]["step_size"] == 0.5 and ev["local"]["lr"] == 1e-2


def test_coerce_scalars_reads_enums_but_keeps_strings_a_schema_accepts():
    schema = {"type": "object", "properties": {
        "likelihood": {"enum": [None, "bernoulli"]}, "ref": {"type": ["string", "null"]},
        "n": {"type": "integer"}, "name": {"type": "string"}, "flag": {"type": "boolean"}}}
    config = {"likelihood": "null", "ref": "null", "n": "1e3", "name": "1e3", "flag": "yes"}
    assert coerce_scalars(config, schema) == {"likelihood": None, "ref": "null", "n": 1000, "name": "1e3",
                                              "flag": True}


@pytest.mark.parametrize("text, value", [("1.0e6", 1e6), ("1e-4", 1e-4), ("1E+3", 1e3), ("1.0e+6", 1e6)])
def test_yaml_exponent_without_sign_is_a_number(text, value):
    """PyYAML (YAML 1.1) reads 1.0e6 and 1e-4 as strings; they are accepted as numbers."""
    config = yaml.safe_load(f"datasets: [digits]\ntrain: {{lr: {text}}}\n")
    assert validate(config, SCHEMA)["train"]["lr"] == value


@pytest.mark.parametrize("text, where, message", [
    ("train: {lr: fast}", "train.lr", "'fast' is not of type 'number'"),
    ("model: {z_dim: 2.5}", "model.z_dim", "2.5 is not of type 'integer'"),
    ("train: {lr: '-1'}", "train.lr", "-1 is less than or equal to the minimum of 0"),
    ("model: {flow_context: '2'}", "model.flow_context", "'2' is not of type 'boolean'"),
])
def test_bad_values_still_fail_in_one_line(text, where, message):
    with pytest.raises(VaegapsError) as err:
        validate(yaml.safe_load(f"datasets: [digits]\n{text}\n"), SCHEMA)
    msg = str(err.value)
    assert "\n" not in msg and f"config error at '{where}'" in msg and message in msg, msg


# Every config error a user can meet at parse time, as a user sees it: `snakemake` on the tiny
# config with one --config override, in a fresh folder (a real run of a cheap target, not -n).
PARSE_TIME_ERRORS = [
    ("evaluation={parts: 100}", "evaluation.parts (100) for digits is more than evaluation.n_points (24); lower parts"),
    ("evaluation={parts: 5}", "evaluation.parts (5) for digits is more than experiments.bdmc.n_points (4)"),
    ("evaluation={n_points: 100000}", "evaluation.n_points is 100000 but the train split of digits has 1297 "
                                      "datapoints; lower evaluation.n_points to 1297 or less"),
    ("experiments={over_training: {n_points: 251}}", "experiments.over_training.n_points is 251 but the valid split"),
    ("evaluation={n_points: -1}", "config error at 'evaluation.n_points': -1 is less than the minimum of 1"),
    ("datasets=[foo]", "config error at 'datasets.0': 'foo' is not one of"),
    ("experiments={over_training: {models: {standard: bogus/ffg}}}",
     "config error at 'experiments.over_training.models.standard': unknown variant 'bogus'"),
    ("experiments={variant_tables: {variants: [bogus]}}",
     "config error at 'experiments.variant_tables.variants.0': unknown variant 'bogus'"),
    ("evaluation={refinement: {steps: [0, 5, 2]}}",
     "config error at 'evaluation.refinement.steps': the step counts must be increasing, got [0, 5, 2]"),
]


@pytest.mark.slow
@pytest.mark.parametrize("override, phrase", PARSE_TIME_ERRORS)
def test_parse_time_errors_are_one_line(tmp_path, override, phrase):
    """README: a bad config stops the run with one error line, after Snakemake's own notes. Before,
    Snakemake reported check_parts', preflight's and an experiment's unknown variant as
    `VaegapsError in file …, line N:` with the message and 2-4 `File "…"` lines below it (and an
    unknown variant of variant_tables only while building the DAG, with a traceback)."""
    out = snakemake(tmp_path, "results/data/digits.parquet", "--config", override, check=False)
    assert_one_line_error(out, phrase)
    assert not (tmp_path / "results").exists()  # nothing ran


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--verbose", "VAEGAPS_TRACEBACK=1"])
def test_traceback_when_asked_for(tmp_path, how):
    """README "Troubleshooting": Snakemake's --verbose or VAEGAPS_TRACEBACK=1 show where the error came from."""
    import os

    env = {**os.environ, "VAEGAPS_TRACEBACK": "1"} if how.startswith("VAEGAPS") else None
    args = ["--verbose"] if how == "--verbose" else []
    out = snakemake(tmp_path, "-n", "results/data/digits.parquet", *args, "--config", "evaluation={parts: 100}",
                    check=False, env=env)
    text = out.stdout + out.stderr  # a dry run logs to stdout
    assert out.returncode != 0
    assert 'File "' in text and "in check_parts" in text, text[-3000:]


# ----------------------------------------------------------------------------- training divergence

TINY_CFG = {"device": "cpu", "seed": 0,
            "model": {**defaults("model"), "z_dim": 4, "encoder_hidden": [16], "decoder_hidden": [16],
                      "family": "ffg", "flow_hidden": 8, "realnvp_hidden": 8},
            "train": {**defaults("train"), "epochs": 3, "batch_size": 200, "anneal_epochs": 2,
                      "checkpoint_every": 2}}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.parquet"
    prepare_dataset("digits", path)
    return path


def _train(data, folder, **train):
    cfg = copy.deepcopy(TINY_CFG)
    cfg["train"].update(train)
    train_vae(cfg, data, folder / "model.pt", folder / "history.parquet", folder / "ckpt.pt",
              dataset_name="digits")
    return folder


def test_diverging_training_stops_with_one_line(digits, tmp_path):
    """lr 0.5 on the tiny digits model: the ELBO falls orders of magnitude below a coin-flip
    decoder's; before the fix training finished (exit 0) with a useless model."""
    with pytest.raises(VaegapsError) as err:
        _train(digits, tmp_path, lr=0.5)
    msg = str(err.value)
    assert "\n" not in msg and "training diverged at epoch " in msg and "lower train.lr (now 0.5)" in msg, msg
    assert not (tmp_path / "model.pt").exists()


def test_healthy_training_is_far_from_the_divergence_floor(digits, tmp_path):
    """The tiny config's own settings train without the check firing, every epoch far above the floor."""
    import pandas as pd

    _train(digits, tmp_path)
    hist = pd.read_parquet(tmp_path / "history.parquet")
    floor = diverged_below(64)
    assert round(floor) == -1044
    assert (hist[["train_elbo", "valid_elbo"]] > floor / 10).all().all(), hist


@pytest.mark.slow
def test_diverging_training_fails_the_workflow_in_one_line(tmp_path):
    """The whole path a user takes: a nested --config override (typed: 0.5 in the resolved
    settings, not '0.5'), then the train job stops with the one-line divergence error (~10 s)."""
    out = snakemake(tmp_path, "results/models/digits/standard/ffg/model.pt", "--config", "train={lr: 0.5}",
                    check=False)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: training diverged at epoch 1")]
    assert lines and "lower train.lr (now 0.5)" in lines[0], out.stderr[-3000:]
    study = read_metadata(tmp_path / "results" / "data" / "digits.parquet")["study"]
    assert study["train"]["lr"] == 0.5
    assert not (tmp_path / "results" / "models" / "digits" / "standard" / "ffg" / "model.pt").exists()
    # no output was made with these settings' models: the resolved config is written on success only
    assert not (tmp_path / "results" / "config.resolved.yaml").exists()


# ----------------------------------------------------------------------------- estimator arguments

def _case(n=5):
    m = gt.LinearGaussian(z_dim=2, x_dim=3, seed=0)
    z, x = m.sample(n, seed=1)
    return m, z, x


def _ais(**kw):
    m, _, x = _case()
    args = dict(log_likelihood=m.likelihood(x), z_dim=2, n_points=5, n_chains=2, n_intermediate=5,
                schedule="sigmoid", leapfrog_steps=2, generator=0)
    args.update(kw)
    return ais(**args)


def _bdmc(**kw):
    m, z, x = _case()
    args = dict(log_likelihood=m.likelihood(x), z_true=z, n_chains=2, n_intermediate=5,
                schedule="sigmoid", leapfrog_steps=2, generator=0)
    args.update(kw)
    return bdmc(**args)


def _local(**kw):
    m, _, x = _case()
    args = dict(log_likelihood=m.likelihood(x), z_dim=2, n_points=5, n_samples=4, check_every=5,
                patience=2, max_steps=10, final_samples=8, select_samples=8, generator=0)
    args.update(kw)
    return optimize_local(**args)


def _wrapped(shape_fn):
    """The case's likelihood with its (N, S) output reshaped by shape_fn."""
    m, _, x = _case()
    f = m.likelihood(x)
    return lambda z: shape_fn(f(z))


BAD = {
    # AIS
    "ais n_chains=0": (_ais, dict(n_chains=0), "n_chains"),
    "ais n_chains=-1": (_ais, dict(n_chains=-1), "n_chains"),
    "ais n_intermediate=1": (_ais, dict(n_intermediate=1), "n_intermediate"),
    "ais n_intermediate=2.5": (_ais, dict(n_intermediate=2.5), "n_intermediate"),
    "ais leapfrog_steps=0": (_ais, dict(leapfrog_steps=0), "leapfrog_steps"),
    "ais step_size=-1": (_ais, dict(step_size=-1.0), "step_size"),
    "ais step_size=0": (_ais, dict(step_size=0.0), "step_size"),
    "ais target_accept=1.5": (_ais, dict(target_accept=1.5), "target_accept"),
    "ais step_size_bounds": (_ais, dict(step_size_bounds=(0.5, 0.1)), "step_size_bounds"),
    "ais batch_size=0": (_ais, dict(batch_size=0), "batch_size"),
    "ais z_dim=0": (_ais, dict(z_dim=0), "z_dim"),
    "ais wrong z_dim": (_ais, dict(z_dim=3), "z_dim"),
    "ais n_points=-1": (_ais, dict(n_points=-1), "n_points"),
    "ais index length": (_ais, dict(index=torch.arange(4)), "index"),
    "ais step_sizes shape": (_ais, dict(step_sizes=torch.full((4, 5), 0.1)), "step_sizes"),
    "ais scalar likelihood": (_ais, dict(log_likelihood=_wrapped(lambda v: v.sum())), "likelihood"),
    "ais (N,S,1) likelihood": (_ais, dict(log_likelihood=_wrapped(lambda v: v.unsqueeze(-1))), "likelihood"),
    "ais (S,N) likelihood": (_ais, dict(log_likelihood=_wrapped(lambda v: v.T)), "likelihood"),
    "ais likelihood summed over S, not D": (_ais, dict(log_likelihood=lambda z: -0.5 * (z ** 2).sum(1)), "likelihood"),
    "ais non-callable likelihood": (_ais, dict(log_likelihood=3.0), "log_likelihood"),
    # BDMC
    "bdmc 1-D z_true": (_bdmc, dict(z_true=torch.zeros(5, dtype=torch.float64)), "z_true"),
    "bdmc wrong z_true width": (_bdmc, dict(z_true=torch.zeros(5, 3, dtype=torch.float64)), "z_true"),
    "bdmc z_true rows": (_bdmc, dict(z_true=torch.zeros(4, 2, dtype=torch.float64)), "z_true"),
    "bdmc n_chains=0": (_bdmc, dict(n_chains=0), "n_chains"),
    "bdmc leapfrog_steps=0": (_bdmc, dict(leapfrog_steps=0), "leapfrog_steps"),
    # local optimisation
    "local n_samples=0": (_local, dict(n_samples=0), "n_samples"),
    "local final_samples=0": (_local, dict(final_samples=0), "final_samples"),
    "local select_samples=0": (_local, dict(select_samples=0), "select_samples"),
    "local check_every=0": (_local, dict(check_every=0), "check_every"),
    "local patience=0": (_local, dict(patience=0), "patience"),
    "local method=lbfgs": (_local, dict(method="lbfgs"), "method"),
    "local newton_step=1.5": (_local, dict(newton_step=1.5), "newton_step"),
    "local newton_window=0": (_local, dict(newton_window=0), "newton_window"),
    "local gain_tol=0": (_local, dict(gain_tol=0.0), "gain_tol"),
    "local gain_samples=0": (_local, dict(gain_samples=0), "gain_samples"),
    "local max_steps=0": (_local, dict(max_steps=0), "max_steps"),
    "local restarts=-1": (_local, dict(restarts=-1), "restarts"),
    "local lr=-1": (_local, dict(lr=-1.0), "lr"),
    "local family": (_local, dict(family="gauss"), "family"),
    "local wrong z_dim": (_local, dict(z_dim=3), "z_dim"),
    "local (S,N) likelihood": (_local, dict(log_likelihood=_wrapped(lambda v: v.T)), "likelihood"),
    # bounds
    "monte_carlo_bounds n_samples=0": (monte_carlo_bounds, dict(sample_q=None, log_likelihood=None,
                                                                n_samples=0, noise_fn=None), "n_samples"),
    "log_mean_exp empty": (log_mean_exp, dict(x=torch.zeros(3, 0)), "log_mean_exp"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_estimator_argument_is_a_value_error_naming_it(name):
    fn, kw, word = BAD[name]
    with pytest.raises(ValueError) as err:
        fn(**kw)
    msg = str(err.value)
    assert word in msg and "\n" not in msg, msg


def test_likelihood_shape_message_says_what_came_back_and_what_was_expected():
    with pytest.raises(ValueError) as err:
        _ais(log_likelihood=_wrapped(lambda v: v.unsqueeze(-1)))
    # S = 3: neither N = 5 nor D = 2, so no transposed or wrongly summed output passes
    assert "returned shape (5, 3, 1)" in str(err.value) and "(N, S) = (5, 3)" in str(err.value)


def test_plus_inf_likelihood_is_an_error_and_nan_a_warning():
    """+inf (an infinite density) stops AIS; NaN is read as -inf (zero weight) with a warning;
    -inf where z is impossible is legitimate and silent."""
    m, _, x = _case()
    f = m.likelihood(x)

    def where(fill):
        return lambda z: torch.where(z[..., 0] > 0.5, torch.full_like(f(z), fill), f(z))

    with pytest.raises(ValueError, match=r"\+inf"):
        _ais(log_likelihood=where(math.inf))
    with pytest.warns(RuntimeWarning, match="NaN"):
        r = _ais(log_likelihood=where(math.nan), n_chains=8)
    assert torch.isfinite(r.log_px).all() and not torch.isnan(r.log_weights).any()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = _ais(log_likelihood=where(-math.inf), n_chains=8)
    assert torch.isfinite(r.log_px).all()
    assert not [w for w in caught if "likelihood" in str(w.message)], [str(w.message) for w in caught]


def test_valid_arguments_still_run():
    """The checks accept what the workflow and the tests pass (target_accept 0, a numpy index)."""
    import numpy as np

    r = _ais(target_accept=0.0, index=np.arange(5))
    assert r.log_px.shape == (5,)
    b = _bdmc(step_size=0.05)
    assert b.upper.shape == (5,)
    q = _local(restarts=0)
    assert q.elbo.shape == (5,)
