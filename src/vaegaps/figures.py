"""Every figure of the project (docs/method.md §6.1, §6.6), written as PNG and PDF.

The two gaps have one colour each throughout (`GAP_COLORS`), so a reader who has seen one
figure reads the next without a legend lookup.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .io import atomic_path

# seaborn "colorblind" blue and orange: distinguishable in greyscale and for colour-blind readers
GAP_COLORS = {"approximation": "#0173B2", "amortization": "#DE8F05"}
POSTERIOR_CMAP = "Blues"
APPROX_COLOR = "#D55E00"
DPI = 150

FIG2_ROWS = [("true", "true posterior\np(z|x)"), ("amortized", "amortized FFG\nq(z|x)"),
             ("optimal_ffg", "optimal FFG\nq*(z|x)"), ("optimal_flow", "optimal Flow\nq*(z|x)")]
MODEL_ORDER = ["standard", "flow", "large_decoder", "large_encoder"]
MODEL_TITLES = {"standard": "standard (FFG)", "flow": "Flow", "large_decoder": "larger decoder",
                "large_encoder": "larger encoder"}
SPLIT_TITLES = {"train": "training", "valid": "validation"}


def _style():
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save(fig, png_path, pdf_path) -> None:
    """Both formats atomically; the format is explicit because the temp file ends in .tmp."""
    for path, fmt in ((png_path, "png"), (pdf_path, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _image(df: pd.DataFrame):
    """Long grid rows of one distribution → (z1 ticks, z2 ticks, density (n_z2, n_z1))."""
    img = df.pivot_table(index="z2", columns="z1", values="density", aggfunc="first")
    return img.columns.to_numpy(), img.index.to_numpy(), img.to_numpy()


def _zoom(images, frac=1e-2, pad=0.3):
    """A square window around where any of the densities exceeds frac × its maximum, so that
    narrow posteriors are not lost in a wide grid."""
    z1, z2 = images[0][0], images[0][1]
    mask = np.zeros_like(images[0][2], dtype=bool)
    for _, _, d in images:
        mask |= d >= frac * np.nanmax(d)
    rows, cols = np.nonzero(mask)
    lo1, hi1, lo2, hi2 = z1[cols.min()], z1[cols.max()], z2[rows.min()], z2[rows.max()]
    half = 0.5 * max(hi1 - lo1, hi2 - lo2) * (1 + pad) + (z1[1] - z1[0])
    c1, c2 = 0.5 * (lo1 + hi1), 0.5 * (lo2 + hi2)
    clip = (lambda c: (max(c - half, z1[0]), min(c + half, z1[-1])))
    return clip(c1), (max(c2 - half, z2[0]), min(c2 + half, z2[-1]))


def _levels(d, n=7):
    """Contour levels at evenly spaced fractions of the peak (scale-free across panels)."""
    return np.nanmax(d) * np.linspace(0.05, 0.95, n)


def _filled(ax, image, alpha=1.0):
    z1, z2, d = image
    ax.contourf(z1, z2, d, levels=np.concatenate([_levels(d, 8), [np.nanmax(d) * 1.01]]),
                cmap=POSTERIOR_CMAP, alpha=alpha, extend="neither")


def _ticks(ax):
    """Few, small ticks: zoomed windows otherwise get crowded, overlapping tick labels."""
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize=7)


def _row_distribution(names, key):
    """The grid's name for a figure row ('amortized' matches amortized_<family>)."""
    hits = [n for n in names if n == key or (key == "amortized" and n.startswith("amortized"))]
    return hits[0] if hits else None


