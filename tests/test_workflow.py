"""The real Snakemake DAG on a tiny config: outputs, schemas, gap identities, determinism, lint."""

import os
import re
import subprocess
import sys

import pandas as pd

from workflow_runner import REPO, snakemake

TABLE2_COLUMNS = ["dataset", "trained_family", "n_points"] + [
    x for c in ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
                "amortization_gap", "inference_gap"] for x in (c, f"{c}_se")]


def test_table2_has_every_quantity_for_both_families(tiny_run):
    t = pd.read_csv(tiny_run / "table2.csv")
    assert list(t.columns[:len(TABLE2_COLUMNS)]) == TABLE2_COLUMNS
    trust = ["ais_start", "frac_converged_local_ffg", "frac_converged_local_flow", "frac_qstar_converged",
             "frac_log_px_from_ais", "frac_ais_below_iwae", "approximation_gap_is_lower_bound",
             "ais_minus_iwae", "ais_minus_iwae_se", "n_negative_amortization_gap", "n_negative_approximation_gap",
             "bdmc_gap", "bdmc_gap_se", "bdmc_n_points"]
    assert list(t.columns[len(TABLE2_COLUMNS):]) == trust
    assert (t[trust[1:6]].ge(0) & t[trust[1:6]].le(1)).all().all()
    # each row names its AIS start and carries the BDMC gap of that very AIS setting
    assert set(t["ais_start"]) == {"encoder"}
    bdmc = pd.read_csv(tiny_run / "bdmc.csv").query("setting == 'main'")
    for _, row in t.iterrows():
        cert = bdmc[(bdmc["family"] == row["trained_family"]) & (bdmc["dataset"] == row["dataset"])]
        assert abs(float(cert["gap"].iloc[0]) - row["bdmc_gap"]) < 1e-9
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
        "amortized.parquet": ["index", "elbo", "iwae", "elbo_se", "iwae_se"],
        "local_ffg.parquet": ["index", "elbo", "iwae", "elbo_se", "iwae_se", "steps", "converged", "restarts",
                              "remaining_gain", "qstar_mean", "qstar_logvar"],
        "local_flow.parquet": ["index", "elbo", "iwae", "elbo_se", "iwae_se", "steps", "converged", "restarts",
                               "remaining_gain"],
        "ais.parquet": ["index", "log_px", "log_px_se", "accept_rate", "ais_start"],
    }
    for name, cols in expected.items():
        df = pd.read_parquet(ev / name)
        assert list(df.columns) == cols, name
        assert df["index"].tolist() == list(range(24))  # the first 24 training points, by index
    g = pd.read_parquet(tiny_run / "gaps" / "digits" / "standard" / "flow.parquet")
    assert (g["log_px"] >= g["ais"]).all() and (g["log_px"] >= g["iwae_qstar"]).all()
    assert ((g["approximation_gap"] + g["amortization_gap"] - g["inference_gap"]).abs() < 1e-9).all()
    assert set(g["log_px_source"]) <= {"ais", "iwae_qstar"}
    assert ((g["log_px_source"] == "ais") == (g["ais"] >= g["iwae_qstar"])).all()
    for fam in ("ffg", "flow"):  # issue 9 acceptance on the tiny config
        d = pd.read_parquet(tiny_run / "gaps" / "digits" / "standard" / f"{fam}.parquet")
        assert not d["negative_amortization_gap"].any()
        diff = d["elbo_local_flow"] - d["elbo_local_ffg"]
        assert diff.mean() >= -2 * diff.std() / len(diff) ** 0.5
    assert (tiny_run / "config.resolved.yaml").exists()
    from vaegaps.io import read_metadata
    meta = read_metadata(tiny_run / "gaps" / "digits" / "standard" / "flow.parquet")
    assert meta["model_config"]["model"]["family"] == "flow" and "torch" in meta["versions"]
    assert meta["local"]["flow"]["max_steps"] == 120 and meta["evaluation"]["ais"]["n_chains"] == 4
    for rel in ("data/digits.parquet", "models/digits/standard/ffg/history.parquet", "eval/digits/standard/ffg/ais.parquet",
                "flows_amortization.parquet", "gaps_over_training.parquet", "bdmc/digits/standard/ffg/main.parquet"):
        study = read_metadata(tiny_run / rel)["study"]   # the whole study's settings, defaults filled
        assert study["evaluation"]["local"]["restarts"] == 2 and study["model"]["realnvp_hidden"] == 8, rel
    hist = pd.read_parquet(tiny_run / "models" / "digits" / "standard" / "ffg" / "history.parquet")
    assert list(hist.columns) == ["epoch", "train_elbo", "valid_elbo", "lam", "lr", "seconds"]


