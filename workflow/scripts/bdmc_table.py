"""Snakemake stage: the BDMC table (lower, upper bound and gap per model, AIS setting and the epoch
of the weights certified), each row naming the exact AIS procedure it certifies."""
import pandas as pd

from vaegaps.config import ais_procedure
from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.tables import summary_table

with stage(snakemake):
    sm = snakemake
    frames = {tuple(key): pd.read_parquet(path) for key, path in zip(sm.params.models, sm.input.bdmc, strict=True)}
    ids = ("dataset", "variant", "family", "setting", "epoch")  # epoch: of the weights certified
    table = summary_table(frames, ids, ["lower", "upper", "gap"])
    settings = [sm.params.settings[f"{d}/{s}"] for d, s in zip(table["dataset"], table["setting"])]
    table.insert(len(ids) + 1, "procedure", [ais_procedure(a) for a in settings])
    for key in ("n_chains", "n_intermediate", "schedule", "leapfrog_steps", "tuning"):
        table[key] = [a[key] for a in settings]
    write_csv(table, sm.output.csv)
