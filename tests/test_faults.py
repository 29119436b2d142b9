"""Faults and interrupted runs (issue 11): kill -9 then the same command, a live run still refused,
damaged data/model/checkpoint files named with the command that rebuilds them (and no trained
model lost to them), a full disk or read-only folder as one line, an evaluation set larger than
its split. The workflow tests use narrow targets of the tiny config."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
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
from workflow_runner import REPO, TINY, assert_one_line_error, snakemake

from vaegaps import io as vio
from vaegaps.errors import VaegapsError
from vaegaps.evaluate import evaluation_set
from vaegaps.io import load_torch, save_torch, write_parquet
from vaegaps.pipeline.stage import stage

SRC = REPO / "src"
FFG = "results/models/digits/standard/ffg"
AIS = "results/eval/digits/standard/ffg/ais.parquet"
AMORTIZED = "results/eval/digits/standard/ffg/amortized.parquet"
DATA = "results/data/digits.parquet"
# The documented command prefix of a run of the tiny config (vaegaps.pipeline.rebuild.command_line).
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


@pytest.mark.slow
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
        # a live run (frozen, not dead) keeps its locks: a second run is refused
        second = snakemake(work, f"{FFG}/model.pt", configfiles=[long], check=False)
        assert second.returncode != 0 and "error: a live run holds this folder" in _output(second), _output(second)[-2000:]
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
    assert "reusing" in (work / "results/logs/eval/digits/standard/ffg/ais/part_0_of_1.log").read_text()

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


CLAIM = ("import sys; from vaegaps.pipeline.recovery import claim_run\n"
         "try: print(len(claim_run(sys.argv[1])))\n"
         "except Exception as e: print('refused:', e)")
JOB = ("import sys, time; from vaegaps.pipeline.recovery import hold_run_lock; "
       "print(hold_run_lock(sys.argv[1]), flush=True); time.sleep(60)")


def test_locks_of_a_job_still_running_are_not_stale(tmp_path):
    """Snakemake killed but one of its jobs still writing: its locks are kept (the job holds the
    run lock) and a new run is refused, naming the job; once no process of the run lives, they
    are removed."""
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/models/x/model.pt\n")
    job = _python(JOB, tmp_path)
    try:
        assert job.stdout.readline().strip() == "True"
        said = _python(CLAIM, tmp_path).communicate()[0].strip()
        assert said.startswith("refused: ") and f"(PID {job.pid})" in said and f"kill {job.pid}`" in said, said
        assert (locks / "0.output.lock").exists()
    finally:
        job.kill()
        job.wait()
    assert _python(CLAIM, tmp_path).communicate()[0].strip() == "1"
    assert not (locks / "0.output.lock").exists()


def test_a_job_not_yet_holding_the_run_lock_is_seen(tmp_path):
    """A job takes the run lock only after its imports: a job process of this folder that does not
    hold it yet (here: never) still makes a new run stop, naming it, and keeps its locks."""
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/models/x/model.pt\n")
    script = tmp_path / ".snakemake" / "scripts" / "tmpab12cd.train_vae.py"  # Snakemake's naming
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(script)])
    try:
        said = _python(CLAIM, tmp_path).communicate()[0].strip()
        assert said == (f"refused: jobs of a killed run are still running in this folder: job train_vae "
                        f"(PID {job.pid}); wait for them to finish, or end them with `kill {job.pid}`, "
                        "then run the same command again"), said
        assert (locks / "0.output.lock").exists()
    finally:
        job.kill()
        job.wait()
    assert _python(CLAIM, tmp_path).communicate()[0].strip() == "1"


def _job_pids(work, rule="") -> list[int]:
    """PIDs of the processes running a job script of `work` (Snakemake names them tmpXXXX.RULE.py)."""
    scripts, pids = f"{Path(work).resolve()}/.snakemake/scripts/", []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if any(a.startswith(scripts) and a.endswith(f"{rule}.py") for a in os.fsdecode(
                    (proc / "cmdline").read_bytes()).split("\0")):
                pids.append(int(proc.name))
    return sorted(pids)


def _errors(out) -> list[str]:
    return [line for line in _output(out).splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_a_live_run_or_a_killed_runs_job_stops_a_new_run_with_one_line(tmp_path):
    """A second run while one is live, and the same command after kill -9 of Snakemake alone while
    its job still runs: each stops before the DAG with one line of ours naming the processes and
    what to do (never Snakemake's advice to --unlock, which would break the live run), and
    leaves the locks; once the job is gone, the stale locks are removed."""
    long = tmp_path / "long.yaml"
    long.write_text("train: {epochs: 150}\n")
    work = tmp_path / "work"
    work.mkdir()
    run = _start(work, f"{FFG}/model.pt", configfiles=[long])
    try:
        deadline = time.monotonic() + 120
        while not (jobs := _job_pids(work, "train_vae")):  # started: most likely still importing torch
            assert run.poll() is None and time.monotonic() < deadline, "no job started"
            time.sleep(0.005)
        os.killpg(run.pid, signal.SIGSTOP)  # stays alive, and mid-way
        locks = _stale_locks(work)

        second = snakemake(work, f"{FFG}/model.pt", configfiles=[long], check=False)
        text = _output(second)
        assert second.returncode != 0 and _errors(second) == [
            f"error: a live run holds this folder: snakemake (PID {run.pid}), job train_vae (PID {jobs[0]}); "
            f"wait for it to finish, or end it with `kill {run.pid} {jobs[0]}`, then run the same command again"], text
        assert "--unlock" not in text and "cannot be locked" not in text

        os.kill(run.pid, signal.SIGKILL)  # Snakemake alone; its job lives on
        run.wait(timeout=60)
        third = snakemake(work, f"{FFG}/model.pt", configfiles=[long], check=False)
        assert third.returncode != 0 and _errors(third) == [
            f"error: jobs of a killed run are still running in this folder: job train_vae (PID {jobs[0]}); "
            f"wait for them to finish, or end them with `kill {jobs[0]}`, then run the same command again"], _output(third)
        assert "--unlock" not in _output(third) and _stale_locks(work) == locks
    finally:
        for pid in [run.pid, *_job_pids(work)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _job_pids(work):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    out = snakemake(work, DATA, configfiles=[long])  # a cheap target: the locks were stale
    assert f"removed {len(locks)} stale Snakemake lock file(s)" in _output(out)


# ----------------------------------------------------------------------------- damaged files

@pytest.mark.slow
def test_damaged_data_file_keeps_models_and_names_its_rebuild(built, tmp_path):
    """A truncated data Parquet: the run stops before any job with one line naming the file and
    the command that rebuilds it (a dry run only warns); the models stay (no retraining, nothing
    deleted), and that command restores a working state."""
    work = _copy(built, tmp_path / "work")
    model = work / FFG / "model.pt"
    sha, mtime = _sha(model), model.stat().st_mtime_ns
    _truncate(work / DATA)
    rebuild = f"{COMMAND} --force {DATA}"

    dry = snakemake(work, "-n", AMORTIZED)
    warning = [line for line in _output(dry).splitlines() if line.startswith("vaegaps: warning:")]
    assert len(warning) == 1 and DATA in warning[0] and warning[0].endswith(f"rebuild it: {rebuild}")

    out = snakemake(work, AMORTIZED, check=False)
    text = _output(out)
    assert out.returncode != 0 and "Building DAG" not in text and "rule " not in text
    assert _sha(model) == sha and model.stat().st_mtime_ns == mtime
    assert len(_errors(out)) == 1 and _errors(out)[0].startswith(f"error: {DATA} is damaged (")
    assert _errors(out)[0].endswith(f"rebuild it: {rebuild}") and "Traceback" not in text

    snakemake(work, *rebuild.split()[len(COMMAND.split()):])  # the documented command
    out = snakemake(work, AMORTIZED)
    assert "rule train_vae" not in _output(out) and "vaegaps: warning" not in _output(out)
    assert _sha(model) == sha and model.stat().st_mtime_ns == mtime
    assert len(pd.read_parquet(work / AMORTIZED)) == 24


@pytest.mark.slow
def test_damaged_model_stops_the_run_before_any_job_or_deletion(built, tmp_path):
    """A truncated model.pt, newer than the results made from it: the run stops before any job
    starts and before Snakemake deletes those results as out of date, with one line naming the
    exact command; that command copies it again from its settings' training folder,
    results/trained/… (no epoch trained again), and the finished results are kept."""
    work = _copy(built, tmp_path / "work")
    snakemake(work, AMORTIZED)
    model, part = work / FFG / "model.pt", work / "results/eval/digits/standard/ffg/parts/amortized/part_0_of_1.parquet"
    sha, done = _sha(model), {p: _sha(p) for p in (part, work / AMORTIZED)}
    _truncate(model)
    out = snakemake(work, AMORTIZED, check=False)
    rebuild = f"{COMMAND} --force {FFG}/model.pt"
    assert out.returncode != 0 and _errors(out) == [
        f"error: {FFG}/model.pt is damaged (not a whole torch file); rebuild it: {rebuild}"], _output(out)[-2000:]
    assert "Building DAG" not in _output(out) and {p: _sha(p) for p in done} == done

    out = snakemake(work, *rebuild.split()[len(COMMAND.split()):])
    assert "rule current_model" in _output(out) and "rule train_vae" not in _output(out)
    assert _sha(model) == sha
    snakemake(work, AMORTIZED)
    assert {p: _sha(p) for p in done} == done


def test_which_runs_a_damaged_file_stops(tmp_path, monkeypatch, capsys):
    """A damaged file stops a run of jobs, not one that forces that very file (the printed rebuild
    command), runs no job, or only warns (a dry run); a damaged training checkpoint of a finished
    model only warns, without the advice to retrain."""
    from vaegaps.pipeline.preflight import check_damage, cli_mode, damaged_files

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEGAPS_SNAKEMAKE", raising=False)
    model = Path(FFG) / "model.pt"
    ckpt = Path("results/resume/digits/standard/ffg/train/0123456789abcdef/train.ckpt")
    trained = Path("results/trained/digits/standard/ffg/0123456789abcdef/model.pt")
    for p in (model, ckpt):
        save_torch({"w": torch.ones(1000)}, p)
    _truncate(model)
    damaged = damaged_files("results")
    assert [f for f, _ in damaged] == [model]
    with pytest.raises(VaegapsError, match=rf"^{model} is damaged \(not a whole torch file\); rebuild it: "
                                           rf"snakemake --cores 1 --force {model}$"):
        check_damage(damaged, cli_mode(["--cores", "2", "results/table2.csv", "--configfile", "c.yaml"]))
    for runs in (["--force", str(model), "--configfile", "c.yaml"], ["-F", "results/table2.csv"],
                 ["-R", str(model)], ["-n", "results/table2.csv"], ["--summary"], ["--lint"],
                 ["--report", "r.html"], ["--unlock"], ["--touch", "all"]):
        check_damage(damaged, cli_mode(runs))  # no error
    assert cli_mode(["--nolock", "all"]).lock_free and not cli_mode(["--report", "r.html"]).lock_free
    assert cli_mode(["--nolock", "all"]).runs_jobs and cli_mode(["-f", "all"]).rebuilds("all")

    _truncate(ckpt)
    model.unlink()  # training would resume from the damaged checkpoint: it stops the run
    with pytest.raises(VaegapsError, match=f"^{ckpt} is damaged .*; move it aside and rerun: mv {ckpt} {ckpt}.damaged && "):
        check_damage(damaged_files("results"), cli_mode(["all"]))
    save_torch({"w": torch.ones(1000)}, trained)  # its settings' training finished: a warning only
    capsys.readouterr()
    check_damage(damaged_files("results"), cli_mode(["all"]))
    assert capsys.readouterr().err.strip().endswith(
        f"; its model is finished without it; move it aside: mv {ckpt} {ckpt}.damaged")


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


@pytest.fixture
def workflow_hints():
    """The pipeline layer's hints registered, as every stage and the preflight register them (the
    library's own put back afterwards)."""
    from vaegaps.errors import set_file_hints
    from vaegaps.pipeline.rebuild import register

    previous = register()
    yield
    set_file_hints(previous)


def test_load_torch_names_the_exact_rebuild_command(tmp_path, monkeypatch, workflow_hints):
    """In a workflow run (its hints registered) the library's loader names the exact command:
    missing, damaged, a snapshot (its model's), a training checkpoint (moved aside)."""
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
    with pytest.raises(VaegapsError, match=rf"^missing file {trained}; run the stage that writes it first: "
                                           rf"snakemake --cores 1 {trained}$"):
        load_torch(trained)
    monkeypatch.setenv("VAEGAPS_SNAKEMAKE", "snakemake --cores 1 --configfile p.yaml")
    with pytest.raises(VaegapsError, match=r"rebuild it: snakemake --cores 1 --configfile p.yaml --force"):
        load_torch(model)


def test_load_split_of_a_damaged_data_file_is_one_line(tmp_path, monkeypatch, workflow_hints):
    from vaegaps.data import image_shape, load_split

    monkeypatch.delenv("VAEGAPS_SNAKEMAKE", raising=False)
    path = tmp_path / "digits.parquet"
    _dataset(path, 5)
    _truncate(path)
    for read in (lambda: load_split(path, "train"), lambda: image_shape(path)):
        with pytest.raises(VaegapsError) as e:
            read()
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{path} is damaged") and msg.endswith(f"--force {path}")
    missing = tmp_path / "fashion_mnist.parquet"
    with pytest.raises(VaegapsError, match=rf"^missing dataset file {missing}; run the prepare_dataset stage first: "
                                           rf"snakemake --cores 1 {missing}$"):
        load_split(missing, "train")


def test_the_library_alone_names_no_command(tmp_path, monkeypatch):
    """Outside a workflow (no hints registered) the library's errors of a missing or damaged file
    say what to do in its own words, naming no tool; a stage registers the workflow's hints while it
    runs and puts the library's back after it."""
    from vaegaps.data import load_split
    from vaegaps.errors import file_hints
    from vaegaps.pipeline.rebuild import WorkflowHints

    monkeypatch.setenv("VAEGAPS_SNAKEMAKE", "snakemake --cores 1 --configfile p.yaml")  # no effect here
    model, data = tmp_path / "model.pt", tmp_path / "digits.parquet"
    reads = (lambda: load_torch(model), lambda: load_split(data, "train"))

    def error(read) -> str:
        with pytest.raises(VaegapsError) as e:
            read()
        msg = str(e.value)
        assert "snakemake" not in msg.lower() and "\n" not in msg, msg
        return msg

    assert [error(read) for read in reads] == [f"missing file {model}; run the stage that writes it first",
                                               f"missing dataset file {data}; run the prepare_dataset stage first"]
    save_torch({"w": torch.ones(1000)}, model)
    _truncate(model)
    _dataset(data, 5)
    _truncate(data)
    for read, start in zip(reads, (f"cannot read {model} (", f"{data} is damaged ("), strict=True):
        msg = error(read)
        assert msg.startswith(start) and msg.endswith("); move it aside and rerun the stage that writes it"), msg
    assert type(file_hints()) is not WorkflowHints

    # a stage's hints hold inside it only, however it ends
    monkeypatch.chdir(tmp_path)  # no .snakemake/ here: the stage takes no run lock
    job = SimpleNamespace(log=[str(tmp_path / "job.log")], threads=1, config={})
    with stage(job):
        assert isinstance(file_hints(), WorkflowHints)
        with pytest.raises(VaegapsError, match=rf"rebuild it: snakemake --cores 1 --configfile p.yaml --force {model}$"):
            load_torch(model)
    assert type(file_hints()) is not WorkflowHints
    with pytest.raises(SystemExit, match=rf"^error: cannot read {model} .*; rebuild it: snakemake .* --force {model}$"):
        with stage(job):
            load_torch(model)
    assert type(file_hints()) is not WorkflowHints


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


@pytest.mark.slow
def test_read_only_results_folder_stops_the_run_in_one_line(small_tmpfs, tmp_path):
    """A user's `results:` on a read-only disk: the run stops with one line before any job (it
    used to be Snakemake's report of the onstart hook's exception, with 4 `File "…"` lines)."""
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    results = small_tmpfs / "results"
    out = snakemake(tmp_path, f"{results}/data/digits.parquet", "--config", f"results={results}", check=False)
    assert_one_line_error(out, f"cannot write {results}/.config.resolved.pending.yaml: read-only file system: set "
                               "results: to a writable folder")
    assert not (tmp_path / "results").exists() and not results.exists()


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


def test_a_job_error_shows_its_traceback_only_when_asked(tmp_path, monkeypatch, capsys):
    """A stage's VaegapsError is the line `error: MSG`; VAEGAPS_TRACEBACK=1 adds the traceback above it."""
    monkeypatch.chdir(tmp_path)
    sm = SimpleNamespace(log=[str(tmp_path / "stage.log")], threads=1, config={})
    for env, shown in (("0", False), ("1", True)):
        monkeypatch.setenv("VAEGAPS_TRACEBACK", env)
        with pytest.raises(SystemExit) as e:
            with stage(sm):
                raise VaegapsError("lower x")
        assert e.value.code == "error: lower x"
        assert ("Traceback" in capsys.readouterr().err) is shown


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


@pytest.mark.slow
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