def test_same_config_twice_gives_identical_parquet(tiny_run, tmp_path, repo_copy):
    snakemake(tmp_path, "results/table2.csv", repo=repo_copy)
    for rel in ["eval/digits/standard/flow/ais.parquet", "eval/digits/standard/flow/local_flow.parquet",
                "eval/digits/standard/ffg/amortized.parquet", "gaps/digits/standard/ffg.parquet"]:
        pd.testing.assert_frame_equal(pd.read_parquet(tiny_run / rel), pd.read_parquet(tmp_path / "results" / rel))


RULE = re.compile(r"^(?:local)?rule (\w+):", re.M)


def _rule_scripts() -> dict[str, str]:
    """rule name -> its stage script, read from workflow/rules/*.smk."""
    out = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M):
            name, script = RULE.match(block), re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', block)
            if name and script:
                out[name.group(1)] = script.group(1)
    return out


def test_every_rule_declares_the_modules_its_script_imports():
    """Each rule's code inputs are derived from its script (vaegaps.codedeps), never listed by hand."""
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M):
            name, script = RULE.match(block), re.search(r'script:\s*"\.\./scripts/(\w+)\.py"', block)
            if name and script:
                assert f'code=script_code("{script.group(1)}")' in block, (smk.name, name.group(1))


def _rerun_by(dry_run: str, path: str) -> set[str]:
    """Rules of the dry run's jobs whose reason names `path` (an updated input)."""
    rules, rule = set(), None
    for line in dry_run.splitlines():
        m = RULE.match(line)
        rule = m.group(1) if m else rule
        if line.strip().startswith("reason:") and path in line:
            rules.add(rule)
    return rules


def test_code_edit_reruns_exactly_the_importing_stages(tiny_run, repo_copy):
    """Touching a package module makes `snakemake -n` rerun exactly the stages whose scripts
    import it (directly or through other modules), and others only downstream of them. The tiny run's own
    repository is edited (another copy would change every code input's path), then restored with
    its old modification times."""
    from vaegaps.codedeps import script_modules

    out = snakemake(tiny_run.parent, "-n", "all", repo=repo_copy)
    assert "Nothing to be done" in out.stdout + out.stderr
    in_dag = set(RULE.findall(snakemake(tiny_run.parent, "-n", "--forceall", "all", repo=repo_copy).stdout))
    scripts = _rule_scripts()
    for module in ("ais", "tables"):
        path = repo_copy / "src" / "vaegaps" / f"{module}.py"
        text, stat = path.read_text(), path.stat()
        try:
            path.write_text(text + "\n# an edit\n")
            expected = {r for r, s in scripts.items()
                        if r in in_dag and module in script_modules(REPO / "workflow" / "scripts" / s)}
            assert expected and expected != in_dag
            jobs = snakemake(tiny_run.parent, "-n", "all", repo=repo_copy).stdout
            named = _rerun_by(jobs, str(path))   # jobs whose own code input changed
            # every importing stage reruns (its reason may instead name an upstream job's output);
            # a stage that does not import it reruns only downstream of one that does
            assert named and named <= expected <= set(RULE.findall(jobs)), module
            assert "train_vae" not in RULE.findall(jobs), module
        finally:
            path.write_text(text)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_bad_config_value_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [digits]\ntrain: {lr: fast}\n")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(bad), "-n"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "config error at 'train.lr'" in out.stdout + out.stderr


def test_lint_is_clean(tmp_path):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--lint"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations" in out.stdout + out.stderr


