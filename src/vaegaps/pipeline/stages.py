"""The stage drivers that read a Snakemake job (its `snakemake` object: inputs, params, wildcards,
config) and call the library: one estimator on part {part} of {parts} of a model source, BDMC on
data simulated from a model source, a model source's gaps, the user refinement table. Each writes
through its job's `Stage` (vaegaps.pipeline.stage), which records the study's settings."""

from __future__ import annotations

import pandas as pd

from .stage import Stage, part_of


def _source(sm, model_path: str | None = None):
    """The model source a job's `params.source` names (kind 'eval' or 'user', see `source_of` in
    workflow/rules/common.smk), on its inputs: a built-in model's weights (`model_path`, by default
    its input `model`) and data, a user model's data."""
    from .sources import BuiltinSource, UserSource

    spec = sm.params.source
    if spec["kind"] == "eval":
        return BuiltinSource(model_path or sm.input.model, sm.input.get("data"), spec["evaluation"], spec["family"],
                             sm.config["device"])
    return UserSource(spec["settings"], sm.input.data, spec["name"])


def stage_estimate(sm, job: Stage) -> None:
    """The Snakemake stage of every estimator rule (workflow/rules/evaluate.smk): the model source
    `params.source` names, estimator `params.estimator`, part {part} of {parts}, written with its
    metadata (gathered later)."""
    from .sources import run_estimator

    df, meta = run_estimator(_source(sm), sm.params.estimator, sm.config["seed"], part_of(sm), sm.params.resume,
                             sm.input.get("ffg") or None)
    job.write_parquet(df, sm.output[0], meta)


def stage_bdmc(sm, job: Stage) -> None:
    """Part {part} of {parts} of BDMC on data simulated from a model source (rule bdmc): the
    weights, AIS setting and number of points of `params.run`."""
    from .sources import run_bdmc

    run = sm.params.run
    df, meta = run_bdmc(_source(sm, run.get("weights")), run, sm.config["seed"], part_of(sm))
    job.write_parquet(df, sm.output[0], meta)


def stage_gaps(sm, job: Stage) -> None:
    """The per-datapoint gaps of a model source (rule gaps) from its gathered estimates, through
    `vaegaps.tables.gap_table`: a built-in model's with q* of the family it was trained with (the
    gaps Parquet's columns of README), a user model's with q* of its encoder's family (if known)
    and the columns of `vaegaps.measure`, each with its metadata."""
    from ..config import local_config
    from ..io import read_metadata
    from ..tables import gap_table
    from ..user_tables import amortization_note

    spec = sm.params.source
    read = {k: pd.read_parquet(sm.input[k]) for k in sm.input.keys() if k.startswith(("amortized", "local_", "ais"))}
    local = {k.removeprefix("local_"): df for k, df in read.items() if k.startswith("local_")}
    if spec["kind"] == "eval":
        family = spec["family"]
        df = gap_table(read["amortized"], local, read["ais"], family, family, extended=False)
        meta = {"dataset": spec["dataset"], "variant": spec["variant"], "trained_family": family,
                "model_config": sm.params.model_config, "evaluation": spec["evaluation"],
                "local": {f: local_config(spec["evaluation"]["local"], f) for f in local}}
    else:
        estimates = read_metadata(sm.input.amortized)
        encoder, qstar = estimates["encoder_family"], estimates["qstar_family"]
        df = gap_table(read["amortized"], local, read["ais"], encoder, qstar)
        meta = {"name": spec["name"], "settings": spec["settings"], "encoder_family": encoder, "qstar_family": qstar,
                "amortization_gap_note": amortization_note(encoder, qstar)}
    job.write_parquet(df, sm.output[0], meta)


def stage_refinement_table(sm, job: Stage) -> None:
    """results/user_refinement.csv: `refinement_summary` of every user model, named, with the
    family its q* and curve are in."""
    from ..io import read_metadata, write_csv
    from ..tables import REFINEMENT_COLUMNS
    from ..user_tables import refinement_summary

    rows = []
    for name, curve, gaps in zip(sm.params.names, sm.input.curves, sm.input.gaps, strict=True):
        family = read_metadata(gaps).get("qstar_family") or ""
        rows.append(refinement_summary(pd.read_parquet(curve), pd.read_parquet(gaps)).assign(name=name, family=family))
    columns = ["name", "family", *REFINEMENT_COLUMNS]
    rows = [r[columns] for r in rows if len(r)]
    write_csv(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns), sm.output.csv)
