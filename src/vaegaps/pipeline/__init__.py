"""The pipeline layer: everything that knows about Snakemake, parts, chunks, resume, locks and
provenance. The stage scripts (workflow/scripts/*.py) and the Snakefile call it; it calls the
library (estimators, models, data, tables), never the other way round.

- stage: the job's log, threads, one-line errors, run lock, and `Stage` (the provenance its
  Parquet outputs record)
- stages: the stage drivers that read a job's `snakemake` object
- sources: model sources (built-in VAE, user model) and `run_estimator`, the one estimator driver
- scatter: parts, resumable chunks and their keys, gathering parts
- recovery: the run lock that tells a killed run's stale Snakemake locks from a live run's
- preflight: the checks the Snakefile runs before the DAG
- codedeps: each rule's code inputs, from its script's imports
- rebuild: the exact command a missing or damaged file's error names (the library's errors take it
  through vaegaps.errors.set_file_hints)
- experiments: the experiment registry (experiments.yaml, package data), one declaration each
- study: a study across its experiments: their checks, settings and the resolved record
"""
