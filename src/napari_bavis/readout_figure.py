"""Figures of the explanation checks (no Qt): each map's deletion and insertion curves against the
random ordering's, so a reader sees at a glance whether a map points at what the model uses.

Used by the analysis dock (as a picture) and by ``export_analysis`` (faithfulness.png).
"""

from __future__ import annotations

import io


def faithfulness_figure(faithfulness: dict, titles=None, width_in: float = 7.0) -> bytes:
    """PNG bytes: one row per map, deletion (left) and insertion (right), brain age over the share of
    the brain changed; the map's curve solid, the random ordering's dashed, AUCs in the legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if titles is None:
        from .methods import title as titles
    methods = list(faithfulness)
    rows = max(1, len(methods))
    fig = Figure(figsize=(width_in, 1.9 * rows + 0.4), dpi=90)
    axes = fig.subplots(rows, 2, squeeze=False)
    for row, method in zip(axes, methods):
        f = faithfulness[method]
        x = [100 * v for v in f["fractions"]]
        for ax, kind in zip(row, ("deletion", "insertion")):
            ax.plot(x, f[f"{kind}_curve"], "-", color="tab:red", label=f"map (AUC {f[f'{kind}_auc']:.1f})")
            ax.plot(x, f[f"random_{kind}_curve"], "--", color="grey", label=f"random ({f[f'random_{kind}_auc']:.1f})")
            ax.set_title(f"{titles(method)}: {kind}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7, loc="best")
            ax.set_ylabel("brain age (y)", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("% of brain voxels, top-ranked first", fontsize=7)
    fig.suptitle("Faithfulness: deletion should fall below random, insertion rise above it", fontsize=9)
    # Fixed margins in inches rather than tight_layout, which draws the whole figure once more to
    # measure it (0.4 of the figure's 1.1 s on a real scan's report).
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.09, right=0.985, bottom=0.5 / height, top=1 - 0.5 / height, wspace=0.22,
                        hspace=0.75 / 1.9 * 1.5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def importance_lines(rows, n: int = 10) -> list[str]:
    """'Left Lateral Ventricle: -2.4 y' lines of the ``n`` regions that move the brain age most."""
    out = []
    for r in (rows or [])[:n]:
        side = "" if r["hemisphere"] == "midline" else f"{r['hemisphere'].capitalize()} "
        out.append(f"{side}{r['region']}: {r['delta_years']:+.2f} y")
    return out
