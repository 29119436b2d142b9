"""Recovering from kills, in the jobs and at parse time: the run lock that tells a killed run's
stale Snakemake locks from a live run's (the one-line hints that name the command rebuilding a
damaged file are in vaegaps.pipeline.rebuild). Standard library only: every stage imports it
(through vaegaps.pipeline.stage).

Snakemake refuses to run ("Directory cannot be locked") while .snakemake/locks/ holds lock files
that name its outputs, and a run killed with kill -9 never removes its own. Every live vaegaps
run, its main process and each of its jobs, holds a shared flock on .snakemake/vaegaps.run.lock,
which the kernel drops when the process dies, however it dies. A new run (vaegaps.pipeline.preflight) that
gets that lock exclusively, and sees no job of this folder still starting up (a job takes the lock
only after its imports), knows that no live run uses this folder: it removes the lock files before
Snakemake reads them. Otherwise it stops with one line naming the live processes: never
Snakemake's advice to --unlock, which would let a second run write the same files.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from ..errors import VaegapsError

try:
    import fcntl
except ImportError:  # not POSIX: no stale-lock removal, Snakemake's own behaviour
    fcntl = None

RUN_LOCK = Path(".snakemake") / "vaegaps.run.lock"
CLAIM_LOCK = Path(".snakemake") / "vaegaps.claim.lock"  # one claim at a time (claim_run)
SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"
SCRIPTS = Path(".snakemake") / "scripts"  # where Snakemake writes the script each job runs
_HELD: dict[str, object] = {}  # lock files kept open for the life of the process


# ----------------------------------------------------------------------------- stale locks

def _flock(f, op: int, timeout: float) -> bool | None:
    """flock(op) without blocking, retried for `timeout` seconds: True when acquired, False when
    another process holds it, None when the file system has no flock (then nothing is checked nor
    removed: Snakemake's own behaviour)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, op | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        except OSError:
            return None


def _open_run_lock(workdir, create: bool):
    path = Path(workdir) / RUN_LOCK
    key = str(path.resolve())
    if fcntl is None or key in _HELD or not (create or path.parent.is_dir()):
        return None, key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+"), key  # readable too: NFS emulates a shared flock by a read lock
    except OSError:  # a read-only folder: Snakemake reports it itself
        return None, key


class LiveRun(VaegapsError):
    """Another run, or a job of a killed one, is alive in this folder."""


@contextlib.contextmanager
def _claiming(workdir):
    """Serialise claims: claim_run's exclusive-to-shared conversion unlocks in between, when a
    second run starting at that instant would otherwise find the folder free too."""
    try:
        f = open(Path(workdir) / CLAIM_LOCK, "a+")
    except OSError:
        yield
        return
    with f:
        _flock(f, fcntl.LOCK_EX, timeout=30)
        yield


def claim_run(workdir=".") -> list[Path]:
    """Main process: raise LiveRun (one line naming the live processes) while another run, or a job
    of a killed one, lives in this folder; else remove Snakemake's lock files (they are stale) and
    hold the run lock shared for the life of this process. Returns the files removed."""
    f, key = _open_run_lock(workdir, create=True)
    if f is None:
        return []
    with _claiming(workdir):
        free = _flock(f, fcntl.LOCK_EX, timeout=0)
        if free is None:
            f.close()
            return []
        if not free or job_processes(workdir):
            f.close()
            raise LiveRun(live_run_message(workdir))
        removed = []
        # This process only parses the Snakefile yet: none of these files is its own.
        for lock in sorted((Path(workdir) / SNAKEMAKE_LOCKS).glob("*.lock")):
            try:
                lock.unlink()
                removed.append(lock)
            except FileNotFoundError:
                pass
        # Shared from now on, like every job of this run (only jobs, which never block on it, can
        # take the lock while this claim lasts).
        if _flock(f, fcntl.LOCK_SH, timeout=30):
            _HELD[key] = f
        else:
            f.close()
    return removed


# ----------------------------------------------------------------------------- live processes

def _cmdline(pid: int) -> list[str]:
    try:
        return [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def job_processes(workdir=".") -> dict[int, str]:
    """{PID: rule} of the running Snakemake jobs of this folder, from their command lines (each runs
    a script under .snakemake/scripts/, named tmpXXXX.RULE.py): alive from their first instant,
    unlike the run lock a job takes after its imports. Linux only ({} without /proc)."""
    roots = {os.path.abspath(workdir), str(Path(workdir).resolve())}
    prefixes = tuple(os.path.join(r, SCRIPTS, "") for r in roots)
    jobs = {}
    for proc in Path("/proc").glob("[0-9]*"):
        script = next((a for a in _cmdline(int(proc.name)) if a.startswith(prefixes)), None)
        if script is not None:
            parts = Path(script).name.split(".")
            jobs[int(proc.name)] = parts[1] if len(parts) == 3 else "job"
    jobs.pop(os.getpid(), None)
    return jobs


def lock_holders(workdir=".") -> list[int]:
    """PIDs of the processes that hold the run lock, from /proc/locks (Linux only; [] elsewhere)."""
    try:
        st = (Path(workdir) / RUN_LOCK).stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    pids, ours = [], (st.st_ino, os.major(st.st_dev), os.minor(st.st_dev))
    for line in table.splitlines():
        f = line.split()  # "1: FLOCK ADVISORY READ 4589 fe:00:2147745 0 EOF"; "->" marks a waiter
        if len(f) > 5 and f[1] == "FLOCK" and f[5].count(":") == 2:
            major, minor, inode = f[5].split(":")
            if (int(inode), int(major, 16), int(minor, 16)) == ours:
                pids.append(int(f[4]))
    return sorted(set(pids) - {os.getpid()})


def live_run_message(workdir=".") -> str:
    """One line: which processes of another run live in this folder, and what to do."""
    jobs = job_processes(workdir)
    others = [p for p in lock_holders(workdir) if p not in jobs]
    if not jobs and not others:  # e.g. jobs on other nodes of a cluster, over a shared file system
        return (f"another run holds this folder ({RUN_LOCK} is locked by a process this machine "
                "cannot see, e.g. a cluster job): wait for it to finish, or end it, then run the "
                "same command again")
    names = {p: "snakemake" if any("snakemake" in a for a in _cmdline(p)) else "process" for p in others}
    listed = [f"{n} (PID {p})" for p, n in names.items()]
    listed += [f"job {r} (PID {p})" for p, r in sorted(jobs.items())]
    pids = " ".join(map(str, [*others, *sorted(jobs)]))
    if "snakemake" in names.values():
        what, it = "a live run holds this folder", "it"
    else:  # its Snakemake died (kill -9) but these jobs still write its outputs
        what, it = "jobs of a killed run are still running in this folder", "them"
    return (f"{what}: {', '.join(listed)}; wait for {it} to finish, or end {it} with `kill {pids}`, "
            "then run the same command again")


def hold_run_lock(workdir=".") -> bool:
    """Job process: hold the run lock shared while the job runs, so that a run started after
    this job's Snakemake was killed does not remove the locks of a job still writing. Only in a
    Snakemake working folder (one with .snakemake/)."""
    f, key = _open_run_lock(workdir, create=False)
    if f is None:
        return key in _HELD
    if _flock(f, fcntl.LOCK_SH, timeout=30):
        _HELD[key] = f
        return True
    f.close()
    return False
