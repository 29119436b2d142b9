"""Snakemake stage: train one VAE, resuming from its checkpoint.

The checkpoint and the snapshots are written under params.checkpoint's folder (one per settings),
deliberately not an output: Snakemake deletes the outputs of an interrupted job, and they must survive the kill.
The snapshots are copied to the `snapshots` output when training ends.
"""
import shutil
from pathlib import Path

from vaegaps.pipeline.stage import stage
from vaegaps.train import train_vae

with stage(snakemake) as job:
    sm = snakemake
    kept = Path(sm.params.checkpoint).parent / "snapshots"
    kept.mkdir(parents=True, exist_ok=True)
    train_vae(sm.params.cfg, sm.input.data, sm.output.model, sm.output.history, sm.params.checkpoint,
              snapshot_dir=kept, dataset_name=sm.wildcards.dataset, provenance=job.provenance)
    shutil.copytree(kept, sm.output.snapshots, dirs_exist_ok=True)
