"""Faults and interrupted runs (issue 11): kill -9 then the same command, a live run still refused,
damaged data/model/checkpoint files named with the command that rebuilds them (and no trained
model lost to them), a full disk or read-only folder as one line, an evaluation set larger than
its split. The workflow tests use narrow targets of the tiny config."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vaegaps import io as vio
from vaegaps.errors import VaegapsError
from vaegaps.evaluate import evaluation_set
from vaegaps.io import load_torch, save_torch, write_parquet
from vaegaps.stage import stage
from workflow_runner import REPO, TINY, snakemake

SRC = REPO / "src"
FFG = "results/models/digits/standard/ffg"
AIS = "results/eval/digits/standard/ffg/ais.parquet"
AMORTIZED = "results/eval/digits/standard/ffg/amortized.parquet"
DATA = "results/data/digits.parquet"
# The documented command prefix of a run of the tiny config (vaegaps.recovery.command_line).
COMMAND = f"snakemake --cores 1 --configfile {TINY}"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _output(out) -> str:
    return out.stdout + out.stderr


def _truncate(path) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def _stale_locks(work) -> list[Path]:
    return sorted((Path(work) / ".snakemake" / "locks").glob("*.lock"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A working folder where the tiny config's data file and standard FFG model were built."""
    work = tmp_path_factory.mktemp("built")
    snakemake(work, f"{FFG}/model.pt")
    return work


def _copy(built, dst) -> Path:
    shutil.copytree(built, dst, symlinks=True)  # copy2: times kept, so Snakemake sees no change
    return dst


# ----------------------------------------------------------------------------- kill -9 and locks

