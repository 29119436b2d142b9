"""A non-editable install works: every file the package reads at run time is package data, so
`vaegaps.measure` runs from a built wheel, outside the repository."""

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from workflow_runner import REPO

# A tiny user model measured with few samples: the run reads the config schema (the settings'
# defaults) and every estimator's code from the installed copy.
SCRIPT = textwrap.dedent("""
    import torch, vaegaps
    from torch import distributions as D, nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.enc, self.dec = nn.Linear(5, 4), nn.Linear(2, 5)
        def encode(self, x):
            return self.enc(x).chunk(2, -1)
        def decode(self, z):
            return D.Bernoulli(logits=self.dec(z))

    x = (torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    df = vaegaps.measure(Tiny(), x, progress=False, local_families=["ffg"], amortized={"n_samples": 20},
                         local={"n_samples": 5, "max_steps": 20, "check_every": 5, "final_samples": 20},
                         ais={"n_chains": 2, "n_intermediate": 5, "pilot_chains": 2, "leapfrog_steps": 2})
    assert len(df) == 4 and df["log_px"].notna().all() and df["elbo_qstar"].notna().all(), df
    print(vaegaps.__file__)
""")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel needs setuptools")
def test_measure_runs_from_a_built_wheel_outside_the_repository(tmp_path):
    # build from a copy, so no build/ or egg-info lands in the working tree
    src = tmp_path / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "dist", src],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("vaegaps-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", target, wheel], check=True, cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=outside, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    installed = run.stdout.strip().splitlines()[-1]
    assert installed.startswith(str(target / "vaegaps")), installed
