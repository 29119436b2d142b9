"""Snakemake stage: the paper's claims (docs/method.md §7) tested on the per-datapoint outputs.

Inputs:
  gaps                list of per-model gaps Parquets (one per model of Tables 2 and 3)
  flows_amortization  per-datapoint frozen-decoder experiment (optional)
  decoder_capacity    per-datapoint decoder-capacity experiment (optional)
  over_training       per-datapoint gaps over training (optional)
  figure2_bounds      Figure 2 bounds Parquet (optional)
  figure2_grid        Figure 2 grid densities Parquet (optional)
  bdmc                BDMC validation CSV (optional; without it no log p̂ is certified)
A check whose input is absent is reported as "not evaluated". Other inputs (e.g. code=...) are ignored.
Params: gap_keys, one [dataset, variant, family] per gaps file, in the same order;
        figure2_dataset (optional), the label of Figure 2 frames that have no dataset column.
Outputs: csv (required), md (optional, a Markdown rendering).
"""
from vaegaps.claims import NAMED_INPUTS, load_inputs, write_claims
from vaegaps.pipeline.stage import stage

with stage(snakemake):
    sm = snakemake
    gap_paths = getattr(sm.input, "gaps", [])
    gap_paths = [gap_paths] if isinstance(gap_paths, str) else list(gap_paths)
    gap_keys = list(getattr(sm.params, "gap_keys", []))
    paths = {name: getattr(sm.input, name) for name in NAMED_INPUTS if hasattr(sm.input, name)}
    kwargs = {}
    if hasattr(sm.params, "figure2_dataset"):
        kwargs["figure2_dataset"] = str(sm.params.figure2_dataset)
    write_claims(load_inputs(gap_paths, gap_keys, paths), sm.output.csv, getattr(sm.output, "md", None),
                 **kwargs)
