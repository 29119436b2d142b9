"""Snakemake stage: Table 3 (variant models) from their per-datapoint gaps."""
import pandas as pd

from vaegaps.io import atomic_path
from vaegaps.stage import stage
from vaegaps.tables import summary_table

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    frames = {tuple(key): pd.read_parquet(path) for key, path in zip(sm.params.models, sm.input)}
    table = summary_table(frames, ("dataset", "variant", "trained_family"))
    with atomic_path(sm.output.csv) as tmp:
        table.to_csv(tmp, index=False)
