"""The group level's one-page summary (PNG and PDF): brain age against age, the gap by group, mean maps.

Kept apart from group.py so the numbers and their drawing can change independently.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..methods import FIGURE_PREFERENCE as _PREFERENCE
from .bids import SPACE


def summary_figure(rows, stats, column: str, fit: dict, maps: dict, folder: Path) -> tuple[bytes, bytes]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import nibabel as nib
    from matplotlib.figure import Figure

    groups = [s[column] for s in stats if s[column] != "all"]
    colours = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    fig = Figure(figsize=(11.69, 8.27))
    fig.suptitle(f"napari-bavis group summary: {len(rows)} scans (research use only — not a medical device)", fontsize=12)
    ax = fig.add_axes((0.06, 0.55, 0.4, 0.36))
    for g in groups:
        pts = [(r["age"], r["brain_age"]) for r in rows if str(r.get(column) or "n/a") == g
               and r.get("age") is not None and r.get("brain_age") is not None]
        if pts:
            a, b = np.array(pts).T
            ax.scatter(a, b, color=colours[g], label=f"{column} {g}", s=18)
    ages = [r["age"] for r in rows if r.get("age") is not None]
    if ages:
        x = np.linspace(min(ages) - 2, max(ages) + 2, 10)
        ax.plot(x, x, "k--", lw=0.8, label="brain age = age")
        ax.plot(x, fit["slope"] * x + fit["intercept"], "r-", lw=1,
                label=f"bias fit on {fit['value']} (n={fit['n']}): {fit['slope']:.2f}·age {fit['intercept']:+.1f}")
    ax.set_xlabel("chronological age (y)")
    ax.set_ylabel("brain age (y)")
    ax.legend(fontsize=7)
    ax.set_title("brain age against age", fontsize=10)

    ax = fig.add_axes((0.56, 0.55, 0.4, 0.36))
    for k, key in enumerate(("brain_age_gap", "brain_age_gap_corrected")):
        for i, g in enumerate(groups):
            v = [r[key] for r in rows if str(r.get(column) or "n/a") == g and r.get(key) is not None]
            xpos = i + (k - 0.5) * 0.35
            ax.scatter([xpos] * len(v), v, color=colours[g], alpha=0.5 if k else 1.0, s=14, marker="o" if not k else "s")
            if v:
                sd = np.std(v, ddof=1) if len(v) > 1 else 0.0
                ax.errorbar(xpos + 0.08, np.mean(v), yerr=sd, color="k", capsize=3, marker="_", ms=12)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(range(len(groups)), [f"{g}\nraw ● / corrected ■" for g in groups], fontsize=8)
    ax.set_ylabel("brain-age gap (y), mean ± SD")
    ax.set_title(f"gap by {column}", fontsize=10)

    method = next((m for m in _PREFERENCE if any(m in v for v in maps.values())), None)
    shown = [g for g in groups + ["all"] if method and method in maps.get(g, {})]
    underlay = None
    for i, g in enumerate(shown[:6]):
        image = nib.load(folder / maps[g][method])
        data = np.asarray(image.dataobj, np.float32)
        if underlay is None:
            from ..grid import Grid
            from ..preprocess.templates import template_on_grid

            underlay = template_on_grid("t1", Grid(tuple(data.shape), image.affine))
            z = int(np.argmax(data.sum(axis=(0, 1)))) if data.any() else data.shape[2] // 2
        ax = fig.add_axes((0.04 + i * 0.155, 0.08, 0.145, 0.36), facecolor="black")
        ax.imshow(underlay[:, :, z].T, cmap="gray", origin="lower")
        top = max(float(data.max()), 1e-6)
        im = ax.imshow(np.ma.masked_less(data[:, :, z].T, 0.3 * top), cmap="inferno", vmin=0, vmax=top, origin="lower",
                       alpha=0.75)
        bar = fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        ax.set_title((f"mean {method}\n{column} {g}" if g != "all" else f"mean {method}\nall scans")
                     + f" (n={sum(1 for r in rows if method in r['_maps_mni'] and (g == 'all' or str(r.get(column) or 'n/a') == g))})",
                     fontsize=8)
        ax.text(0.02, 0.5, "L", color="w", transform=ax.transAxes, fontsize=8)
        ax.text(0.92, 0.5, "R", color="w", transform=ax.transAxes, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.text(0.04, 0.03, f"Mean maps in {SPACE} on the model grid (axial slice z of the strongest mean; above 30 % of "
             "each map's maximum), over the template.", fontsize=8)
    fig.savefig(png, format="png", dpi=100)
    fig.savefig(pdf, format="pdf")
    return png.getvalue(), pdf.getvalue()
