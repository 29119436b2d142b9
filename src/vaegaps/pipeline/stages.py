"""The stage drivers that read a Snakemake job (its `snakemake` object: inputs, params, wildcards,
config) and call the library: one estimator on part {part} of {parts} of a model source, BDMC on a
user model's simulated data, a user model's gaps, the user refinement table. Each writes through
its job's `Stage` (vaegaps.pipeline.stage), which records the study's settings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .stage import Stage, part_of


def stage_estimate(sm, job: Stage) -> None:
    """The Snakemake stage of every estimator rule (workflow/rules/evaluate.smk): the model source
    `params.source` names (kind 'eval' or 'user', see `source_of` there), estimator
    `params.estimator`, part {part} of {parts}, written with its metadata (gathered later)."""
    from .sources import BuiltinSource, UserSource, run_estimator

    spec = sm.params.source
    if spec["kind"] == "eval":
        source = BuiltinSource(sm.input.model, sm.input.data, spec["evaluation"], spec["family"], sm.config["device"])
    else:
        source = UserSource(spec["settings"], sm.input.data, spec["name"])
    df, meta = run_estimator(source, sm.params.estimator, sm.config["seed"], part_of(sm), sm.params.resume,
                             sm.input.get("ffg") or None)
    job.write_parquet(df, sm.output[0], meta)


def stage_bdmc(sm, job: Stage) -> None:
    """Part {part} of {parts} of BDMC on data simulated from a user model."""
    from ..config import ais_procedure
    from ..evaluate import bdmc_validation
    from .scatter import part_bounds
    from .sources import UserSource

    source = UserSource(sm.params.settings, sm.input.data)
    user, _, _ = source.load()
    s, part = source.settings, part_of(sm)
    ais = s["evaluation"]["ais"]
    with source.context(user):
        df = bdmc_validation(user, s["bdmc_points"], ais, sm.config["seed"], user.device,
                             part_bounds(s["bdmc_points"], *part))
    job.write_parquet(df, sm.output[0], {**source.provenance("bdmc", sm.config["seed"]), "ais": ais,
                                         "procedure": ais_procedure(ais), "part": part[0], "parts": part[1]})


def stage_gaps(sm, job: Stage) -> None:
    """The per-datapoint gaps of a user model from the parts of its estimates (gathered here,
    checked to share their settings as `gather_parts` does)."""
    from ..tables import gap_table
    from ..user_tables import amortization_note
    from .scatter import gather_parts

    amortized, meta = gather_parts(list(sm.input.amortized))
    by_stage: dict[str, list[str]] = {}
    for p in sm.input.local:
        by_stage.setdefault(Path(p).parent.name.removeprefix("local_"), []).append(p)
    local = {fam: gather_parts(paths)[0] for fam, paths in by_stage.items()}
    df = gap_table(amortized, local, gather_parts(list(sm.input.ais))[0], meta["encoder_family"], meta["qstar_family"])
    job.write_parquet(df, sm.output[0], {"name": sm.wildcards.name, "settings": sm.params.settings,
                                         "encoder_family": meta["encoder_family"],
                                         "qstar_family": meta["qstar_family"],
                                         "amortization_gap_note": amortization_note(meta["encoder_family"],
                                                                                    meta["qstar_family"])})


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
