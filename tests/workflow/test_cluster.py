"""Evaluation split into parts (k = 1, 2) gathers to the same Parquet, and the tiny DAG run on a
real single-node SLURM cluster through the workflow's SLURM profile equals the local run."""

import importlib.util

import pandas as pd
import pytest
from slurm_cluster import ACCOUNT, PARTITION, SlurmCluster, SlurmError
from workflow_runner import REPO, snakemake

from vaegaps.io import read_metadata

pytestmark = pytest.mark.slow  # real Snakemake runs: the slow tier

K = 2
MODELS = ["digits/standard/ffg", "digits/standard/flow"]
# Table 2 and the BDMC of its models, main setting and the over-training snapshot of standard/ffg
# (bdmc.csv itself needs every experiment's models)
OT_BDMC = "eval/digits/standard/ffg/bdmc_over_training_epoch_3.parquet"
TARGETS = ["results/table2.csv", f"results/{OT_BDMC}"]
ESTIMATORS = ["amortized", "local_ffg", "local_flow", "ais"]
GATHERED = ([f"eval/{m}/{e}.parquet" for m in MODELS for e in ESTIMATORS]
            + [f"eval/{m}/bdmc.parquet" for m in MODELS] + [OT_BDMC]
            + [f"eval/{m}/gaps.parquet" for m in MODELS])
# the refinement curves (one row per datapoint and step count) are split and gathered the same way
REFINED = [f"eval/{m}/refinement.parquet" for m in MODELS]
# what each rule's resources: ask of SLURM (mem_mb -> ReqMem, runtime -> Timelimit), per job
SLURM_RULES = {"train_vae": ("8000M", "1-00:00:00"), "amortized_bounds": ("8000M", "02:00:00"),
               "local_optimum": ("8000M", "1-00:00:00"), "ais": ("8000M", "1-00:00:00"),
               "bdmc": ("4000M", "1-00:00:00")}


def assert_same_results(a, b, exact: bool, gathered=GATHERED):
    """Every gathered per-datapoint Parquet of results folders a and b holds the same rows."""
    for rel in gathered:
        x, y = pd.read_parquet(a / rel), pd.read_parquet(b / rel)
        # float32 estimators over a different batch of datapoints may differ in the last bit; a
        # Pareto k̂ (a fit to the largest weights) carries that round-off up to a hundredfold
        khat = [c for c in x.columns if c.endswith("khat")]
        pd.testing.assert_frame_equal(x.drop(columns=khat), y.drop(columns=khat), check_exact=exact,
                                      rtol=1e-6, atol=1e-6, obj=rel)
        pd.testing.assert_frame_equal(x[khat], y[khat], check_exact=exact, rtol=1e-3, atol=1e-3, obj=rel)


@pytest.fixture(scope="module")
def split_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "split.yaml"
    path.write_text(f"evaluation: {{parts: {K}}}\n")
    return path


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, split_config):
    work = tmp_path_factory.mktemp("split_run")
    snakemake(work, *TARGETS, *(f"results/{r}" for r in REFINED), configfiles=[split_config])
    return work / "results"


def test_split_evaluation_gathers_the_unsplit_parquet(split_run, tiny_run):
    for m in MODELS:
        for e in ESTIMATORS:
            parts = sorted((split_run / "eval" / m / "parts" / e).glob("part_*.parquet"))
            assert [p.name for p in parts] == [f"part_{p}_of_{K}.parquet" for p in range(K)]
            assert [read_metadata(p)["part"] for p in parts] == list(range(K))
            assert read_metadata(split_run / "eval" / m / f"{e}.parquet")["parts"] == K
        parts = sorted((split_run / "eval" / m / "parts" / "refinement").glob("part_*.parquet"))
        assert [p.name for p in parts] == [f"part_{p}_of_{K}.parquet" for p in range(K)]
    assert_same_results(split_run, tiny_run, exact=False, gathered=GATHERED + REFINED)  # k = 2 against k = 1
    # gaps are differences of bounds near -40 nats: float32 noise is absolute, not relative
    pd.testing.assert_frame_equal(pd.read_csv(split_run / "table2.csv"), pd.read_csv(tiny_run / "table2.csv"),
                                  rtol=1e-6, atol=1e-5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except SlurmError as exc:
        pytest.fail(f"a single-node SLURM could not be started here: {exc}")
    yield c
    c.stop()


def test_tiny_dag_through_the_slurm_profile_equals_the_local_run(cluster, split_run, split_config,
                                                                 tiny_run, tmp_path):
    # the site's settings come from its own profile: the workflow is not edited
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text(
        f"default-resources:\n  slurm_partition: {PARTITION}\n  slurm_account: {ACCOUNT}\n"
        "slurm-init-seconds-before-status-checks: 2\n")
    work = tmp_path / "work"
    snakemake(work, "--workflow-profile", REPO / "workflow" / "profiles" / "slurm", "--profile", site,
              *TARGETS, configfiles=[split_config], env=cluster.env)

    jobs = cluster.jobs()
    rules = [j["Comment"].removeprefix("rule_").split("_wildcards_")[0] for j in jobs]
    assert set(rules) == set(SLURM_RULES), rules  # localrules (gathering, tables) stayed on this host
    # train, evaluation and main BDMC parts per model; over-training BDMC parts on standard/ffg
    assert len(jobs) == len(MODELS) * (1 + len(ESTIMATORS) * K + K) + K
    assert {j["State"] for j in jobs} == {"COMPLETED"}, jobs
    for rule, job in zip(rules, jobs):  # the rules' own resources, the site's partition and account
        assert (job["ReqMem"], job["Timelimit"], job["ReqCPUS"]) == (*SLURM_RULES[rule], "1"), job
        assert (job["Partition"], job["Account"]) == (PARTITION, ACCOUNT), job
    assert_same_results(work / "results", split_run, exact=True)  # the same DAG run locally
    assert_same_results(work / "results", tiny_run, exact=False)  # and unsplit
