"""The real Snakemake DAG on a tiny config: outputs, schemas, gap identities, determinism, lint."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from workflow_runner import REPO, TINY, snakemake

pytestmark = pytest.mark.slow  # real Snakemake runs: the slow tier

TABLE2_COLUMNS = ["dataset", "trained_family", "n_points"] + [
    x for c in ["log_px", "elbo_local_flow", "elbo_local_ffg", "elbo_amortized", "approximation_gap",
                "amortization_gap", "inference_gap"] for x in (c, f"{c}_se")]


def test_table2_has_every_quantity_for_both_families(tiny_run):
    t = pd.read_csv(tiny_run / "table2.csv")
    assert list(t.columns[:len(TABLE2_COLUMNS)]) == TABLE2_COLUMNS
    trust = ["ais_start", "frac_converged_local_ffg", "frac_converged_local_flow", "frac_qstar_converged",
             "frac_log_px_from_ais", "frac_log_px_from_iwae_qstar", "frac_log_px_from_iwae_amortized",
             "log_px_bias_bound", "frac_ais_below_iwae", "frac_ais_below_iwae_amortized",
             "frac_ais_below_any_bound", "frac_iwae_qstar_untrusted", "frac_iwae_amortized_untrusted",
             "approximation_gap_is_lower_bound",
             "ais_minus_iwae", "ais_minus_iwae_se", "n_negative_amortization_gap", "n_negative_approximation_gap",
             "bdmc_gap", "bdmc_gap_se", "bdmc_n_points"]
    assert list(t.columns[len(TABLE2_COLUMNS):]) == trust
    fracs = [c for c in trust if c.startswith("frac_")]
    assert (t[fracs].ge(0) & t[fracs].le(1)).all().all()
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
        "amortized.parquet": ["index", "elbo", "iwae", "elbo_se", "iwae_se", "iwae_khat"],
        "local_ffg.parquet": ["index", "elbo", "iwae", "elbo_se", "iwae_se", "iwae_khat", "steps", "converged", "restarts",
                              "remaining_gain", "qstar_mean", "qstar_logvar"],
        "local_flow.parquet": ["index", "elbo", "iwae", "elbo_se", "iwae_se", "iwae_khat", "steps", "converged",
                               "restarts", "remaining_gain"],
        "ais.parquet": ["index", "log_px", "log_px_se", "accept_rate", "ais_start"],
    }
    for name, cols in expected.items():
        df = pd.read_parquet(ev / name)
        assert list(df.columns) == cols, name
        assert df["index"].tolist() == list(range(24))  # the first 24 training points, by index
    g = pd.read_parquet(tiny_run / "eval" / "digits" / "standard" / "flow" / "gaps.parquet")
    assert ((g["approximation_gap"] + g["amortization_gap"] - g["inference_gap"]).abs() < 1e-9).all()
    # log p̂: the largest of AIS and the trusted IWAEs, named by its source
    bounds = {"ais": g["ais"], **{b: g[b].where(~g[f"{b}_untrusted"]) for b in ("iwae_qstar", "iwae_amortized")}}
    best = pd.DataFrame(bounds).max(axis=1)
    assert (g["log_px"] == best).all() and set(g["log_px_source"]) <= set(bounds)
    assert all(g.loc[i, "log_px"] == g.loc[i, src] for i, src in g["log_px_source"].items())
    assert (g["ais_below_any_bound"] == (g["ais_below_iwae"] | g["ais_below_iwae_amortized"])).all()
    assert g["iwae_qstar_khat"].notna().all() and g["iwae_amortized_khat"].notna().all()
    for fam in ("ffg", "flow"):  # issue 9 acceptance on the tiny config
        d = pd.read_parquet(tiny_run / "eval" / "digits" / "standard" / fam / "gaps.parquet")
        assert not d["negative_amortization_gap"].any()
        diff = d["elbo_local_flow"] - d["elbo_local_ffg"]
        assert diff.mean() >= -2 * diff.std() / len(diff) ** 0.5
    assert (tiny_run / "config.resolved.yaml").exists()
    from vaegaps.io import read_metadata
    meta = read_metadata(tiny_run / "eval" / "digits" / "standard" / "flow" / "gaps.parquet")
    assert meta["model_config"]["model"]["family"] == "flow" and "torch" in meta["versions"]
    assert meta["local"]["flow"]["max_steps"] == 120 and meta["evaluation"]["ais"]["n_chains"] == 4
    for rel in ("data/digits.parquet", "models/digits/standard/ffg/history.parquet", "eval/digits/standard/ffg/ais.parquet",
                "flows_amortization.parquet", "gaps_over_training.parquet", "eval/digits/standard/ffg/bdmc.parquet"):
        study = read_metadata(tiny_run / rel)["study"]   # the whole study's settings, defaults filled
        assert study["evaluation"]["local"]["restarts"] == 2 and study["model"]["realnvp_hidden"] == 8, rel
    hist = pd.read_parquet(tiny_run / "models" / "digits" / "standard" / "ffg" / "history.parquet")
    assert list(hist.columns) == ["epoch", "train_elbo", "valid_elbo", "lam", "lr", "seconds"]


def test_same_config_twice_gives_identical_parquet(tiny_run, tmp_path, repo_copy):
    snakemake(tmp_path, "results/table2.csv", repo=repo_copy)
    for rel in ["eval/digits/standard/flow/ais.parquet", "eval/digits/standard/flow/local_flow.parquet",
                "eval/digits/standard/ffg/amortized.parquet", "eval/digits/standard/ffg/gaps.parquet"]:
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
    """Each rule's code inputs are derived from its script (vaegaps.pipeline.codedeps), never listed by
    hand (prepare_dataset's as `ancient`: see test_a_data_module_edit_reruns_its_importers_but_not_the_data)."""
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M):
            name, script = RULE.match(block), re.search(r'script:\s*"\.\./scripts/(\w+)\.py"', block)
            if name and script:
                wrap = "ancient(" if name.group(1) == "prepare_dataset" else ""
                assert f'code={wrap}script_code("{script.group(1)}")' in block, (smk.name, name.group(1))


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
    from vaegaps.pipeline.codedeps import script_modules

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


