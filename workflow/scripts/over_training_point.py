"""Snakemake stage: log p̂, L[q*] and L[q] of one model snapshot on training and validation points."""
from pathlib import Path

from vaegaps.evaluate import evaluation_set, over_training_point
from vaegaps.pipeline.stage import stage
from vaegaps.runtime import resolve_device
from vaegaps.vae import load_vae

with stage(snakemake) as job:
    sm = snakemake
    device = resolve_device(sm.config["device"])
    model = load_vae(Path(sm.input.snapshots) / f"epoch_{sm.wildcards.epoch}.pt", device)
    sets = {split: evaluation_set(sm.input.data, split, sm.params.n_points, device) for split in ("train", "valid")}
    df = over_training_point(model, sets, sm.wildcards.family, sm.params.settings, sm.params.seed)
    job.write_parquet(df, sm.output[0], {"epoch": int(sm.wildcards.epoch), "settings": sm.params.settings,
                                     "seed": sm.params.seed})
