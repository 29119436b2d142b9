"""Snakemake stage: results/refinement.csv, one row per model and step count k: the mean ELBO
after k refinement steps and the fraction of the amortization gap closed (docs/method.md §12)."""
import pandas as pd

from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.tables import REFINEMENT_COLUMNS, refinement_table

with stage(snakemake):
    sm = snakemake
    rows = [refinement_table(pd.read_parquet(c), pd.read_parquet(a), pd.read_parquet(q)).assign(
                dataset=d, variant=v, family=f)
            for (d, v, f), c, a, q in zip(sm.params.models, sm.input.curves, sm.input.amortized, sm.input.qstar,
                                          strict=True)]
    write_csv(pd.concat(rows, ignore_index=True)[["dataset", "variant", "family", *REFINEMENT_COLUMNS]], sm.output.csv)
