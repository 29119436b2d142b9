"""What `snakemake all` plans is what the experiment registry (src/vaegaps/pipeline/experiments.yaml)
declares: each configured experiment's outputs and the claims' inputs it writes, and nothing of an
experiment the study leaves out (the claims then neither)."""

import re
import subprocess
import sys

import pytest
import yaml
from workflow_runner import REPO, TINY

from vaegaps.pipeline.experiments import EXPERIMENTS

pytestmark = pytest.mark.slow  # real Snakemake dry runs: the slow tier


def _planned(tmp_path, study: dict) -> set[str]:
    """The files under results/ that `snakemake -n all` plans for `study` (a complete config)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(path), "--cores", "1", "-n", "all"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    files = set()
    for line in out.stdout.splitlines():
        if m := re.match(r"\s+output: (.*)", line):
            files |= {f.strip().removeprefix("results/") for f in m.group(1).split(",")}
    return files


def test_all_plans_each_configured_experiments_outputs(tmp_path):
    """The tiny study configures every experiment: `all` plans every declared output and every
    claims input; each experiment with a section of its own left out (the others kept) drops its
    outputs, and the claims when it feeds them, and nothing else's."""
    study = yaml.safe_load(TINY.read_text())
    planned = _planned(tmp_path / "all", study)
    for e in EXPERIMENTS.values():
        assert set(e.outputs) <= planned, (e.name, set(e.outputs) - planned)
        assert set(e.claims.values()) <= planned, e.name
    optional = [e for e in EXPERIMENTS.values() if e.schema is not None and "default" not in e.schema]
    assert {e.name for e in optional} == {"variant_tables", "flows_amortization", "decoder_capacity",
                                          "over_training", "figure2"}
    for e in optional:
        without = {**study, "experiments": {k: v for k, v in study["experiments"].items() if k != e.name}}
        got = _planned(tmp_path / e.name, without)
        dropped = {e.name, *(d.name for d in EXPERIMENTS.values() if e.name in d.requires)}
        for other in EXPERIMENTS.values():
            assert (set(other.outputs) <= got) == (other.name not in dropped), (e.name, other.name)
