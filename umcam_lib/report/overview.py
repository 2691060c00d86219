"""The study on one page: a boxes-and-arrows figure of the pipeline and its notebooks.

Notebook 01 saves it as ``pipeline_overview.png`` in the figures folder; the README shows the
committed copy (``figures/quick/pipeline_overview.png``). A picture rather than a Mermaid block
because it renders the same in JupyterLab, in GitHub's notebook viewer and in the README;
``docs/method.md`` keeps a Mermaid and a plain-text version for readers of the sources.
"""
from __future__ import annotations

from typing import Any

#: Boxes: key -> (x, y) of the centre in axes units, the notebook, the text, the kind of stage.
STAGES: dict[str, tuple[float, float, str, str, str]] = {
    "data": (0.10, 0.72, "01", "MRI stacks ->\n2D slices +\nslice labels", "data"),
    "clf": (0.36, 0.72, "02", "VGG-16 slice\nclassifier\n(brain yes / no)", "weak"),
    "cams": (0.62, 0.72, "03", "Grad-CAM and\nvariants\n(Eq. 1-2)", "weak"),
    "umcam": (0.88, 0.72, "04", "UM-CAM: entropy-\nweighted fusion\nof 5 blocks (Eq. 3-4)", "method"),
    "spl": (0.88, 0.30, "05", "seeds, geodesic\ndistance -> SPL\n(Eq. 5-7)", "method"),
    "unet": (0.62, 0.30, "06", "2D UNet on\nUM-CAM + SPL\n(Eq. 8)", "method"),
    "base": (0.36, 0.30, "07", "baselines\nDRS, AMR\n-> same UNet", "weak"),
    "report": (0.10, 0.30, "08", "3D DSC / HD95,\nTables 1-2,\nclaims tested", "data"),
}

#: Arrows between boxes (from, to, label).
FLOWS: tuple[tuple[str, str, str], ...] = (
    ("data", "clf", ""),
    ("clf", "cams", ""),
    ("cams", "umcam", ""),
    ("umcam", "spl", "pseudo mask,\nseeds"),
    ("spl", "unet", "SPL"),
    ("clf", "base", ""),
    ("base", "report", ""),
    ("unet", "report", ""),
)

_COLOURS = {"data": "#e8e8e8", "weak": "#d6e6f5", "method": "#fde2c4"}


def pipeline_overview_figure(width: float = 11.0, height: float = 4.6) -> Any:
    """Draw the study's pipeline: one box per stage, labelled with its notebook.

    Parameters
    ----------
    width, height : float
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Blue boxes are the weakly supervised building blocks, orange the paper's two ideas and
        the segmentation they train, grey data and report. The dashed arrow is the UM-CAM
        pseudo mask, which the UNet also learns from.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(-0.02, 1.0)
    ax.axis("off")
    box_w, box_h = 0.18, 0.30
    for x, y, number, text, kind in STAGES.values():
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.01,rounding_size=0.02",
                                    facecolor=_COLOURS[kind], edgecolor="#444444", linewidth=1.2))
        ax.text(x, y + box_h / 2 - 0.045, f"notebook {number}", ha="center", va="center", fontsize=8,
                color="#555555")
        ax.text(x, y - 0.03, text, ha="center", va="center", fontsize=9.5)

    def edge(a: str, b: str) -> tuple[tuple[float, float], tuple[float, float]]:
        (xa, ya), (xb, yb) = STAGES[a][:2], STAGES[b][:2]
        if abs(ya - yb) < 1e-9:      # same row: from side to side
            sx = box_w / 2 + 0.004
            return (xa + sx * (1 if xb > xa else -1), ya), (xb - sx * (1 if xb > xa else -1), yb)
        sy = box_h / 2 + 0.01         # between rows: from bottom to top
        return (xa, ya - sy if yb < ya else ya + sy), (xb, yb + sy if yb < ya else yb - sy)

    for a, b, label in FLOWS:
        start, end = edge(a, b)
        around = a == "unet" and b == "report"     # passes under the baselines' box
        if around:
            start, end = (start[0] - 0.03, start[1] - box_h / 2), (end[0] + 0.03, end[1] - box_h / 2)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=1.4, shrinkA=0, shrinkB=0,
                                    connectionstyle="arc3,rad=-0.25" if around else "arc3"))
        if label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            dx = 0.06 if abs(start[1] - end[1]) > 1e-9 else 0.0
            ax.text(mx + dx, my + (0.0 if dx else 0.06), label, ha="center", va="center", fontsize=8,
                    color="#333333")
    # the UM-CAM pseudo mask is the UNet's second label (Eq. 8)
    (xu, yu), (xn, yn) = STAGES["umcam"][:2], STAGES["unet"][:2]
    ax.annotate("", xy=(xn + 0.03, yn + box_h / 2 + 0.01), xytext=(xu - 0.05, yu - box_h / 2 - 0.01),
                arrowprops=dict(arrowstyle="-|>", color="#a0522d", linewidth=1.3, linestyle="--",
                                shrinkA=0, shrinkB=0))
    ax.text((xu + xn) / 2 - 0.01, (yu + yn) / 2 + 0.045, "UM-CAM mask", ha="center", va="center", fontsize=8,
            color="#a0522d")
    ax.set_title("The study: image-level labels -> CAMs -> UM-CAM + SPL pseudo labels -> UNet -> 3D scores",
                 fontsize=11)
    fig.tight_layout()
    return fig
