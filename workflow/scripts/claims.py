"""Snakemake stage: the paper's claims (PROTOCOL §7) read against the summary tables.

Named inputs (any subset; a claim whose input is absent is reported as "not evaluated"):
  table2              results/table2.csv
  table2_paired       results/table2_paired.csv (paired errors of L[q*_Flow] − L[q*_FFG], claim 3)
  table3              Table 3 CSV (variants: standard, large_encoder, no_annealing)
  flows_amortization  frozen-decoder experiment CSV
  decoder_capacity    decoder-capacity CSV (accepted; no §7 claim reads it)
  gaps_over_training  gaps-over-training CSV
  figure2_bounds      Figure 2 bounds Parquet (2-D latent model)
  bdmc                BDMC validation CSV
Other inputs (e.g. code=...) are ignored.
Outputs: csv (required), md (optional, a Markdown rendering).
Params (optional): figure2_dataset, the label of the Figure 2 rows when that table has no dataset column.
"""
from vaegaps.claims import TABLE_NAMES, load_tables, write_claims
from vaegaps.stage import stage

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    paths = {name: getattr(sm.input, name) for name in TABLE_NAMES if hasattr(sm.input, name)}
    kwargs = {}
    if hasattr(sm.params, "figure2_dataset"):
        kwargs["figure2_dataset"] = str(sm.params.figure2_dataset)
    write_claims(load_tables(paths), sm.output.csv, getattr(sm.output, "md", None), **kwargs)