EXPERIMENT_TABLES = {
    "table3.csv": ["dataset", "variant", "trained_family", "n_points", "log_px", "log_px_se"],
    "flows_amortization.csv": ["dataset", "encoder", "family", "n_points", "elbo_amortized", "elbo_amortized_se",
                               "elbo_qstar", "elbo_qstar_se", "amortization_gap", "amortization_gap_se"],
    "decoder_capacity.csv": ["dataset", "decoder_layers", "n_points", "log_px", "log_px_se",
                             "approximation_gap_flow", "approximation_gap_flow_se"],
    "gaps_over_training.csv": ["dataset", "model", "epoch", "split", "n_points", "log_px", "elbo_qstar",
                               "elbo_amortized", "approximation_gap", "amortization_gap"],
    "bdmc.csv": ["dataset", "variant", "family", "setting", "n_points", "procedure", "n_intermediate", "n_chains",
                 "lower", "lower_se", "upper", "upper_se", "gap", "gap_se"],
}


def test_every_experiment_table_has_its_schema(tiny_run):
    for name, cols in EXPERIMENT_TABLES.items():
        df = pd.read_csv(tiny_run / name)
        assert len(df) > 0, name
        assert set(cols) <= set(df.columns), (name, set(cols) - set(df.columns))
    t3 = pd.read_csv(tiny_run / "table3.csv")
    assert set(t3["variant"]) == {"standard", "large_encoder", "no_annealing"}
    fa = pd.read_csv(tiny_run / "flows_amortization.csv")
    assert list(fa["encoder"]) == ["ffg_small", "realnvp_small", "flow_small", "ffg"]
    dc = pd.read_csv(tiny_run / "decoder_capacity.csv")
    assert list(dc["decoder_layers"]) == [0, 2, 4]
    ot = pd.read_csv(tiny_run / "gaps_over_training.csv")
    assert set(ot["model"]) == {"standard", "flow", "large_decoder", "large_encoder"}
    assert set(ot["split"]) == {"train", "valid"} and set(ot["epoch"]) == {1, 3}
    bd = pd.read_csv(tiny_run / "bdmc.csv")
    assert set(bd["setting"]) == {"main", "over_training"}


def test_figures_are_valid_png_and_pdf(tiny_run):
    for stem in ("figure2", "posteriors_ffg_vs_flow", "gaps_over_training"):
        png = (tiny_run / "figures" / f"{stem}.png").read_bytes()
        pdf = (tiny_run / "figures" / f"{stem}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, stem
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000, stem
    grid = pd.read_parquet(tiny_run / "figure2" / "grid.parquet")
    assert {"index", "distribution", "z1", "z2", "density"} <= set(grid.columns)
    assert set(grid["distribution"]) == {"true", "amortized_ffg", "optimal_ffg", "optimal_flow"}


def test_claims_table_structure(tiny_run):
    claims = pd.read_csv(tiny_run / "claims.csv")
    assert list(claims.columns) == ["claim", "dataset", "kind", "statement", "comparison", "value_a", "se_a",
                                    "value_b", "se_b", "diff", "diff_se", "paired", "verdict", "note"]
    assert {"1", "2a", "2b", "3a", "3b", "4a", "4b", "5a", "5b", "6a", "6b", "6c", "7a", "7b", "7c", "7d",
            "bdmc"} <= set(claims["claim"].astype(str))
    assert set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive", "not evaluated"}
    # every input was built; 1b is stated for Fashion-MNIST and CIFAR-10 only
    assert set(claims.loc[claims["verdict"] == "not evaluated", "claim"].astype(str)) <= {"1b"}
    assert claims.loc[claims["claim"].astype(str) == "1", "paired"].all()


def test_dry_run_lists_every_output(tmp_path):
    out = snakemake(tmp_path, "-n", "all")
    for name in ["table2.csv", "table3.csv", "flows_amortization.csv", "decoder_capacity.csv",
                 "gaps_over_training.csv", "bdmc.csv", "claims.csv", "figures/figure2.png",
                 "figures/posteriors_ffg_vs_flow.pdf", "figures/gaps_over_training.png"]:
        assert f"results/{name}" in out.stdout, name


def test_default_profile_is_loaded_without_being_named(tmp_path):
    """Snakemake looks for profiles/default beside the Snakefile: the link there makes the default
    profile (rerun-incomplete after a kill, default resources) apply to every plain run."""
    out = snakemake(tmp_path, "-n", "results/table2.csv")
    assert "Using workflow specific profile" in out.stderr and "profiles/default" in out.stderr
