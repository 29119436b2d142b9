"""What a new user meets first: the install's dependencies, the outputs in plain pandas, the HTML
report (its tables readable in the page, its texts naming this run's settings) and the README."""

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
from workflow_runner import REPO, snakemake

GAPS = ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
        "amortization_gap", "inference_gap"]


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _rst_extensions():
    spec = importlib.util.spec_from_file_location("rst_extensions", REPO / "workflow" / "report" / "rst_extensions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the install -------------------------------------------------------------------------------

def test_main_install_has_what_snakemake_report_imports():
    """`pip install -e .` (no extras) must give `snakemake --report` everything it imports: snakemake
    declares those beyond its own requirements in its `reports` extra (pygments)."""
    extra = [r for r in importlib.metadata.requires("snakemake") if re.search(r"extra\s*==\s*.reports.", r)]
    needed = {_name(r) for r in extra}
    assert needed, "snakemake no longer declares a 'reports' extra; check what --report imports"
    deps = {_name(d): d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name in needed:
        assert name in deps, f"{name} (needed by snakemake --report) is not a main dependency"
        assert "==" in deps[name], f"{deps[name]} is not pinned exactly like the other dependencies"


# --- outputs in plain pandas -------------------------------------------------------------------

def test_dataset_file_opens_in_plain_pandas(tmp_path):
    """The prepared dataset opens with pd.read_parquet's defaults (an ArrowDtype recorded in the
    file's pandas metadata used to need dtype_backend="pyarrow"), and load_split reads it back."""
    from vaegaps.data import _frame, load_split
    from vaegaps.datasets import SPLITS
    from vaegaps.io import write_parquet

    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 2, (k, 6), dtype=np.uint8), np.arange(k)) for s, k in zip(SPLITS, (5, 3, 2))}
    path = tmp_path / "d.parquet"
    write_parquet(_frame(splits), path)
    df = pd.read_parquet(path)
    assert len(df) == 10 and list(df.columns) == ["split", "index", "label", "pixels"]
    np.testing.assert_array_equal(np.stack(df.loc[df["split"] == "valid", "pixels"].to_numpy()), splits["valid"][0])
    index, x, labels = load_split(path, "valid")
    np.testing.assert_array_equal(x, splits["valid"][0].astype(np.float32))
    np.testing.assert_array_equal(index, np.arange(3))


@pytest.mark.slow
def test_every_parquet_output_opens_in_plain_pandas(tiny_run):
    """Every Parquet a run writes (data, evaluation parts and chunks, local q* with its list
    columns, gaps, BDMC, over-training points, Figure 2, histories) opens with default arguments."""
    paths = sorted(tiny_run.rglob("*.parquet"))
    kinds = {p.relative_to(tiny_run).parts[0] for p in paths}
    assert {"data", "eval", "over_training", "figure2", "models", "resume"} <= kinds, kinds
    leaves = {p.name for p in paths if p.relative_to(tiny_run).parts[0] == "eval"}
    assert {"gaps.parquet", "bdmc.parquet", "refinement.parquet"} <= leaves, leaves
    failed = {}
    for p in paths:
        try:
            pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001 (report every file that fails, not the first)
            failed[str(p.relative_to(tiny_run))] = f"{type(exc).__name__}: {exc}"
    assert not failed, failed
    qstar = pd.read_parquet(tiny_run / "eval" / "digits" / "standard" / "ffg" / "local_ffg.parquet")
    assert len(qstar["qstar_mean"].iloc[0]) == 4  # z_dim of tests/data/tiny.yaml


# --- the HTML report ---------------------------------------------------------------------------

def test_setting_role_prints_resolved_settings_per_dataset():
    rst = _rst_extensions()
    resolved = {"evaluation": {"mnist": {"n_points": 1000, "ais": {"init": "encoder"}},
                               "cifar10": {"n_points": 100, "ais": {"init": "encoder"}}}}
    assert rst.setting_text(resolved, "evaluation.*.n_points") == "100 (cifar10), 1000 (mnist)"
    assert rst.setting_text(resolved, "evaluation.mnist.n_points") == "1000"
    assert rst.setting_text(resolved, "evaluation.mnist|cifar10.ais.init") == "the encoder's q(z|x)"
    with pytest.raises(KeyError):
        rst.setting_text(resolved, "evaluation.*.nothing")


