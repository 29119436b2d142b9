"""What the Snakefile checks before the DAG is built, in the main Snakemake process only (cluster
jobs parse the Snakefile too). No torch: it runs at every parse. Only the Snakefile imports it,
so it is no stage's code input.

* Stale locks: Snakemake's lock files left by a killed run are removed, never a live run's
  (vaegaps.recovery).
* Damaged files: a data Parquet, model or training checkpoint that cannot be read is named with
  the command that rebuilds it, once per run, before any job fails on it.
* Evaluation sizes: an evaluation set larger than its split is an error naming the key to lower,
  raised before any training or evaluation (never a silently smaller set).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

from .errors import VaegapsError
from .recovery import COMMAND_ENV, RUN_LOCK, claim_run, command_line, damaged_message


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


def damaged_files(results) -> list[str]:
    """One line per damaged data file, model or training checkpoint under `results`."""
    res = Path(results)
    files = [*sorted(res.glob("data/*.parquet")), *sorted(res.glob("models/*/*/*/model.pt")),
             *sorted(res.glob("trained/*/*/*/*/model.pt")), *sorted(res.glob("resume/*/*/*/train/*/train.ckpt"))]
    return [damaged_message(f, why) for f in files if (why := damage(f)) is not None]


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
    from .datasets import DATASETS

    spec = DATASETS.get(dataset)
    return dict(spec.splits) if spec else None


def evaluation_sets(config: dict) -> list[tuple[str, str, int, str]]:
    """(dataset, split, n_points, config key) of every evaluation set the study takes."""
    from .config import evaluation_config, figure2_config

    exp = config.get("experiments", {})
    datasets = list(config.get("datasets", [])) + list(exp.get("variant_tables", {}).get("datasets", []))
    datasets += [exp[e]["dataset"] for e in ("flows_amortization", "decoder_capacity") if e in exp]
    sets = []
    for d in dict.fromkeys(datasets):
        ev = evaluation_config(config, d)
        own = config.get("dataset_overrides", {}).get(d, {}).get("evaluation", {}).get("n_points")
        key = f"dataset_overrides.{d}.evaluation.n_points" if own is not None else "evaluation.n_points"
        sets.append((d, ev["split"], ev["n_points"], key))
    if "over_training" in exp:
        ot = exp["over_training"]
        sets += [(ot["dataset"], s, ot["n_points"], "experiments.over_training.n_points") for s in ("train", "valid")]
    if "figure2" in exp:
        f2 = figure2_config(config)
        sets.append((f2["dataset"], f2["split"], f2["n_points"], "experiments.figure2.n_points"))
    return sets


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

def preflight(config: dict, results, configfiles=(), dryrun: bool = False, workdir=".") -> None:
    """Everything above, in the main Snakemake process before the DAG is built. A dry run
    changes nothing: it only reports."""
    os.environ[COMMAND_ENV] = command_line(configfiles)
    check_sizes(config, results)
    for line in damaged_files(results):
        print(f"vaegaps: warning: {line}", file=sys.stderr)
    if dryrun:
        return
    removed = claim_run(workdir)
    if removed:
        print(f"vaegaps: removed {len(removed)} stale Snakemake lock file(s) left by a killed run "
              f"(no live run holds {RUN_LOCK})", file=sys.stderr)
