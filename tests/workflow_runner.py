"""Running the real workflow from tests: the repository, the tiny config, one snakemake call."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"


def snakemake(workdir, *args, check=True, repo=REPO, configfiles=(), env=None, cores="2"):
    """`snakemake` on the tiny config (plus `configfiles`) in `workdir`; fails the test with the
    end of its log unless `check` is False. `cores=None`: no --cores (the profile's)."""
    config = ["--configfile", str(TINY), *map(str, configfiles)]
    # targets before --configfile when no option follows it: it would take them as config files
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
           *([*config, "--cores", cores, *args] if cores else [*args, *config])]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and out.returncode:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out
