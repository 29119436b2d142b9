"""A user's own VAE through the pipeline (config `user_models`, workflow/rules/user.smk,
docs/method.md §11): the per-datapoint rows equal vaegaps.measure's for the same model, data and
settings; the table, BDMC certificate and figure come out; a study of user models alone needs no
other section."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from workflow_runner import REPO, snakemake

import vaegaps
from vaegaps.io import read_metadata

pytestmark = pytest.mark.slow  # real Snakemake runs: the slow tier

# The user's model module, written into the work folder: the Snakemake jobs import it from there
# (PYTHONPATH), the test imports the same file.
MODEL_PY = '''
import math
import torch
from torch import nn
from torch.distributions import Normal


class LinearGaussianVAE(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, I); the encoder: the posterior mean, twice the optimal
    FFG variance."""

    def __init__(self, z_dim=3, x_dim=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64)
        prec = torch.eye(z_dim, dtype=torch.float64) + W.T @ W
        self.register_buffer("W", W)
        self.register_buffer("b", torch.randn(x_dim, generator=g, dtype=torch.float64))
        self.register_buffer("A", torch.linalg.solve(prec, W.T))
        self.register_buffer("logvar", math.log(2.0) - torch.log(torch.diagonal(prec)))

    def encode(self, x):
        return (x - self.b) @ self.A.T, self.logvar.expand(len(x), -1)

    def decode(self, z):
        return Normal(z @ self.W.T + self.b, 1.0)


def build(seed=0):
    return LinearGaussianVAE(seed=seed)
'''

SETTINGS = {
    "bdmc_points": 4,
    "flow_hidden": 8,
    "evaluation": {"n_points": 10, "chunk_size": 4, "amortized": {"n_samples": 64},
                   "local": {"n_samples": 8, "check_every": 10, "patience": 3, "max_steps": 60,
                             "final_samples": 64, "flow": {"lr": 3.0e-3}},
                   "ais": {"n_chains": 4, "n_intermediate": 20, "leapfrog_steps": 2, "pilot_chains": 2},
                   "refinement": {"steps": [0, 2, 10], "n_samples": 4, "final_samples": 64}},
}


def _user_study(work):
    """The model module, its data (12 points simulated from it) and a config naming it."""
    (work / "umodel.py").write_text(MODEL_PY)
    spec = importlib.util.spec_from_file_location("umodel_test", work / "umodel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build(seed=1)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(12, 3, generator=g, dtype=torch.float64)
    np.save(work / "data.npy", (z @ model.W.T + model.b + torch.randn(12, 6, generator=g, dtype=torch.float64)).numpy())
    entry = {"model": "umodel:build", "args": {"seed": 1}, "data": "data.npy", "inputs": ["umodel.py"], **SETTINGS}
    (work / "user.yaml").write_text(yaml.safe_dump({"user_models": {"lg": entry}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")])}
    return model, env


def test_pipeline_rows_equal_measure_and_the_table_certifies(tmp_path):
    model, env = _user_study(tmp_path)
    snakemake(tmp_path, "results/user_table.csv", "results/user/lg/gaps.png", "results/user_refinement.csv",
              configfiles=[tmp_path / "user.yaml"], env=env)
    res = tmp_path / "results"
    pipe = pd.read_parquet(res / "user" / "lg" / "gaps.parquet")
    kw = {**SETTINGS["evaluation"], "flow_hidden": 8}
    ours = vaegaps.measure(model, tmp_path / "data.npy", seed=0, progress=False, **kw)
    pd.testing.assert_frame_equal(ours, pipe)   # the same random keys, batches and arithmetic
    assert list(pipe["index"]) == list(range(10)) and set(pipe["qstar_family"]) == {"ffg"}
    assert np.allclose(pipe["approximation_gap"] + pipe["amortization_gap"], pipe["inference_gap"])
    meta = read_metadata(res / "user" / "lg" / "gaps.parquet")
    assert meta["settings"]["model"] == "umodel:build" and meta["encoder_family"] == "ffg"
    assert meta["settings"]["evaluation"]["ais"]["n_chains"] == 4
    resolved = yaml.safe_load((res / "config.resolved.yaml").read_text())["user_models"]["lg"]
    assert resolved["evaluation"]["local"]["restarts"] == 2 and resolved["local"]["flow"]["lr"] == 3.0e-3
    table = pd.read_csv(res / "user_table.csv")
    assert len(table) == 1 and table["name"].iloc[0] == "lg" and table["n_points"].iloc[0] == 10
    for col in ("log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
                "amortization_gap", "inference_gap", "bdmc_gap"):
        assert np.isfinite(table[col].iloc[0]) and np.isfinite(table[f"{col}_se"].iloc[0]), col
    assert table["bdmc_n_points"].iloc[0] == 4
    bdmc = pd.read_parquet(res / "user" / "lg" / "bdmc.parquet")
    assert list(bdmc.columns) == ["index", "lower", "upper", "gap"] and len(bdmc) == 4
    assert "AIS from the encoder" in read_metadata(res / "user" / "lg" / "bdmc.parquet")["procedure"]
    png = (res / "user" / "lg" / "gaps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (res / "user" / "lg" / "gaps.pdf").read_bytes()[:4] == b"%PDF"
    # the refinement curve: vaegaps.refine's rows, and its fractions of the amortization gap
    curve = pd.read_parquet(res / "user" / "lg" / "refinement.parquet")
    pd.testing.assert_frame_equal(vaegaps.refine(model, tmp_path / "data.npy", seed=0, progress=False, **kw), curve)
    refined = pd.read_csv(res / "user_refinement.csv")
    assert list(refined.columns) == ["name", "family", "steps", "elbo", "elbo_se", "fraction_closed",
                                     "fraction_closed_se"]
    assert refined["steps"].tolist() == [0, 2, 10] and set(refined["name"]) == {"lg"} and set(refined["family"]) == {"ffg"}
    pd.testing.assert_frame_equal(refined.drop(columns=["name", "family"]), vaegaps.refinement_summary(curve, pipe),
                                  check_dtype=False)
    for stage in ("amortized", "local_ffg", "local_flow", "ais", "bdmc", "refinement"):
        assert (res / "logs" / "user" / "lg" / stage / "part_0_of_1.log").exists(), stage
        assert (res / "benchmarks" / "user" / "lg" / stage / "part_0_of_1.tsv").exists(), stage


def test_a_study_of_user_models_alone(tmp_path):
    """A config holding only `user_models` is a complete study: its DAG is the user rules (here
    split into 2 parts each), and `all` builds the user outputs alone."""
    _, env = _user_study(tmp_path)
    cfg = yaml.safe_load((tmp_path / "user.yaml").read_text())
    cfg["user_models"]["lg"]["evaluation"]["parts"] = 2
    (tmp_path / "only.yaml").write_text(yaml.safe_dump(cfg))
    for target in ("results/user_table.csv", "all"):
        out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                              "--configfile", str(tmp_path / "only.yaml"), "-n", target],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        text = out.stdout + out.stderr
        assert "rule ais:" in text and "source=user, model=lg" in text and "part_1_of_2" in text and "train_vae" not in text, text[-3000:]
    bad = {"user_models": {"lg": {**cfg["user_models"]["lg"], "family": "gaussian"}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(tmp_path / "bad.yaml"), "-n"], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "config error at 'user_models.lg.family'" in out.stdout + out.stderr
    example = REPO / "examples" / "digits_categorical" / "user.yaml"
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(example), "-n", "results/user_table.csv"],
                         capture_output=True, text=True, env=env)
    assert "config error" not in out.stdout + out.stderr, out.stdout + out.stderr
