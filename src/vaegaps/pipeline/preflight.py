"""What the Snakefile checks before the DAG is built, in the main Snakemake process only (cluster
jobs parse the Snakefile too). No torch: it runs at every parse. Only the Snakefile imports it,
so it is no stage's code input.

* Live runs and stale locks: while another run, or a job of a killed run, lives in this folder,
  the run stops with one line naming its processes; else Snakemake's lock files left by a killed
  run are removed (vaegaps.pipeline.recovery).
* Damaged files: a data Parquet, model or training checkpoint that cannot be read stops the run
  before any job starts or Snakemake deletes any output (it would rerun, after deleting their
  outputs, the jobs downstream of a truncated and so newer file), with one line naming it and the
  command that rebuilds it; that command itself, which forces the file, runs.
* Evaluation sizes: an evaluation set larger than its split is an error naming the key to lower,
  raised before any training or evaluation (never a silently smaller set).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

from ..errors import VaegapsError, damaged_message
from .rebuild import COMMAND_ENV, checkpoint_model, command_line, rebuild_hint, register
from .recovery import RUN_LOCK, LiveRun, claim_run

# ----------------------------------------------------------------------------- damaged files

def damage(path) -> str | None:
    """Why `path` cannot be read, or None. Cheap: a Parquet file's footer (truncation loses it, as
    it is written last), a torch file's zip directory (likewise at the end)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_schema(path)
        elif not zipfile.is_zipfile(path):
            return "not a whole torch file"
    except Exception as exc:  # noqa: BLE001 (any reason the footer does not read)
        return f"{type(exc).__name__}: {exc}"
    return None


def damaged_files(results) -> list[tuple[Path, str]]:
    """(file, why) of each damaged data file, model or training checkpoint under `results`, data
    files first (a model is rebuilt from them)."""
    res = Path(results)
    files = [*sorted(res.glob("data/*.parquet")), *sorted(res.glob("models/*/*/*/model.pt")),
             *sorted(res.glob("trained/*/*/*/*/model.pt")),
             *sorted(res.glob("resume/*/*/*/train/*/train.ckpt"))]
    return [(f, why) for f in files if (why := damage(f)) is not None]


def _read_now(path: Path) -> bool:
    """Whether a run may read `path` as it is: a training checkpoint only while its model is
    missing (training resumes from it); a finished model never needs it."""
    if path.name != "train.ckpt":
        return True
    return not checkpoint_model(path).exists()


def check_damage(damaged, mode) -> None:
    """Stop, naming the first damaged file a run may read and the command that rebuilds it, unless
    this run runs no job or rebuilds that file itself (the printed command forces it)."""
    stops = [(f, why) for f, why in damaged if _read_now(f) and not mode.rebuilds(f)]
    if stops and mode.runs_jobs:
        (first, why), more = stops[0], len(stops) - 1
        also = f"{more} more damaged file(s) named after it is rebuilt; " if more else ""
        raise VaegapsError(damaged_message(first, why, also + rebuild_hint(first)))
    for f, why in damaged:
        if mode.rebuilds(f):
            continue
        # no retraining for a checkpoint: its finished model does not need it
        hint = rebuild_hint(f) if _read_now(f) else (f"its model is finished without it; move it aside: "
                                                      f"mv {shlex.quote(str(f))} {shlex.quote(str(f))}.damaged")
        print(f"vaegaps: warning: {damaged_message(f, why, hint)}", file=sys.stderr)


# ----------------------------------------------------------------------------- command line

# Snakemake options with which no job runs and no output is deleted, and those with which it takes
# no lock.
NO_JOBS = ("dryrun", "lint", "list_rules", "list_target_rules", "dag", "rulegraph", "filegraph", "d3dag",
           "summary", "detailed_summary", "list_changes", "print_compilation", "unlock", "touch",
           "cleanup_metadata", "export_cwl", "containerize", "archive", "delete_all_output",
           "delete_temp_output", "generate_unit_tests", "conda_create_envs_only")
LOCK_FREE = ("dryrun", "lint", "list_rules", "list_target_rules", "dag", "rulegraph", "filegraph", "d3dag",
             "summary", "detailed_summary", "list_changes", "print_compilation", "nolock")