def _start(work, *args, configfiles=()):
    """The same command line as workflow_runner.snakemake, in its own process group."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(TINY), *map(str, configfiles), "--cores", "2", *args]
    log = open(Path(work).parent / f"{Path(work).name}.{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _freeze_when(proc, pattern: str, work, timeout: float = 120.0) -> None:
    """SIGSTOP the run's whole process group (Snakemake and its jobs) as soon as a file matching
    `pattern` exists: the stage that writes it is then mid-way, and stays so."""
    deadline = time.monotonic() + timeout
    while not list(Path(work).glob(pattern)):
        assert proc.poll() is None, f"the run ended before {pattern} appeared"
        assert time.monotonic() < deadline, f"{pattern} never appeared"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGSTOP)


def _kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def test_kill_9_then_the_same_command_finishes_as_if_uninterrupted(tmp_path):
    """README "Interrupted runs": after kill -9 of Snakemake and its jobs (mid-training, then
    mid-AIS) the same command again just works (no --unlock) and gives the Parquet and weights of
    an uninterrupted run; while the killed run was alive, a second run was refused."""
    long = tmp_path / "long.yaml"  # long enough stages for the kill to land inside them
    long.write_text("train: {epochs: 150, checkpoint_every: 2}\n"
                    "evaluation: {chunk_size: 4, ais: {n_intermediate: 200}}\n")
    work = tmp_path / "killed"
    work.mkdir()

    run = _start(work, f"{FFG}/model.pt", configfiles=[long])
    try:
        _freeze_when(run, "results/resume/digits/standard/ffg/train/*/train.ckpt", work)
        assert not (work / FFG / "model.pt").exists()  # frozen mid-training
        locks = _stale_locks(work)
        assert locks
        # a live run (frozen, not dead) keeps its locks: a second run is refused as usual
        second = snakemake(work, f"{FFG}/model.pt", configfiles=[long], check=False)
        assert second.returncode != 0 and "Directory cannot be locked" in _output(second), _output(second)[-2000:]
        assert _stale_locks(work) == locks
    finally:
        _kill(run)
    assert _stale_locks(work) == locks  # kill -9 leaves them behind

    out = snakemake(work, f"{FFG}/model.pt", configfiles=[long])  # README: the same command again
    assert "stale Snakemake lock file" in _output(out)
    assert "resuming from" in next((work / "results/logs/train_vae/digits/standard/ffg").glob("*.log")).read_text()

    run = _start(work, AIS, configfiles=[long])
    try:
        _freeze_when(run, "results/resume/digits/standard/ffg/ais/chunk_*.parquet", work)
        assert not (work / "results/eval/digits/standard/ffg/parts/ais/part_0_of_1.parquet").exists()
    finally:
        _kill(run)
    assert _stale_locks(work)
    out = snakemake(work, AIS, configfiles=[long])
    assert "stale Snakemake lock file" in _output(out)
    assert "reusing" in (work / "results/logs/ais/digits/standard/ffg/part_0_of_1.log").read_text()

    ref = tmp_path / "uninterrupted"
    ref.mkdir()
    snakemake(ref, f"{FFG}/model.pt", AIS, configfiles=[long])
    pd.testing.assert_frame_equal(pd.read_parquet(work / AIS), pd.read_parquet(ref / AIS))
    killed, whole = (load_torch(d / FFG / "model.pt")["state_dict"] for d in (work, ref))
    assert killed.keys() == whole.keys() and all(torch.equal(killed[k], whole[k]) for k in killed)
    hist = [pd.read_parquet(d / FFG / "history.parquet").drop(columns="seconds") for d in (work, ref)]
    pd.testing.assert_frame_equal(*hist)


def _python(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, text=True)


CLAIM = "import sys; from vaegaps.recovery import claim_run; print(len(claim_run(sys.argv[1])))"
JOB = ("import sys, time; from vaegaps.recovery import hold_run_lock; "
       "print(hold_run_lock(sys.argv[1]), flush=True); time.sleep(60)")


def test_locks_of_a_job_still_running_are_not_stale(tmp_path):
    """Snakemake killed but one of its jobs still writing: its locks are kept (the job holds the
    run lock); once no process of the run lives, they are removed."""
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/models/x/model.pt\n")
    job = _python(JOB, tmp_path)
    try:
        assert job.stdout.readline().strip() == "True"
        assert _python(CLAIM, tmp_path).communicate()[0].strip() == "0"
        assert (locks / "0.output.lock").exists()
    finally:
        job.kill()
        job.wait()
    assert _python(CLAIM, tmp_path).communicate()[0].strip() == "1"
    assert not (locks / "0.output.lock").exists()


# ----------------------------------------------------------------------------- damaged files

def test_damaged_data_file_keeps_models_and_names_its_rebuild(built, tmp_path):
    """A truncated data Parquet: the models stay (no retraining, nothing deleted), one line names
    the file and the command that rebuilds it, and that command restores a working state."""
    work = _copy(built, tmp_path / "work")
    model = work / FFG / "model.pt"
    sha, mtime = _sha(model), model.stat().st_mtime_ns
    _truncate(work / DATA)

    out = snakemake(work, AMORTIZED, check=False)
    text = _output(out)
    assert out.returncode != 0
    assert "rule train_vae" not in text and _sha(model) == sha and model.stat().st_mtime_ns == mtime
    rebuild = f"{COMMAND} --force {DATA}"
    warning = [line for line in text.splitlines() if line.startswith("vaegaps: warning:")]
    assert len(warning) == 1 and DATA in warning[0] and warning[0].endswith(f"rebuild it: {rebuild}")
    error = [line for line in text.splitlines() if line.startswith("error: ")]
    assert error and error[0].startswith(f"error: {DATA} is damaged") and error[0].endswith(rebuild)
    assert "Traceback" not in text

    snakemake(work, *rebuild.split()[len(COMMAND.split()):])  # the documented command
    out = snakemake(work, AMORTIZED)
    assert "rule train_vae" not in _output(out) and "vaegaps: warning" not in _output(out)
    assert _sha(model) == sha and model.stat().st_mtime_ns == mtime
    assert len(pd.read_parquet(work / AMORTIZED)) == 24


def test_damaged_model_names_the_command_that_rebuilds_it(built, tmp_path):
    """A truncated model.pt: one line with the exact command, which copies it again from its
    settings' training folder, results/trained/… (no epoch trained again)."""
    work = _copy(built, tmp_path / "work")
    model = work / FFG / "model.pt"
    sha = _sha(model)
    _truncate(model)
    out = snakemake(work, AMORTIZED, check=False)
    rebuild = f"{COMMAND} --force {FFG}/model.pt"
    error = [line for line in _output(out).splitlines() if line.startswith("error: ")]
    assert out.returncode != 0 and error, _output(out)[-2000:]
    assert error[0].startswith(f"error: cannot read {FFG}/model.pt") and error[0].endswith(f"rebuild it: {rebuild}")

    out = snakemake(work, *rebuild.split()[len(COMMAND.split()):])
    assert "rule current_model" in _output(out) and "rule train_vae" not in _output(out)
    assert _sha(model) == sha
    snakemake(work, AMORTIZED)


