"""A real single-node SLURM cluster for the tests: munged, MariaDB, slurmdbd, slurmctld and slurmd
from Debian's packages, each started in the foreground under one temporary directory and stopped
(with every job it ran) afterwards. Nothing is written outside that directory except the packages.

`python tests/workflow/slurm_cluster.py DIR` starts one by hand and prints the SLURM_CONF to export.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "slurmdbd", "munge", "mariadb-server", "mariadb-client"]
PROGRAMS = ["slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db",
            "mariadb", "sbatch", "sacct", "sacctmgr", "sinfo"]
CLUSTER, ACCOUNT, PARTITION = "vaegaps", "vaegaps", "debug"


class SlurmError(RuntimeError):
    """SLURM could not be installed or started; the message says which step and why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], step: str, **kwargs) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if r.returncode != 0:
        raise SlurmError(f"{step} failed ({' '.join(cmd)}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r.stdout


def ensure_installed() -> None:
    """Install Debian's SLURM, munge and MariaDB when any program is missing (needs root)."""
    if all(shutil.which(p) for p in PROGRAMS):
        return
    if os.geteuid() != 0:
        raise SlurmError(f"SLURM programs missing ({', '.join(p for p in PROGRAMS if not shutil.which(p))}) "
                         f"and not root: run `apt-get install {' '.join(PACKAGES)}` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        _run(["apt-get", "update", "-q"], "apt-get update", env=env)
        _run(install, "apt-get install", env=env)


class SlurmCluster:
    """start() brings the daemons up in order and registers an account; stop() undoes it."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.ports = {k: _free_port() for k in ("db", "dbd", "ctld", "slurmd")}
        self.conf = self.root / "etc" / "slurm.conf"
        # the jobstep plugin drops SLURM_CONF before its nested srun, which then reads the default
        # path: a link there to self.conf (a real cluster's file there is never touched)
        self.default_conf = Path("/etc/slurm/slurm.conf")
        # SLURM 22.05's clients ignore AuthInfo=socket= on some paths: use munge's default socket
        self.munge_socket = Path("/run/munge/munge.socket.2")
        self.db_socket = self.root / "mysql.sock"
        self.db_password = secrets.token_hex(8)

    @property
    def env(self) -> dict[str, str]:
        """The environment a client (sbatch, sacct, Snakemake) needs to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        self.procs.append((name, proc))

    def _wait_for(self, name: str, ready, log: str, timeout: float = 60.0) -> None:
        """Poll ready() until it holds; fail at once, with the log's tail, if daemon `name` exits."""
        def tail(file):
            path = self.root / "log" / file
            return path.read_text(errors="replace")[-2000:] if path.exists() else ""

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n, p in self.procs:
                if n == name and p.poll() is not None:
                    raise SlurmError(f"{name} exited with {p.returncode}: {tail(f'{name}.out')}")
            if ready():
                return
            time.sleep(0.5)
        raise SlurmError(f"{name} not ready after {timeout:.0f} s. {tail(log)}")

    def start(self) -> SlurmCluster:
        ensure_installed()
        for d in ("etc", "log", "munge", "state", "spool", "db"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        try:
            self._start_munge()
            self._start_mariadb()
            self._write_configs()
            self._start_slurmdbd()
            self._register_account()
            self._start_slurm()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        """Use a munged already serving the default socket (one key for every daemon here),
        else start one with a fresh key."""
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
            return
        self.munge_socket.parent.mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(128))
        os.chmod(key, 0o600)
        m = self.root / "munge"
        self._start("munged", ["munged", "-F", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}", f"--pid-file={m / 'munged.pid'}",
                               f"--seed-file={m / 'munged.seed'}", f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait_for("munged", self.munge_socket.exists, "munged.out")

    def _start_mariadb(self) -> None:
        db = self.root / "db"
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root",
              "--auth-root-authentication-method=socket", "--skip-test-db"], "mariadb-install-db")
        self._start("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={db}", "--user=root",
                                 f"--socket={self.db_socket}", f"--port={self.ports['db']}",
                                 "--bind-address=127.0.0.1", "--skip-name-resolve",
                                 f"--pid-file={self.root / 'mysqld.pid'}"])
        self._wait_for("mariadbd", self.db_socket.exists, "mariadbd.out")
        sql = (f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}'; "
               "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")
        _run(["mariadb", "--no-defaults", f"--socket={self.db_socket}", "-uroot", "-e", sql],
             "creating the accounting database user")

    def _write_configs(self) -> None:
        r, cpus = self.root, os.cpu_count() or 1
        # advertise at least 64 GB, so jobs asking the rules' mem_mb fit on small CI machines too
        mem_mb = max(65536, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
        auth = "AuthType=auth/munge\n"
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdPort={self.ports['dbd']}\nSlurmUser=root\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={self.ports['db']}\nStorageUser=slurm\nStoragePass={self.db_password}\n"
            f"StorageLoc=slurm_acct_db\nPidFile={r / 'slurmdbd.pid'}\nLogFile={r / 'log' / 'slurmdbd.log'}\n")
        os.chmod(dbd, 0o600)
        self.conf.write_text(
            f"ClusterName={CLUSTER}\nSlurmctldHost=localhost\nSlurmUser=root\n{auth}"
            f"SlurmctldPort={self.ports['ctld']}\nSlurmdPort={self.ports['slurmd']}\n"
            f"StateSaveLocation={r / 'state'}\nSlurmdSpoolDir={r / 'spool'}\n"
            f"SlurmctldPidFile={r / 'slurmctld.pid'}\nSlurmdPidFile={r / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}\nSlurmdLogFile={r / 'log' / 'slurmd.log'}\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            # no cgroups in a container: track processes by parent id, bind no tasks
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "JobAcctGatherType=jobacct_gather/none\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_CPU\nReturnToService=2\nSchedulerType=sched/backfill\n"
            "SlurmdParameters=config_overrides\nAccountingStoreFlags=job_comment\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={self.ports['dbd']}\nJobCompType=jobcomp/none\n"
            f"NodeName=localhost NodeHostname=localhost CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n")
        if self.default_conf.exists() and not self.default_conf.is_symlink():
            raise SlurmError(f"{self.default_conf} exists: this machine has a real SLURM config, "
                             "which the test cluster will not replace")
        self.default_conf.parent.mkdir(parents=True, exist_ok=True)
        self.default_conf.unlink(missing_ok=True)
        self.default_conf.symlink_to(self.conf)

    def _start_slurmdbd(self) -> None:
        self._start("slurmdbd", ["slurmdbd", "-D"])

        self._wait_for("slurmdbd", lambda: subprocess.run(
            ["sacctmgr", "-n", "list", "cluster"], env=self.env, capture_output=True).returncode == 0,
            "slurmdbd.log")

    def _register_account(self) -> None:
        for args in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, f"cluster={CLUSTER}"],
                     ["add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}"]):
            _run(["sacctmgr", "-i", *args], f"sacctmgr {' '.join(args)}", env=self.env)

    def _start_slurm(self) -> None:
        self._start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait_for("slurmctld", lambda: "UP" in subprocess.run(
            ["scontrol", "ping"], env=self.env, capture_output=True, text=True).stdout, "slurmctld.log")
        self._start("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])

        self._wait_for("slurmd", lambda: subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True
        ).stdout.strip() in ("idle", "mix", "alloc"), "slurmd.log")

    def jobs(self) -> list[dict[str, str]]:
        """Every job the accounting database holds for this cluster, as sacct reports it."""
        fields = ["JobID", "JobName", "State", "ExitCode", "Comment", "Partition", "Account",
                  "ReqMem", "Timelimit", "ReqCPUS"]
        out = _run(["sacct", "-a", "-X", "-n", "-P", "-S", "2000-01-01", "-o", ",".join(fields)],
                   "sacct", env=self.env)
        return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]

    def stop(self) -> None:
        """Cancel every job, stop the daemons in reverse order and kill what they left behind."""
        if shutil.which("scancel") and self.conf.exists():
            subprocess.run(["scancel", "-u", "root"], env=self.env, capture_output=True)
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        # job steps run in their own sessions under slurmstepd: end any that outlived slurmd
        subprocess.run(["pkill", "-KILL", "-f", f"slurmstepd.*{self.root}"], capture_output=True)
        self.procs.clear()
        if self.default_conf.is_symlink() and self.default_conf.resolve() == self.conf:
            self.default_conf.unlink()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # kill, like Ctrl-C, stops the cluster
    cluster = SlurmCluster(sys.argv[1]).start()
    print(f"export SLURM_CONF={cluster.conf}  # Ctrl-C stops the cluster", flush=True)
    try:
        signal.pause()
    finally:
        cluster.stop()
