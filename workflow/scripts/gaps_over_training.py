"""Snakemake stage: the over-training snapshots' gaps, per datapoint and as means per split."""
import pandas as pd

from vaegaps.config import split_ref
from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.tables import long_frame, over_training_summary

with stage(snakemake) as job:
    sm = snakemake
    frames = {(sm.params.dataset, name, *split_ref(ref), int(epoch)): pd.read_parquet(path)
              for (name, ref, epoch), path in zip(sm.params.models, sm.input.points, strict=True)}
    # per datapoint, each experiment name (standard, flow, ...) with its model (variant, family):
    # with the epoch, the key of the snapshot's BDMC certificate
    job.write_parquet(long_frame(frames, ("dataset", "model", "variant", "family", "epoch")), sm.output.per_datapoint,
                  {"settings": sm.params.settings})
    write_csv(over_training_summary({(d, m, e): df for (d, m, _, _, e), df in frames.items()}), sm.output.csv)