def figure2(grid: pd.DataFrame, bounds: pd.DataFrame, png_path, pdf_path) -> None:
    """Rows: true posterior (filled) and three approximations (lines over the faint posterior);
    columns: datapoints. Each panel gives its ELBO and log p(x) in nats."""
    _style()
    points = sorted(grid["index"].unique())
    names = list(grid["distribution"].unique())
    fig, axes = plt.subplots(len(FIG2_ROWS), len(points), figsize=(2.7 * len(points) + 1.2, 11.8),
                             squeeze=False)
    for j, i in enumerate(points):
        g, b = grid[grid["index"] == i], bounds[bounds["index"] == i].set_index("distribution")
        images = {n: _image(g[g["distribution"] == n]) for n in names}
        # zoom on the posterior and the optima; a poor amortized q widens its own row only
        window = _zoom([im for n, im in images.items() if not n.startswith("amortized")])
        log_px = float(b["log_px"].iloc[0])
        for r, (key, label) in enumerate(FIG2_ROWS):
            ax, name = axes[r, j], _row_distribution(names, key)
            xlim, ylim = _zoom(list(images.values())) if key == "amortized" else window
            _filled(ax, images["true"], alpha=1.0 if r == 0 else 0.45)
            # numbers go in the title: a box inside the panel would hide part of the density
            title = f"log p(x) = {log_px:.2f} nats"
            if r and name is not None:
                z1, z2, d = images[name]
                ax.contour(z1, z2, d, levels=_levels(d, 5), colors=APPROX_COLOR, linewidths=1.1)
                title = f"ELBO = {float(b.loc[name, 'elbo']):.2f} nats\n" + title
            ax.set_title(f"datapoint {i}\n{title}" if r == 0 else title, fontsize=9)
            ax.set(xlim=xlim, ylim=ylim, xlabel="z1" if r == len(FIG2_ROWS) - 1 else "",
                   ylabel=f"{label}\n\nz2" if j == 0 else "z2")
            _ticks(ax)
    handles = [Patch(color=sns.color_palette(POSTERIOR_CMAP, 3)[2], label="true posterior p(z|x)"),
               Line2D([], [], color=APPROX_COLOR, label="approximation q (contours)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    save(fig, png_path, pdf_path)


def figure_posteriors(grids: dict, png_path, pdf_path) -> None:
    """True posteriors of the same datapoints under an FFG-trained (row 1) and a Flow-trained
    (row 2) decoder."""
    _style()
    rows = [(k, t) for k, t in (("ffg", "trained with FFG"), ("flow", "trained with Flow")) if k in grids]
    points = sorted(set().union(*(set(grids[k]["index"]) for k, _ in rows)))
    fig, axes = plt.subplots(len(rows), len(points), figsize=(2.7 * len(points) + 1.2, 2.8 * len(rows) + 0.6),
                             squeeze=False)
    for r, (key, title) in enumerate(rows):
        g = grids[key][grids[key]["distribution"] == "true"]
        for j, i in enumerate(points):
            ax, image = axes[r, j], _image(g[g["index"] == i])
            _filled(ax, image)
            xlim, ylim = _zoom([image])
            ax.set(xlim=xlim, ylim=ylim, xlabel="z1", ylabel=f"{title}\n\nz2" if j == 0 else "z2")
            _ticks(ax)
            if r == 0:
                ax.set_title(f"datapoint {i}")
    fig.legend(handles=[Patch(color=sns.color_palette(POSTERIOR_CMAP, 3)[2], label="true posterior p(z|x)")],
               loc="lower center", frameon=False, bbox_to_anchor=(0.5, -0.03))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save(fig, png_path, pdf_path)


def _gap_panel(ax, d: pd.DataFrame) -> None:
    d = d.sort_values("epoch")
    e = d["epoch"].to_numpy()
    px, qs, qa = (d[c].to_numpy(float) for c in ("log_px", "elbo_qstar", "elbo_amortized"))
    ax.fill_between(e, qs, px, color=GAP_COLORS["approximation"], alpha=0.35, lw=0,
                    label="approximation gap")
    ax.fill_between(e, qa, qs, color=GAP_COLORS["amortization"], alpha=0.35, lw=0,
                    label="amortization gap")
    ax.plot(e, px, color="black", lw=1.5, label=r"$\log \hat p(x)$")
    ax.plot(e, qs, color=GAP_COLORS["approximation"], lw=1.5, label=r"$\mathcal{L}[q^*]$")
    ax.plot(e, qa, color=GAP_COLORS["amortization"], lw=1.5, label=r"$\mathcal{L}[q]$")


def figure_gaps_over_training(summary: pd.DataFrame, png_path, pdf_path) -> None:
    """Rows: training / validation points; columns: models; bands are the two gaps."""
    _style()
    models = [m for m in MODEL_ORDER if m in set(summary["model"])]
    models += sorted(set(summary["model"]) - set(models))  # anything unforeseen still shows
    splits = [s for s in SPLIT_TITLES if s in set(summary["split"])]
    fig, axes = plt.subplots(len(splits), len(models), figsize=(3.4 * len(models), 3.0 * len(splits) + 0.5),
                             squeeze=False, sharex=True, sharey="row")
    for r, split in enumerate(splits):
        for c, model in enumerate(models):
            ax = axes[r, c]
            _gap_panel(ax, summary[(summary["model"] == model) & (summary["split"] == split)])
            ax.set(xlabel="epoch", ylabel=f"{SPLIT_TITLES[split]}\nnats" if c == 0 else "nats",
                   title=f"{MODEL_TITLES.get(model, model)} — {SPLIT_TITLES[split]}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, png_path, pdf_path)


def figure_refinement(table: pd.DataFrame, png_path, pdf_path) -> None:
    """The fraction of the amortization gap closed after k refinement steps (docs/method.md §12),
    one line per model (dataset, variant, family) with a band of ±2 standard errors; k on a
    symmetric-log axis (linear below 1), so k = 0, the encoder's own q, is on it."""
    _style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    models = list(dict.fromkeys(zip(table["dataset"], table["variant"], table["family"])))
    palette = sns.color_palette("colorblind", max(len(models), 1))
    for color, (d, v, f) in zip(palette, models):
        rows = table[(table["dataset"] == d) & (table["variant"] == v) & (table["family"] == f)].sort_values("steps")
        k, frac, se = (rows[c].to_numpy(float) for c in ("steps", "fraction_closed", "fraction_closed_se"))
        ax.fill_between(k, frac - 2 * se, frac + 2 * se, color=color, alpha=0.2, lw=0)
        ax.plot(k, frac, color=color, lw=1.6, marker="o", ms=3, label=f"{d} {v}/{f}")
    for level in (0.0, 1.0):
        ax.axhline(level, color="0.4", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=1.0)
    top = max(float(table["steps"].max()), 1.0)
    ticks = [0] + [10.0 ** e for e in range(int(np.floor(np.log10(top))) + 1)]
    ax.set_xticks(ticks, ["0"] + [f"{t:g}" for t in ticks[1:]])
    ax.set_xlim(0, top * 1.15)
    ax.set(xlabel="refinement steps k from the encoder's q", ylabel="fraction of the amortization gap closed",
           title="(mean L_k − mean L[q]) / (mean L[q*] − mean L[q])")
    ax.legend(loc="best", fontsize=8, frameon=False)
    fig.tight_layout()
    save(fig, png_path, pdf_path)
