"""Snakemake stage: the over-training snapshots' gaps, mean and standard error per split."""
import pandas as pd

from vaegaps.io import atomic_path
from vaegaps.stage import stage
from vaegaps.tables import over_training_summary

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    frames = {(sm.params.dataset, name, int(epoch)): pd.read_parquet(path)
              for (name, _, epoch), path in zip(sm.params.models, sm.input)}
    with atomic_path(sm.output.csv) as tmp:
        over_training_summary(frames).to_csv(tmp, index=False)