def cli_mode(argv=None) -> SimpleNamespace:
    """What this snakemake command line does, parsed as Snakemake parses it: runs_jobs, lock_free,
    rebuilds(path) (a forced target, or --forceall). Read only when it matters (a damaged file, a
    live run): building Snakemake's parser takes a moment. Another program's command line (the
    API) counts as a run of jobs that forces nothing."""
    mode = SimpleNamespace(runs_jobs=True, lock_free=False, rebuilds=lambda path: False)
    if argv is None:
        if "snakemake" not in Path(sys.argv[0]).as_posix():
            return mode
        argv = sys.argv[1:]
    try:
        from snakemake.cli import get_argument_parser

        with contextlib.redirect_stderr(io.StringIO()):
            args, _ = get_argument_parser().parse_known_args([str(a) for a in argv])
    except (Exception, SystemExit):  # noqa: BLE001 (not Snakemake's: the default above)
        return mode

    def on(name):
        value = getattr(args, name, None)
        return bool(value) and value != "none"

    report_only = on("report") and not on("report_after_run")
    forced = {os.path.abspath(t) for t in getattr(args, "targets", None) or () if on("force")}
    forced |= {os.path.abspath(t) for t in getattr(args, "forcerun", None) or ()}
    return SimpleNamespace(
        runs_jobs=not (report_only or any(on(n) for n in NO_JOBS)),
        lock_free=any(on(n) for n in LOCK_FREE),
        rebuilds=lambda path: on("forceall") or os.path.abspath(path) in forced)


# ----------------------------------------------------------------------------- evaluation sizes

def split_sizes(results, dataset: str) -> dict[str, int] | None:
    """{split: datapoints} of `dataset`: from its data file when whole, else the registry's."""
    path = Path(results) / "data" / f"{dataset}.parquet"
    if path.is_file() and damage(path) is None:
        import pyarrow.parquet as pq

        try:
            return dict(json.loads(pq.read_schema(path).metadata[b"vaegaps"])["splits"])
        except (KeyError, TypeError, ValueError):
            pass
    from ..datasets import DATASETS

    spec = DATASETS.get(dataset)
    return dict(spec.splits) if spec else None


def evaluation_sets(config: dict) -> list[tuple[str, str, int, str]]:
    """(dataset, split, n_points, config key) of every evaluation set the study takes: each
    dataset's own (Table 2's datasets, then those the experiments evaluate at their settings),
    then each experiment's own sets (src/vaegaps/pipeline/experiments.yaml, `sets`)."""
    from ..config import evaluation_config
    from .experiments import configured

    experiments = configured(config)
    datasets = list(config.get("datasets", [])) + [d for exp in experiments for d in exp.dataset_names(config)]
    sets = []
    for d in dict.fromkeys(datasets):
        ev = evaluation_config(config, d)
        own = config.get("dataset_overrides", {}).get(d, {}).get("evaluation", {}).get("n_points")
        key = f"dataset_overrides.{d}.evaluation.n_points" if own is not None else "evaluation.n_points"
        sets.append((d, ev["split"], ev["n_points"], key))
    return sets + [s for exp in experiments for s in exp.evaluation_sets(config)]


def check_sizes(config: dict, results) -> None:
    """An evaluation set larger than its split is an error naming the key to lower."""
    sizes: dict[str, dict | None] = {}
    for dataset, split, n, key in evaluation_sets(config):
        if dataset not in sizes:
            sizes[dataset] = split_sizes(results, dataset)
        have = (sizes[dataset] or {}).get(split)
        if have is not None and n > have:
            raise VaegapsError(f"{key} is {n} but the {split} split of {dataset} has {have} datapoints; "
                               f"lower {key} to {have} or less")


# ----------------------------------------------------------------------------- at parse time

def preflight(config, results, configfiles=(), dryrun: bool = False, workdir=".", argv=None) -> None:
    """Everything above, in the main Snakemake process before the DAG is built. A dry run
    changes nothing: it only reports. `argv`: Snakemake's command line (default sys.argv). From
    here on the library's errors of a missing or damaged file name this run's command."""
    os.environ[COMMAND_ENV] = command_line(configfiles)
    register()
    check_sizes(config, results)
    damaged = damaged_files(results)
    if dryrun:
        check_damage(damaged, SimpleNamespace(runs_jobs=False, rebuilds=lambda path: False))
        return
    mode = None
    try:
        removed = claim_run(workdir)
    except LiveRun:
        mode = cli_mode(argv)
        if not mode.lock_free:  # else Snakemake only warns, or ignores locks (--nolock)
            raise
        removed = []
    if removed:
        print(f"vaegaps: removed {len(removed)} stale Snakemake lock file(s) left by a killed run "
              f"(no live run holds {RUN_LOCK})", file=sys.stderr)
    if damaged:
        check_damage(damaged, mode or cli_mode(argv))
