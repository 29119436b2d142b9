"""Running the real workflow from tests: the repository, the tiny config, one snakemake call."""

import re
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


def assert_one_line_error(out, phrase: str) -> str:
    """A failed run whose error, as a user sees it, is one line: exactly one output line names the
    problem (contains `phrase`), it starts with "error: " and ends stderr, and no traceback (no
    "Traceback", no `File "…"` line, no Snakemake exception header `… in file "…", line N:`) is
    printed. Snakemake's own notes before it ("Building DAG of jobs...") are allowed. The line."""
    assert out.returncode != 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = (out.stdout + out.stderr).splitlines()
    ours = [ln for ln in lines if phrase in ln]
    report = "\n".join(lines[-20:])
    assert len(ours) == 1 and ours[0].startswith("error: "), report
    assert out.stderr.rstrip("\n").splitlines()[-1] == ours[0], report
    traceback = re.compile(r'Traceback|^\s*File "|in file ".*", line \d+|VaegapsError')
    assert not [ln for ln in lines if traceback.search(ln)], report
    return ours[0]
