"""The real Snakemake DAG on a tiny config: outputs, schemas, gap identities, determinism, lint."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"
TABLE2_COLUMNS = ["dataset", "trained_family", "n_points"] + [
    x for c in ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
                "amortization_gap", "inference_gap"] for x in (c, f"{c}_se")]


def snakemake(workdir, *args, check=True, repo=REPO):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
           "--configfile", str(TINY), "--cores", "2", *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """The workflow and package sources in a scratch folder, so a test may edit them."""
    dst = tmp_path_factory.mktemp("repo")
    for name in ("Snakefile", "config.yaml", "workflow", "src", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    return dst


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, repo_copy):
    work = tmp_path_factory.mktemp("tiny")
    snakemake(work, "all", repo=repo_copy)
    return work / "results"


def test_table2_has_every_quantity_for_both_families(tiny_run):
    t = pd.read_csv(tiny_run / "table2.csv")
    assert list(t.columns) == TABLE2_COLUMNS
    assert sorted(t["trained_family"]) == ["ffg", "flow"]
    assert (t["n_points"] == 24).all()
    assert t.drop(columns=["dataset", "trained_family"]).notna().all().all()
    s = t["approximation_gap"] + t["amortization_gap"]
    assert (s - t["inference_gap"]).abs().max() < 1e-9
    md = (tiny_run / "table2.md").read_text()
    assert "Approximation gap" in md and "digits / ffg" in md and "digits / flow" in md


def test_per_datapoint_parquet_schemas(tiny_run):
    ev = tiny_run / "eval" / "digits" / "standard" / "ffg"
    expected = {
        "amortized.parquet": ["index", "elbo", "iwae", "elbo_se"],
        "local_ffg.parquet": ["index", "elbo", "iwae", "elbo_se", "steps", "converged"],
        "local_flow.parquet": ["index", "elbo", "iwae", "elbo_se", "steps", "converged"],
        "ais.parquet": ["index", "log_px", "log_px_se", "accept_rate"],
    }
    for name, cols in expected.items():
        df = pd.read_parquet(ev / name)
        assert list(df.columns) == cols, name
        assert df["index"].tolist() == list(range(24))  # the first 24 training points, by index
    g = pd.read_parquet(tiny_run / "gaps" / "digits" / "standard" / "flow.parquet")
    assert (g["log_px"] >= g["ais"]).all() and (g["log_px"] >= g["iwae_qstar"]).all()
    assert ((g["approximation_gap"] + g["amortization_gap"] - g["inference_gap"]).abs() < 1e-9).all()
    from vaegaps.io import read_metadata
    meta = read_metadata(tiny_run / "gaps" / "digits" / "standard" / "flow.parquet")
    assert meta["model_config"]["model"]["family"] == "flow" and "torch" in meta["versions"]
    hist = pd.read_parquet(tiny_run / "models" / "digits" / "standard" / "ffg" / "history.parquet")
    assert list(hist.columns) == ["epoch", "train_elbo", "valid_elbo", "lam", "lr", "seconds"]


def test_same_config_twice_gives_identical_parquet(tiny_run, tmp_path, repo_copy):
    snakemake(tmp_path, "all", repo=repo_copy)
    for rel in ["eval/digits/standard/flow/ais.parquet", "eval/digits/standard/flow/local_flow.parquet",
                "eval/digits/standard/ffg/amortized.parquet", "gaps/digits/standard/ffg.parquet"]:
        pd.testing.assert_frame_equal(pd.read_parquet(tiny_run / rel), pd.read_parquet(tmp_path / "results" / rel))


def test_code_edit_reruns_dependent_stages(tiny_run, repo_copy):
    """The package's modules are inputs: editing ais.py reruns the AIS stages, not training."""
    out = snakemake(tiny_run.parent, "-n", "all", repo=repo_copy)
    assert "Nothing to be done" in out.stdout + out.stderr
    ais_py = repo_copy / "src" / "vaegaps" / "ais.py"
    ais_py.write_text(ais_py.read_text() + "\n# an edit\n")
    jobs = snakemake(tiny_run.parent, "-n", "all", repo=repo_copy).stdout
    assert "rule ais:" in jobs and "rule gaps:" in jobs
    assert "rule train_vae:" not in jobs and "rule local_optimum:" not in jobs


def test_bad_config_value_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: fast}\n")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(bad), "-n"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "config error at 'train.lr'" in out.stdout + out.stderr


def test_lint_is_clean(tmp_path):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--lint"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations" in out.stdout + out.stderr
