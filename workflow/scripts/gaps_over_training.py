"""Snakemake stage: the over-training snapshots' gaps, per datapoint and as means per split."""
import pandas as pd

from vaegaps.io import write_csv, write_parquet
from vaegaps.stage import stage
from vaegaps.tables import long_frame, over_training_summary

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    frames = {(sm.params.dataset, name, int(epoch)): pd.read_parquet(path)
              for (name, _, epoch), path in zip(sm.params.models, sm.input.points, strict=True)}
    write_parquet(long_frame(frames, ("dataset", "model", "epoch")), sm.output.per_datapoint,
                  {"settings": sm.params.settings})
    write_csv(over_training_summary(frames), sm.output.csv)
