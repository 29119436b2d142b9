"""Snakemake stage: BDMC (forward and reverse AIS) on one part of the data simulated from a model's
weights (its final ones, or an over-training snapshot's)."""
from vaegaps.config import ais_procedure
from vaegaps.evaluate import bdmc_validation
from vaegaps.pipeline.scatter import part_bounds
from vaegaps.pipeline.stage import part_of, stage
from vaegaps.runtime import resolve_device
from vaegaps.vae import load_vae

with stage(snakemake) as job:
    sm = snakemake
    device = resolve_device(sm.config["device"])
    model = load_vae(sm.params.weights, device)
    part = part_of(sm)
    df = bdmc_validation(model, sm.params.n_points, sm.params.ais, sm.params.seed, device,
                         part_bounds(sm.params.n_points, *part))
    job.write_parquet(df, sm.output[0], {"setting": sm.params.setting, "epoch": sm.params.epoch,
                                     "weights": sm.params.weights, "ais": sm.params.ais,
                                     "procedure": ais_procedure(sm.params.ais),
                                     "seed": sm.params.seed, "part": part[0], "parts": part[1]})
