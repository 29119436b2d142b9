"""Snakemake stage: true posteriors of the same datapoints under a 2-D-latent VAE trained with
FFG and one trained with Flow (docs/method.md §6.1, optional second figure).

input:  ffg, flow (two 2-D-latent VAE .pt), data (dataset Parquet)
params: figure (dict: split, n_points, grid_limit, grid_size; other keys ignored), seed (int)
output: grid (Parquet, true-posterior densities with column trained_family), png, pdf
"""
import pandas as pd

from vaegaps.evaluate import evaluation_set
from vaegaps.figures import figure_posteriors
from vaegaps.pipeline.stage import stage
from vaegaps.posterior2d import true_posterior_frame
from vaegaps.runtime import resolve_device
from vaegaps.vae import load_vae

with stage(snakemake) as job:
    sm = snakemake
    fig, device = sm.params.figure, resolve_device(sm.config["device"])
    index, x = evaluation_set(sm.input.data, fig["split"], fig["n_points"], device)
    limit, size = fig["grid_limit"], fig["grid_size"]
    grids = {fam: true_posterior_frame(load_vae(getattr(sm.input, fam), device), x, index, limit, size)
             for fam in ("ffg", "flow")}
    both = pd.concat([g.assign(trained_family=fam) for fam, g in grids.items()], ignore_index=True)
    job.write_parquet(both, sm.output.grid, {"figure": "figure_posteriors", "settings": fig,
                                         "seed": sm.params.seed})
    figure_posteriors(grids, sm.output.png, sm.output.pdf)
