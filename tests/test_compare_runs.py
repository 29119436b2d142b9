"""scripts/compare_runs.py pairs two runs' per-datapoint results by datapoint index."""

import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


def _run(tmp_path, name, index, elbo, steps):
    d = tmp_path / name / "eval" / "ds" / "standard" / "ffg"
    d.mkdir(parents=True)
    pd.DataFrame({"index": index, "elbo": elbo, "steps": steps}).to_parquet(d / "local_flow.parquet")
    return tmp_path / name


def test_the_difference_is_paired_on_the_shared_datapoints_only(tmp_path, capsys):
    a = _run(tmp_path, "a", [0, 1, 2], [-10.0, -20.0, -30.0], [100, 100, 100])
    b = _run(tmp_path, "b", [2, 1, 0, 3, 4], [-30.5, -20.0, -10.1, -99.0, -99.0], [50, 50, 50, 9, 9])
    runpy.run_path(str(SCRIPT), run_name="compare")["main"](["--a", str(a), "--b", str(b)])
    out = capsys.readouterr().out
    assert "n = 3, mean -0.2000" in out and "min -0.5000" in out and "max +0.0000" in out
    assert "A 100, B 50" in out   # steps on the shared points only, not B's own 9s


def test_runs_without_common_results_are_one_clear_error(tmp_path):
    a = _run(tmp_path, "a", [0], [-1.0], [1])
    p = subprocess.run([sys.executable, str(SCRIPT), "--a", str(a), "--b", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and p.stderr.strip().startswith("error: no local_flow.parquet")
    assert "Traceback" not in p.stderr


def test_ais_compares_log_px(tmp_path, capsys):
    for name, v in (("a", -5.0), ("b", -4.0)):
        d = tmp_path / name / "eval" / "ds" / "standard" / "ffg"
        d.mkdir(parents=True)
        pd.DataFrame({"index": [7], "log_px": [v]}).to_parquet(d / "ais.parquet")
    runpy.run_path(str(SCRIPT), run_name="compare")["main"](
        ["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--estimator", "ais"])
    assert "`log_px`" in capsys.readouterr().out
