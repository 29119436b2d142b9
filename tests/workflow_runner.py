"""Running the real workflow from tests: the repository, the tiny config, one snakemake call."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"


def snakemake(workdir, *args, check=True, repo=REPO, configfiles=(), env=None):
    """`snakemake` on the tiny config (plus `configfiles`) in `workdir`; fails the test with the
    end of its log unless `check` is False."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
           "--configfile", str(TINY), *map(str, configfiles), "--cores", "2", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and out.returncode:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out
