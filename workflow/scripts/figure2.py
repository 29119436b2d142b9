"""Snakemake stage: Figure 2, a 2-D-latent FFG-trained VAE's true posteriors and their
amortized FFG, optimal FFG and optimal Flow approximations (PROTOCOL §6.1).

input:  model (2-D-latent FFG-trained VAE .pt), data (dataset Parquet)
params: figure (dict: split, n_points, grid_limit (4.0), grid_size (121), local: local_cfg for optimize_local;
        optional n_v (auxiliary samples per grid node, 128), amortized_samples (5000)), seed (int)
output: grid (Parquet, long densities), bounds (Parquet, ELBO and log p(x) per panel), png, pdf
"""
from vaegaps.evaluate import evaluation_set
from vaegaps.figures import figure2
from vaegaps.io import write_parquet
from vaegaps.posterior2d import grid_densities
from vaegaps.runtime import resolve_device
from vaegaps.stage import stage
from vaegaps.vae import load_vae

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    fig, seed, device = sm.params.figure, sm.params.seed, resolve_device(sm.config.get("device", "auto"))
    model = load_vae(sm.input.model, device)
    index, x = evaluation_set(sm.input.data, fig["split"], fig["n_points"], device)
    grid, bounds = grid_densities(model, x, index, fig["local"], seed, fig.get("grid_limit", 4.0),
                                  fig.get("grid_size", 121), n_v=fig.get("n_v", 128),
                                  amortized_samples=fig.get("amortized_samples", 5000))
    meta = {"figure": "figure2", "settings": fig, "seed": seed}
    write_parquet(grid, sm.output.grid, meta)
    write_parquet(bounds, sm.output.bounds, meta)
    figure2(grid, bounds, sm.output.png, sm.output.pdf)