def _trained_state(work) -> dict[str, str]:
    """sha256 of the standard FFG model, its history and snapshots, its training checkpoint(s)
    and the resolved config."""
    files = [work / FFG / "model.pt", work / FFG / "history.parquet",
             *sorted((work / FFG / "snapshots").glob("*")), *sorted(work.glob("results/resume/**/train.ckpt")),
             work / "results/config.resolved.yaml"]
    return {str(f.relative_to(work)): _sha(f) for f in files}


@pytest.mark.slow
def test_a_failed_retrain_of_new_settings_keeps_the_old_weights(built, tmp_path):
    """Issue 20 (5): new settings that make training diverge fail in one line that advises no
    deletion, and leave the old settings' model, history, snapshots, checkpoint and resolved config
    as they were; other new settings train in their own folder, and going back to the old settings
    brings their model back without training (~20 s)."""
    work = _copy(built, tmp_path / "work")
    before = _trained_state(work)
    out = snakemake(work, f"{FFG}/model.pt", "--config", "train={lr: 0.5}", check=False)
    errors = [line for line in _output(out).splitlines() if line.startswith("error: ")]
    assert out.returncode != 0 and errors[0].startswith("error: training diverged at epoch 1"), _output(out)[-2000:]
    assert not [line for line in errors if "delete" in line or " rm " in line], errors
    assert _trained_state(work) == before
    assert "Nothing to be done" in _output(snakemake(work, "-n", f"{FFG}/model.pt"))  # the old command

    out = snakemake(work, f"{FFG}/model.pt", "--config", "train={lr: 2.0e-3}")  # other settings: trained
    assert "rule train_vae" in _output(out) and _sha(work / FFG / "model.pt") != before[f"{FFG}/model.pt"]
    out = snakemake(work, f"{FFG}/model.pt")  # the old settings again: their model, not trained again
    assert "rule current_model" in _output(out) and "rule train_vae" not in _output(out)
    assert _trained_state(work).items() >= before.items()


def test_load_torch_names_the_exact_rebuild_command(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEGAPS_SNAKEMAKE", raising=False)
    monkeypatch.chdir(tmp_path)
    model = Path("results/models/digits/standard/flow/model.pt")
    ckpt = Path("results/resume/digits/standard/flow/train/0123456789abcdef/train.ckpt")
    trained = Path("results/trained/digits/standard/flow/0123456789abcdef/model.pt")
    snap = Path("results/models/digits/standard/flow/snapshots/epoch_3.pt")
    for p in (model, ckpt, snap):
        save_torch({"w": torch.ones(1000)}, p)
        _truncate(p)
    expected = {
        model: f"rebuild it: snakemake --cores 1 --force {model}",
        ckpt: f"move it aside and rerun: mv {ckpt} {ckpt}.damaged && snakemake --cores 1 {trained}",
        snap: f"rebuild it: snakemake --cores 1 --force {model}",
    }
    for p, hint in expected.items():
        with pytest.raises(VaegapsError) as e:
            load_torch(p)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"cannot read {p} (") and msg.endswith(hint), msg
    with pytest.raises(VaegapsError, match="my hint$"):
        load_torch(model, rebuild="my hint")
    monkeypatch.setenv("VAEGAPS_SNAKEMAKE", "snakemake --cores 1 --configfile p.yaml")
    with pytest.raises(VaegapsError, match=r"rebuild it: snakemake --cores 1 --configfile p.yaml --force"):
        load_torch(model)


def test_load_split_of_a_damaged_data_file_is_one_line(tmp_path):
    from vaegaps.data import image_shape, load_split

    path = tmp_path / "digits.parquet"
    _dataset(path, 5)
    _truncate(path)
    for read in (lambda: load_split(path, "train"), lambda: image_shape(path)):
        with pytest.raises(VaegapsError) as e:
            read()
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{path} is damaged") and msg.endswith(f"--force {path}")


# ----------------------------------------------------------------------------- full disk, read-only

