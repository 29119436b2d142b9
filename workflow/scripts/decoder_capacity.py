"""Snakemake stage: gaps of FFG models with 0, 2 and 4 hidden decoder layers, as means and per datapoint."""
import pandas as pd

from vaegaps.config import split_ref
from vaegaps.io import write_csv
from vaegaps.pipeline.stage import stage
from vaegaps.tables import DECODER_COLUMNS, long_frame, summary_table, with_flow_approximation

with stage(snakemake) as job:
    sm = snakemake
    frames = {(sm.params.dataset, layers, *split_ref(ref)): with_flow_approximation(pd.read_parquet(path))
              for layers, ref, path in zip(sm.params.layers, sm.params.refs, sm.input.gaps, strict=True)}
    # the per-datapoint rows name each model (variant, family), the key of its BDMC certificate
    job.write_parquet(long_frame(frames, ("dataset", "decoder_layers", "variant", "family")), sm.output.per_datapoint)
    means = {(d, layers): df for (d, layers, _, _), df in frames.items()}
    write_csv(summary_table(means, ("dataset", "decoder_layers"), DECODER_COLUMNS), sm.output.csv)
