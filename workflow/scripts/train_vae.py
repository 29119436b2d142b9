"""Snakemake stage: train one VAE, resuming from its checkpoint (params.checkpoint, deliberately
not an output: Snakemake deletes the outputs of an interrupted job, and the checkpoint must
survive the kill)."""
from vaegaps.stage import stage
from vaegaps.train import train_vae

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    train_vae(sm.params.cfg, sm.input.data, sm.output.model, sm.output.history, sm.params.checkpoint,
              snapshot_dir=sm.params.get("snapshot_dir"), dataset_name=sm.wildcards.dataset)
