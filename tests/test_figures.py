"""Grid quadrature for 2-D latents, the approximations' grid densities, and the figures.

The quadrature posterior is exact up to grid resolution, so it must normalise and agree with a
finer, wider grid; every approximation is a density, so its grid integral must be ≈ 1 (the
flow's, estimated by importance sampling over its auxiliary variable, a little less tightly);
no ELBO may exceed the quadrature log p(x).
"""

import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vaegaps import figures
from vaegaps.config import defaults
from vaegaps.posterior2d import DISTRIBUTIONS, family_log_density, grid_densities, grid_posterior, make_grid
from vaegaps.vae import VAE, save_vae

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
LOCAL = {**defaults("local"), **dict(n_samples=20, lr=3e-2, check_every=50, patience=5, max_steps=200,
                                     final_samples=500)}
MODEL_CFG = {**defaults("model"), **dict(z_dim=2, encoder_hidden=[16], decoder_hidden=[16], family="ffg")}


@pytest.fixture(scope="module")
def model_x():
    torch.manual_seed(0)
    model = VAE(x_dim=20, z_dim=2, encoder_hidden=(16,), decoder_hidden=(16,)).eval()
    x = (torch.rand(4, 20, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    return model, x


@pytest.fixture(scope="module")
def densities(model_x):
    model, x = model_x
    return grid_densities(model, x, np.array([3, 5, 8, 13]), LOCAL, seed=0, grid_limit=4.0,
                          grid_size=61, n_v=64, amortized_samples=2000)


def test_quadrature_normalises_and_converges(model_x):
    model, x = model_x
    z, log_post, log_px = grid_posterior(model, x, grid_limit=4.0, grid_size=81)
    assert z.shape == (81 * 81, 2) and log_post.shape == (4, 81 * 81) and log_px.shape == (4,)
    area = (8.0 / 80) ** 2
    assert torch.allclose((log_post.exp() * area).sum(-1), torch.ones(4, dtype=log_post.dtype), atol=1e-3)
    _, _, fine = grid_posterior(model, x, grid_limit=5.0, grid_size=251)
    assert float((fine - log_px).abs().max()) < 1e-3


@pytest.mark.slow  # over 10 s
def test_grid_densities_integrate_to_one_and_bound_log_px(densities):
    grid, bounds = densities
    area = (8.0 / 60) ** 2
    assert set(grid["distribution"]) == set(DISTRIBUTIONS)
    counts = grid.groupby(["index", "distribution"]).size()
    assert len(counts) == 16 and (counts == 61 * 61).all()
    mass = grid.groupby(["index", "distribution"])["density"].sum() * area
    for (_, dist), m in mass.items():
        assert abs(m - 1) < (5e-2 if dist == "optimal_flow" else 2e-2), (dist, m)
    assert len(bounds) == 16 and set(bounds["distribution"]) == set(DISTRIBUTIONS)
    assert (bounds["elbo"] <= bounds["log_px"] + 0.05).all()
    assert np.isfinite(bounds[["elbo", "log_px", "grid_mass"]].to_numpy()).all()


def _synthetic_summary():
    rows = []
    for m in ["standard", "flow", "large_decoder", "large_encoder"]:
        for s in ["train", "valid"]:
            for e in [1, 10, 100]:
                px = -100 + 5 * math.log10(e)
                rows.append(dict(model=m, epoch=e, split=s, log_px=px, elbo_qstar=px - 2,
                                 elbo_amortized=px - 5, log_px_se=0.1))
    return pd.DataFrame(rows)


def _check_outputs(png, pdf):
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000


@pytest.mark.slow  # its `densities` fixture takes ~50 s
def test_figures_write_png_and_pdf(densities, tmp_path):
    grid, bounds = densities
    figures.figure2(grid, bounds, tmp_path / "f2.png", tmp_path / "f2.pdf")
    _check_outputs(tmp_path / "f2.png", tmp_path / "f2.pdf")
    true = grid[grid["distribution"] == "true"]
    figures.figure_posteriors({"ffg": true, "flow": true}, tmp_path / "p.png", tmp_path / "p.pdf")
    _check_outputs(tmp_path / "p.png", tmp_path / "p.pdf")
    figures.figure_gaps_over_training(_synthetic_summary(), tmp_path / "g.png", tmp_path / "g.pdf")
    _check_outputs(tmp_path / "g.png", tmp_path / "g.pdf")
    assert not list(tmp_path.glob("*.tmp"))   # atomic writes leave no temp files


def _dataset(path, x):
    """A minimal prepared-dataset Parquet (the columns load_split reads)."""
    n = len(x)
    pixels = pa.array([row.astype(np.uint8) for row in x], type=pa.list_(pa.uint8()))
    pq.write_table(pa.table({"index": np.arange(n), "label": np.zeros(n, np.int64),
                             "split": ["test"] * n, "pixels": pixels}), path)


def _run(script, tmp_path, **sections):
    """Run a stage script with a stand-in for the `snakemake` object Snakemake injects."""
    sm = SimpleNamespace(log=[], threads=1, config={"device": "cpu"},
                         **{k: SimpleNamespace(**v) for k, v in sections.items()})
    runpy.run_path(str(SCRIPTS / script), init_globals={"snakemake": sm})


def test_stage_scripts(model_x, tmp_path):
    model, x = model_x
    for name in ("ffg", "flow"):
        save_vae(model, tmp_path / f"{name}.pt", MODEL_CFG, None)
    _dataset(tmp_path / "data.parquet", x.numpy())
    fig = dict(split="test", n_points=2, grid_limit=4.0, grid_size=41, n_v=128, amortized_samples=5000,
               local=LOCAL)
    out = {k: str(tmp_path / f"f2.{k}") for k in ("png", "pdf")}
    data = str(tmp_path / "data.parquet")
    _run("figure2.py", tmp_path, input=dict(model=str(tmp_path / "ffg.pt"), data=data),
         params=dict(figure=fig, seed=0),
         output=dict(grid=str(tmp_path / "grid.parquet"), bounds=str(tmp_path / "bounds.parquet"), **out))
    assert set(pd.read_parquet(tmp_path / "bounds.parquet")["distribution"]) == set(DISTRIBUTIONS)
    _check_outputs(Path(out["png"]), Path(out["pdf"]))
    _run("figure_posteriors.py", tmp_path,
         input=dict(ffg=str(tmp_path / "ffg.pt"), flow=str(tmp_path / "flow.pt"), data=data),
         params=dict(figure=fig, seed=0),
         output=dict(grid=str(tmp_path / "post.parquet"), png=str(tmp_path / "p.png"),
                     pdf=str(tmp_path / "p.pdf")))
    assert set(pd.read_parquet(tmp_path / "post.parquet")["trained_family"]) == {"ffg", "flow"}
    _synthetic_summary().to_csv(tmp_path / "summary.csv", index=False)
    _run("figure_gaps_over_training.py", tmp_path, input=dict(summary=str(tmp_path / "summary.csv")),
         output=dict(png=str(tmp_path / "g.png"), pdf=str(tmp_path / "g.pdf")))
    _check_outputs(tmp_path / "g.png", tmp_path / "g.pdf")


@pytest.mark.parametrize("family", ["flow", "realnvp"])
def test_amortized_flow_densities_integrate_to_one(family):
    """Flow-trained encoders: the auxiliary flow's IS marginal (deterministic, keyed by index)
    and RealNVP's exact density both integrate to ≈ 1 on the grid."""
    torch.manual_seed(2)
    model = VAE(x_dim=20, z_dim=2, encoder_hidden=(16,), decoder_hidden=(16,), family=family,
                flow_hidden=16).eval()
    with torch.no_grad():   # non-trivial flows: zero-initialised heads would be near-affine maps
        for name, p in model.family.named_parameters():
            if "head" in name:
                p.add_(0.5 * torch.randn_like(p))
    x = (torch.rand(3, 20, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    z, area = make_grid(4.0, 81)
    idx = torch.tensor([0, 1, 2])
    with torch.no_grad():
        mean, logvar, h = model.encode(x)
        lq = family_log_density(model.family, mean, logvar, z, h, seed=0, index=idx, n_v=64)
        again = family_log_density(model.family, mean, logvar, z, h, seed=0, index=idx, n_v=64)
    assert torch.equal(lq, again)
    mass = lq.exp().sum(-1) * area
    assert torch.allclose(mass, torch.ones_like(mass), atol=5e-2), mass
