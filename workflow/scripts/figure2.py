"""Snakemake stage: Figure 2, a 2-D-latent FFG-trained VAE's true posteriors and their
amortized FFG, optimal FFG and optimal Flow approximations (docs/method.md §6.1).

input:  model (2-D-latent FFG-trained VAE .pt), data (dataset Parquet)
params: figure (the resolved experiments.figure2 settings: split, n_points, grid_limit, grid_size, n_v,
        amortized_samples, local (the shared local settings with per-family changes)), seed (int)
output: grid (Parquet, long densities), bounds (Parquet, ELBO and log p(x) per panel), png, pdf
"""
from vaegaps.evaluate import evaluation_set
from vaegaps.figures import figure2
from vaegaps.pipeline.stage import stage
from vaegaps.posterior2d import grid_densities
from vaegaps.runtime import resolve_device
from vaegaps.vae import load_vae

with stage(snakemake) as job:
    sm = snakemake
    fig, seed, device = sm.params.figure, sm.params.seed, resolve_device(sm.config["device"])
    model = load_vae(sm.input.model, device)
    index, x = evaluation_set(sm.input.data, fig["split"], fig["n_points"], device)
    grid, bounds = grid_densities(model, x, index, fig["local"], seed, fig["grid_limit"], fig["grid_size"],
                                  n_v=fig["n_v"], amortized_samples=fig["amortized_samples"])
    meta = {"figure": "figure2", "settings": fig, "seed": seed}
    job.write_parquet(grid, sm.output.grid, meta)
    job.write_parquet(bounds, sm.output.bounds, meta)
    figure2(grid, bounds, sm.output.png, sm.output.pdf)
