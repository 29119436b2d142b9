"""Snakemake stage: one dataset's Parquet (find or download, verify, binarize, split)."""
from vaegaps.data import prepare_dataset
from vaegaps.pipeline.stage import stage

with stage(snakemake) as job:
    sm = snakemake
    name, cfg = sm.wildcards.dataset, sm.params.data
    prepare_dataset(name, sm.output[0], source_dir=cfg["source_dir"].get(name),
                    cache_dir=cfg["cache_dir"], download=cfg["download"], provenance=job.provenance)