def _frame(n=200_000) -> pd.DataFrame:
    return pd.DataFrame({"x": np.random.default_rng(0).normal(size=n)})  # incompressible, 1.6 MB


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_and_read_only_folder_are_one_line_and_leave_nothing(small_tmpfs):
    out = small_tmpfs / "results" / "eval"
    out.mkdir(parents=True)
    for write, name in ((lambda p: write_parquet(_frame(), p), "ais.parquet"),
                        (lambda p: save_torch({"w": torch.randn(100_000)}, p), "model.pt")):
        with pytest.raises(VaegapsError) as e:
            write(out / name)
        assert str(e.value) == f"cannot write {out / name}: no space left on device: free space, or set " \
                               "results: to a folder on another disk"
        assert list(out.iterdir()) == []  # no temp file, no half-written file
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(VaegapsError, match=r"^cannot write .*x\.parquet: read-only file system: set results: "):
        write_parquet(_frame(10), out / "x.parquet")
    assert list(out.iterdir()) == []


def test_outputs_get_the_umask_mode_not_the_temporary_files(tmp_path):
    """An atomically written output is readable as any new file would be (0644 under umask 022),
    not private like the temporary file it was written as."""
    import os

    import pandas as pd

    from vaegaps.io import _file_mode, write_parquet

    old = os.umask(0o022)
    _file_mode.cache_clear()        # the mode is read once per process
    try:
        write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "out.parquet")
    finally:
        os.umask(old)
        _file_mode.cache_clear()
    assert (tmp_path / "out.parquet").stat().st_mode & 0o777 == 0o644


def test_write_errors_map_to_one_line_anywhere(tmp_path, monkeypatch):
    """Without a small disk: pyarrow's and any stage's OSError of a full disk or read-only folder."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(vio.pq, "write_table", full)
    with pytest.raises(VaegapsError, match="no space left on device"):
        write_parquet(_frame(10), tmp_path / "a.parquet")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    monkeypatch.chdir(tmp_path)  # no .snakemake/ here: the stage takes no run lock
    sm = SimpleNamespace(log=[str(tmp_path / "stage.log")], threads=1, config={})
    for code, words in ((errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")):
        with pytest.raises(SystemExit) as e:
            with stage(sm):
                raise OSError(code, os.strerror(code), "results/snapshots/epoch_3.pt")
        assert e.value.code == f"error: cannot write results/snapshots/epoch_3.pt: {words}" + e.value.code.split(words)[1]
        assert "\n" not in e.value.code
    with pytest.raises(FileNotFoundError):  # any other OSError stays what it is
        with stage(sm):
            raise FileNotFoundError(errno.ENOENT, "No such file", "x")


# ----------------------------------------------------------------------------- evaluation size

def _dataset(path, n_train: int) -> None:
    """A minimal prepared-dataset Parquet (the columns load_split reads)."""
    pixels = pa.array([np.zeros(4, np.uint8)] * n_train, type=pa.list_(pa.uint8()))
    pq.write_table(pa.table({"split": ["train"] * n_train, "index": np.arange(n_train),
                             "label": np.zeros(n_train, np.int64), "pixels": pixels}), path)


def test_evaluation_set_larger_than_its_split_is_an_error(tmp_path):
    path = tmp_path / "d.parquet"
    _dataset(path, 5)
    assert evaluation_set(path, "train", 5, "cpu")[0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(VaegapsError, match=r"^evaluation\.n_points is 6 but the train split of .* has 5 "
                                           r"datapoints; lower evaluation\.n_points to 5 or less$"):
        evaluation_set(path, "train", 6, "cpu")


def test_too_many_evaluation_points_fail_before_any_job(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("evaluation: {n_points: 100000}\n")
    out = snakemake(tmp_path, DATA, configfiles=[big], check=False)  # a real run, of a cheap target
    assert out.returncode != 0
    assert ("evaluation.n_points is 100000 but the train split of digits has 1297 datapoints; "
            "lower evaluation.n_points to 1297 or less") in _output(out)
    assert not (tmp_path / "results").exists()  # nothing ran
    big.write_text("experiments: {over_training: {n_points: 251}}\n")
    out = snakemake(tmp_path, "-n", "results/table2.csv", configfiles=[big], check=False)
    assert "experiments.over_training.n_points is 251 but the valid split of digits has 250" in _output(out)