def test_csv_tables_show_value_and_standard_error(tmp_path):
    rst = _rst_extensions()
    path = tmp_path / "t.csv"
    path.write_text("dataset,trained_family,n_points,log_px,log_px_se,frac_qstar_converged\n"
                    "digits,ffg,24,-43.937,0.1388,0.875\n")
    assert rst.csv_rows(path, None, transpose=True) == [
        ["", "digits / ffg"], ["datapoints", "24"], ["log p̂(x)", "-43.94 ± 0.14"], ["q* converged", "88%"]]


@pytest.fixture(scope="module")
def report(tiny_run, repo_copy):
    """The HTML report of the tiny run, built as the README says, with the default workflow
    profile (named explicitly: the scratch copy of the repository has no top-level profiles link);
    its `results` object (path -> caption, ...) and the page."""
    path = tiny_run.parent / "report_test.html"
    snakemake(tiny_run.parent, "--report", str(path), "--workflow-profile",
              str(repo_copy / "workflow" / "profiles" / "default"), repo=repo_copy)
    html = path.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))
    return results, html


@pytest.mark.slow
def test_report_shows_table2_numbers_in_the_page(report, tiny_run):
    results, _ = report
    caption = results["results/table2.csv"]["caption"]
    table = pd.read_csv(tiny_run / "table2.csv")
    assert "<table" in caption
    for _, row in table.iterrows():
        for col in GAPS:
            assert f"{row[col]:.2f} ± {row[col + '_se']:.2f}" in caption, (row["trained_family"], col)


@pytest.mark.slow
def test_report_shows_every_table_and_no_caption_errors(report):
    results, _ = report
    for path, entry in results.items():
        assert "system-message" not in entry["caption"], (path, entry["caption"])
        if path.endswith(".csv"):
            assert "<table" in entry["caption"], f"{path}: numbers only as a download"


@pytest.mark.slow
def test_report_texts_name_this_runs_settings(report):
    """tests/data/tiny.yaml: 64 amortized samples, 24 points, AIS 4 chains × 20 distributions from
    the encoder's q; not the paper's 5000 samples."""
    results, html = report
    caption = " ".join(results["results/table2.csv"]["caption"].split())  # HTML wraps lines
    for text in ("over 64 samples", "same 24 datapoints", "4 chains", "20 distributions", "the encoder"):
        assert text in caption, text
    assert "5000" not in caption
    landing = " ".join(json.loads(re.search(r"workflow_desc = (\".*?\");\n", html, re.S).group(1)).split())
    assert "mean over 64 samples" in landing and "5000" not in landing


@pytest.mark.slow
def test_report_without_the_runs_configfile_names_the_runs_settings(tiny_run, repo_copy):
    """Issue 20 (7): `snakemake --report results/report.html`, the README's command, after a
    --configfile run, builds with config.yaml's settings (50 datapoints, 16 chains) but describes
    the tiny run's (24 datapoints, 4 chains), read from the results' own provenance (~15 s)."""
    path = tiny_run.parent / "report_plain.html"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo_copy / "Snakefile"), "-d", str(tiny_run.parent),
           "--report", str(path), "--workflow-profile", str(repo_copy / "workflow" / "profiles" / "default")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    html = path.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))
    caption = " ".join(results["results/table2.csv"]["caption"].split())
    for text in ("over 64 samples", "same 24 datapoints", "4 chains", "20 distributions"):
        assert text in caption, text
    assert "50 datapoints" not in caption and "16 chains" not in caption
    landing = " ".join(json.loads(re.search(r"workflow_desc = (\".*?\");\n", html, re.S).group(1)).split())
    assert "mean over 64 samples" in landing and "4 chains" in landing


@pytest.mark.slow
def test_report_uses_the_legible_stylesheet(report):
    _, html = report
    css = (REPO / "workflow" / "report" / "report.css").read_text()
    assert "table.vaegaps-table" in css and "table.vaegaps-table" in html


# --- README ------------------------------------------------------------------------------------

def test_readme_links_stay_inside_the_repository():
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text)
    assert not [t for t in targets if t.startswith("../") or "/../" in t], targets
    assert "../" not in text
    assert not re.search(r"https?://\S*PROTOCOL", text)
    for t in targets:
        if not re.match(r"https?://|#", t):
            assert (REPO / t.split("#")[0]).exists(), f"README links to {t}, which the repository lacks"


def test_readme_module_table_names_every_module():
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (`[^|]+`) \|", text, re.M)
    named = {m for row in rows for m in re.findall(r"`([a-z_0-9/]+\.py)`", row)}
    src = REPO / "src" / "vaegaps"
    modules = {p.relative_to(src).as_posix() for p in src.rglob("*.py") if p.name != "__init__.py"}
    assert not modules - named, f"modules missing from the README's module table: {sorted(modules - named)}"