def test_a_data_module_edit_reruns_its_importers_but_not_the_data(tiny_run, repo_copy):
    """Editing a module the data stage imports too (errors.py) plans every other stage that imports
    it, in one `snakemake -n all`, and not prepare_dataset: its file is whole, and a rebuild would
    hide every other stale job (they read the data file as `ancient`, so Snakemake planned the
    rebuild alone and reported success)."""
    from vaegaps.pipeline.codedeps import script_modules

    in_dag = set(RULE.findall(snakemake(tiny_run.parent, "-n", "--forceall", "all", repo=repo_copy).stdout))
    scripts = _rule_scripts()
    path = repo_copy / "src" / "vaegaps" / "errors.py"
    text, stat = path.read_text(), path.stat()
    try:
        path.write_text(text + "\n# an edit\n")
        expected = {r for r, s in scripts.items()
                    if r in in_dag and "errors" in script_modules(REPO / "workflow" / "scripts" / s)}
        assert "prepare_dataset" in expected and "train_vae" in expected, expected
        jobs = set(RULE.findall(snakemake(tiny_run.parent, "-n", "all", repo=repo_copy).stdout))
        assert expected - {"prepare_dataset"} <= jobs, expected - jobs
        assert "prepare_dataset" not in jobs
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
    "bdmc.csv": ["dataset", "variant", "family", "setting", "epoch", "n_points", "procedure", "n_intermediate", "n_chains",
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
    dcp = pd.read_parquet(tiny_run / "decoder_capacity.parquet")   # per datapoint, each model named
    assert set(zip(dcp["decoder_layers"], dcp["variant"], dcp["family"])) == {
        (0, "decoder_0", "ffg"), (2, "standard", "ffg"), (4, "decoder_4", "ffg")}
    assert dcp.groupby("decoder_layers")["index"].apply(list).map(tuple).nunique() == 1  # same datapoints
    otp = pd.read_parquet(tiny_run / "gaps_over_training.parquet")
    assert dict(otp[["model", "variant", "family"]].drop_duplicates().set_index("model").apply(tuple, axis=1)) == {
        "standard": ("standard", "ffg"), "flow": ("standard", "realnvp"),
        "large_decoder": ("large_decoder", "ffg"), "large_encoder": ("large_encoder", "ffg")}
    ot = pd.read_csv(tiny_run / "gaps_over_training.csv")
    assert set(ot["model"]) == {"standard", "flow", "large_decoder", "large_encoder"}
    assert set(ot["split"]) == {"train", "valid"} and set(ot["epoch"]) == {1, 3}
    bd = pd.read_csv(tiny_run / "bdmc.csv")
    assert set(bd["setting"]) == {"main", "over_training"}


def _required_bdmc(config: dict) -> set[tuple]:
    """(dataset, variant, family, setting, epoch) of every model whose log p̂ a table or claim
    uses, read from the study itself: Table 2, Table 3 and decoder capacity at their trained
    epochs (main setting), each over-training model at its last snapshot (over_training)."""
    from vaegaps.config import model_config, split_ref

    exp = config["experiments"]

    def epochs(d, v, f):
        return model_config(config, d, v, f)["train"]["epochs"]

    main = {(d, "standard", f) for d in config["datasets"] for f in config["families"]}
    vt = exp["variant_tables"]
    main |= {(d, v, f) for d in vt["datasets"] for v in ["standard", *vt["variants"]] for f in vt["families"]}
    main |= {(exp["decoder_capacity"]["dataset"], *split_ref(r)) for r in exp["decoder_capacity"]["models"].values()}
    keys = {(*k, "main", epochs(*k)) for k in main}
    ot = exp["over_training"]
    for ref in ot["models"].values():
        key = (ot["dataset"], *split_ref(ref))
        kept = [e for e in model_config(config, *key)["train"]["snapshots"] if e <= epochs(*key)]
        keys.add((*key, "over_training", max(kept)))
    return keys


def test_bdmc_certifies_every_model_a_table_or_claim_uses(tiny_run):
    """Issue 21: bdmc.csv has one row per (dataset, variant, family, setting) whose log p̂ enters
    a table or a claim, at the epoch of the weights that produced it; over-training rows certify
    the snapshot's weights with the pilot-frozen over-training AIS the points used."""
    import yaml

    from vaegaps.config import validate
    from vaegaps.io import read_metadata

    config = validate(yaml.safe_load(TINY.read_text()), REPO / "src" / "vaegaps" / "config.schema.yaml")
    required = _required_bdmc(config)
    assert len(required) == 10  # 6 models at the main setting (standard/ffg once), 4 snapshots
    bd = pd.read_csv(tiny_run / "bdmc.csv")
    assert list(bd.columns[:7]) == ["dataset", "variant", "family", "setting", "epoch", "n_points", "procedure"]
    assert bd["epoch"].dtype.kind == "i"
    got = [tuple(r) for r in bd[["dataset", "variant", "family", "setting", "epoch"]].itertuples(index=False)]
    assert len(got) == len(set(got)) and set(got) == required
    assert (bd["n_points"] == config["experiments"]["bdmc"]["n_points"]).all()
    assert (bd["tuning"] == "pilot").all() and bd["procedure"].str.contains("then frozen").all()
    assert bd[["lower", "upper", "gap", "gap_se"]].notna().all().all()
    ot = bd[bd["setting"] == "over_training"]
    assert (ot["n_chains"] == 2).all() and (bd.loc[bd["setting"] == "main", "n_chains"] == 4).all()
    points = pd.read_parquet(tiny_run / "gaps_over_training.parquet")
    for _, row in ot.iterrows():  # the snapshot the over-training points read at that epoch
        meta = read_metadata(tiny_run / "eval" / row["dataset"] / row["variant"] / row["family"]
                             / f"bdmc_over_training_epoch_{row['epoch']}.parquet")
        assert meta["weights"].endswith(f"{row['variant']}/{row['family']}/snapshots/epoch_{row['epoch']}.pt")
        assert meta["ais"]["tuning"] == "pilot" and meta["setting"] == "over_training"
        assert row["epoch"] == points["epoch"].max()


def test_figures_are_valid_png_and_pdf(tiny_run):
    for stem in ("figure2", "posteriors_ffg_vs_flow", "gaps_over_training", "refinement"):
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
            "8a", "8b", "8c", "bdmc"} <= set(claims["claim"].astype(str))
    assert set(claims["verdict"]) <= {"supported", "contradicted", "inconclusive", "not evaluated"}
    # every input was built; 1b is stated for Fashion-MNIST and CIFAR-10 only
    assert set(claims.loc[claims["verdict"] == "not evaluated", "claim"].astype(str)) <= {"1b"}
    assert claims.loc[claims["claim"].astype(str).isin(["1", "8a", "8b", "8c"]), "paired"].all()
    # a verdict means evidence: every supported row lies beyond 2 se in its claimed direction (3b and
    # 6c, equivalences: inside the tolerance; 7d has no se and decides on its point estimate)
    sign = {"1": 1, "1b": 1, "2a": -1, "2b": 1, "3a": 1, "4a": -1, "4b": -1, "5a": -1, "5b": -1, "6a": -1,
            "6b": 1, "7a": -1, "7b": -1, "7c": -1, "8a": -1, "8b": -1, "8c": -1, "bdmc": -1}
    for _, r in claims[claims["verdict"] == "supported"].iterrows():
        c = str(r["claim"])
        if c in sign:
            assert sign[c] * r["diff"] > 2 * r["diff_se"], r.to_dict()
        elif c == "3b":
            assert abs(r["diff"]) + 2 * r["diff_se"] <= 1.0, r.to_dict()


def test_dry_run_lists_every_output(tmp_path):
    out = snakemake(tmp_path, "-n", "all")
    for name in ["table2.csv", "table3.csv", "flows_amortization.csv", "decoder_capacity.csv",
                 "gaps_over_training.csv", "bdmc.csv", "claims.csv", "figures/figure2.png",
                 "figures/posteriors_ffg_vs_flow.pdf", "figures/gaps_over_training.png", "refinement.csv",
                 "figures/refinement.png", "figures/refinement.pdf"]:
        assert f"results/{name}" in out.stdout, name


def test_default_profile_is_loaded_without_being_named(tmp_path):
    """Snakemake looks for profiles/default beside the Snakefile: the link there makes the default
    profile (rerun-incomplete after a kill, default resources) apply to every plain run."""
    out = snakemake(tmp_path, "-n", "results/table2.csv")
    assert "Using workflow specific profile" in out.stderr and "profiles/default" in out.stderr


# ----------------------------------------------------------------------------- README schemas

# README "Outputs and their schemas": in a row's last cell, a code span that is a list of names is
# columns (`a, b_{x,y}, c[_se]` = a, b_x, b_y, c, c_se); quoted words are values, and a code span
# with a dot, slash or space in a name (a config key, a path) is neither.
_NAME = r"[a-z][a-z0-9_]*(?:\{[a-z0-9_,]+\}[a-z0-9_]*)*(?:\[_se\])?"
_COLUMNS = re.compile(rf"{_NAME}(?:, {_NAME})*")


def _expand(name: str) -> list[str]:
    """`b_{x,y}` -> b_x, b_y; `c[_se]` -> c, c_se; a brace without a comma (`{dataset}`) stays."""
    if name.endswith("[_se]"):
        return [x for n in _expand(name[:-5]) for x in (n, f"{n}_se")]
    m = re.search(r"\{([^{}]*,[^{}]*)\}", name)
    if not m:
        return [name]
    return [x for alt in m.group(1).split(",") for x in _expand(name[:m.start()] + alt + name[m.end():])]


def readme_schemas(text: str) -> list[tuple[list[str], set[str]]]:
    """(file patterns under results/, documented columns) of every row of the README's output
    tables (its "Outputs and their schemas" section) that names a CSV or Parquet file."""
    section = text.split("\n## Outputs and their schemas\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for row in section.splitlines():
        if not row.startswith("| `results/"):
            continue
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        files = [f for span in re.findall(r"`([^`]+)`", cells[0]) for f in _expand(span)
                 if f.endswith((".csv", ".parquet"))]
        columns = {c for span in re.findall(r"`([^`]+)`", cells[-1]) if _COLUMNS.fullmatch(span)
                   for name in span.split(", ") for c in _expand(name)}
        for i in range(1, len(files)):  # `results/a/x.parquet`, `y.parquet`: y is in a/ too
            if "/" not in files[i]:
                files[i] = f"{files[i - 1].rsplit('/', 1)[0]}/{files[i]}"
        if files:
            rows.append(([f.removeprefix("results/") for f in files], columns))
    return rows


def _columns(path) -> set[str]:
    if path.suffix == ".csv":
        return set(pd.read_csv(path, nrows=0).columns)
    import pyarrow.parquet as pq

    return set(pq.read_schema(path).names) - {"__index_level_0__"}


def _glob(pattern: str) -> str:
    """A README path (`{dataset}`-style wildcards, `…` for folders, P and K of part_P_of_K) as a glob."""
    return re.sub(r"\{[a-z_]+\}", "*", pattern).replace("…", "**").replace("part_P_of_K", "part_*_of_*")


def _schema_problems(results, patterns: list[str], listed: set[str]) -> list[str]:
    """What is wrong with one README row against the files of `results` it names."""
    found = {p: sorted(results.glob(_glob(p))) for p in patterns}
    problems = [f"{p}: no such file in the tiny run" for p, fs in found.items() if not fs]
    files = [f for fs in found.values() for f in fs]
    if not listed:  # "the same columns for part P of K": those of the gathered file
        for f in files:  # (a q*_FFG part that a flow starts from may have no gathered file)
            gathered = f.parents[2] / f"{f.parent.name}.parquet"
            gathered = gathered if gathered.exists() else next(results.glob(f"eval/**/{gathered.name}"))
            if _columns(f) != _columns(gathered):
                problems.append(f"{f.relative_to(results)}: columns differ from {gathered.relative_to(results)}")
        return problems
    written = {}  # column: the first file that has it
    for f in files:
        for c in _columns(f):
            written.setdefault(c, f.relative_to(results))
    where = ", ".join(patterns)
    if set(written) - listed:
        problems.append(f"{where}: undocumented columns "
                        + ", ".join(f"{c} (in {written[c]})" for c in sorted(set(written) - listed)))
    if files and listed - set(written):
        problems.append(f"{where}: stale columns, in no file: {sorted(listed - set(written))}")
    return problems


def test_readme_schemas_list_every_column_written(tiny_run):
    """Every CSV and Parquet file the README's output tables describe, as the tiny run wrote it: a
    column that a file has and its row does not list is undocumented; a listed column that no file
    of its row has is stale; a row without a column list (the parts files) must have the columns
    of its gathered file. Every CSV or Parquet file outside resume/ (the chunk cache) is in a row.
    Before, table2.csv's ais_start and bdmc_* and bounds.parquet's grid_mass, among others, were
    written but not listed."""
    rows = readme_schemas((REPO / "README.md").read_text())
    assert {"table2.csv", "figure2/bounds.parquet", "eval/…/ais.parquet", "bdmc.csv"} <= {
        p for patterns, _ in rows for p in patterns}
    problems = [x for patterns, listed in rows for x in _schema_problems(tiny_run, patterns, listed)]
    matched = {f for patterns, _ in rows for p in patterns for f in tiny_run.glob(_glob(p))}
    unlisted = {f for f in tiny_run.rglob("*") if f.suffix in (".csv", ".parquet")} - matched
    problems += [f"{f.relative_to(tiny_run)}: in no row" for f in sorted(unlisted)
                 if f.relative_to(tiny_run).parts[0] != "resume"]
    assert not problems, "README schema tables vs the files written:\n" + "\n".join(problems)
def test_the_usage_line_runs_without_cores(tmp_path):
    """`snakemake TARGET` exactly as the README's usage line has it, without --cores: the default
    profile gives it every core (Snakemake alone refuses: "cores have to be specified")."""
    out = snakemake(tmp_path, "results/data/digits.parquet", cores=None)
    assert (tmp_path / "results/data/digits.parquet").is_file()
    assert re.search(r"Provided cores: \d+", out.stderr), out.stderr[-2000:]


def test_refinement_curve_of_every_table_model(tiny_run):
    """Issue 24 on the tiny run: results/refinement.csv has the curve of every Table 2 and Table 3
    model at every k of the grid; k = 0 is L[q] (the encoder's q) within noise per datapoint, the
    curve stays below log p̂ beyond noise on average, and the settings are recorded."""
    import numpy as np

    from vaegaps.io import read_metadata

    t = pd.read_csv(tiny_run / "refinement.csv")
    assert list(t.columns) == ["dataset", "variant", "family", "steps", "elbo", "elbo_se", "fraction_closed",
                               "fraction_closed_se"]
    models = {("digits", "standard", "ffg"), ("digits", "standard", "flow"), ("digits", "large_encoder", "ffg"),
              ("digits", "no_annealing", "ffg")}
    assert set(zip(t["dataset"], t["variant"], t["family"])) == models
    assert all(steps == [0, 1, 5, 20] for steps in t.groupby(["variant", "family"])["steps"].apply(list))
    assert t[["elbo", "elbo_se", "fraction_closed", "fraction_closed_se"]].notna().all().all()
    for _, variant, family in models:
        curve = pd.read_parquet(tiny_run / "eval" / "digits" / variant / family / "refinement.parquet")
        assert list(curve.columns) == ["index", "steps", "elbo", "elbo_se"]
        assert curve["index"].tolist() == [i for i in range(24) for _ in range(4)]
        amort = pd.read_parquet(tiny_run / "eval" / "digits" / variant / family / "amortized.parquet")
        k0 = curve[curve["steps"] == 0]
        d = k0["elbo"].to_numpy() - amort["elbo"].to_numpy()
        assert (np.abs(d) <= 4.5 * np.hypot(k0["elbo_se"].to_numpy(), amort["elbo_se"].to_numpy())).all(), d
        gaps = pd.read_parquet(tiny_run / "eval" / "digits" / variant / family / "gaps.parquet")
        for k, ck in curve.groupby("steps"):
            over = ck["elbo"].to_numpy() - gaps["log_px"].to_numpy()
            assert over.mean() < 2 * over.std(ddof=1) / np.sqrt(len(over)), (variant, family, k)
        meta = read_metadata(tiny_run / "eval" / "digits" / variant / family / "refinement.parquet")
        assert meta["estimator"] == "refinement" and meta["settings"] == {
            "steps": [0, 1, 5, 20], "optimizer": "sgd", "lr": 1e-3, "n_samples": 4, "final_samples": 64}
        row0 = t[(t["variant"] == variant) & (t["family"] == family) & (t["steps"] == 0)].iloc[0]
        assert abs(row0["fraction_closed"]) <= 3 * row0["fraction_closed_se"] + 1e-9
