"""Quality-control pictures of ``python -m umcam_lib.segment``: one PNG per stack (the mask's
outline, and the reference's when there is one, over up to 12 slices spread through the brain, in
panels large enough to judge a boundary) and one HTML summary page listing every stack with its
picture, brain volume, confidence and scores, the stacks to look at first on top."""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io

MASK_COLOUR = "#00e000"
REFERENCE_COLOUR = "#ff30ff"


QC_SLICES = 12
"""Slices drawn per stack (fewer when the brain spans fewer)."""

QC_COLUMNS = 6
"""Panels per row of the QC picture."""


def qc_slices(mask: np.ndarray, n: int = QC_SLICES) -> list[int]:
    """``n`` slice indices (last axis) spread evenly from the first to the last slice holding
    brain; spread through the whole stack when the mask is empty. Fewer when there are fewer
    slices.

    Parameters
    ----------
    mask : ndarray, shape (H, W, S)
    n : int
    """
    S = int(mask.shape[-1])
    has = np.flatnonzero(np.asarray(mask).reshape(-1, S).any(axis=0))
    lo, hi = (int(has[0]), int(has[-1])) if has.size else (0, S - 1)
    return sorted({int(round(x)) for x in np.linspace(lo, hi, min(n, hi - lo + 1))})


def qc_box(mask: np.ndarray, spacing: Sequence[float], margin_mm: float = 25.0) -> tuple[slice, slice]:
    """The in-plane box (first two axes) of every voxel of ``mask`` plus ``margin_mm``; the whole
    slice when the mask is empty."""
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return slice(None), slice(None)
    out = []
    for axis in (0, 1):
        idx = np.flatnonzero(m.any(axis=tuple(a for a in range(m.ndim) if a != axis)))
        g = int(np.ceil(margin_mm / float(spacing[axis])))
        out.append(slice(max(0, int(idx[0]) - g), min(m.shape[axis], int(idx[-1]) + g + 1)))
    return out[0], out[1]


def qc_figure(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], reference: np.ndarray | None = None,
              title: str = "", n: int = QC_SLICES, ncols: int = QC_COLUMNS):
    """A grid of ``n`` slices of ``image`` (``ncols`` per row) with the outline of ``mask``
    (green) and of ``reference`` (magenta, dashed) when given, cropped to both masks plus 25 mm
    (:func:`qc_box`).

    Parameters
    ----------
    image, mask, reference : ndarray, shape (H, W, S)
        Slice axis last (the mask's slices are the model's slices).
    spacing : (float, float)
        In-plane spacing (mm) of the first two axes: the pixels are drawn with their true aspect.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot (no display needed).
    """
    from matplotlib.figure import Figure

    idx = qc_slices(mask if mask.any() or reference is None else reference, n)
    lo, hi = np.percentile(image, [0.5, 99.5])
    bx, by = qc_box(mask if reference is None else (mask > 0) | (reference > 0), spacing)
    image, mask = image[bx, by], mask[bx, by]
    reference = None if reference is None else reference[bx, by]
    cols = min(ncols, len(idx))
    rows = -(-len(idx) // cols)
    fig = Figure(figsize=(2.9 * cols, 3.0 * rows + (0.3 if title else 0.0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(idx):]:
        ax.set_axis_off()
    aspect = float(spacing[1]) / float(spacing[0])  # image[:, :, k].T: rows along axis 1
    for ax, k in zip(axes, idx):
        ax.imshow(image[:, :, k].T, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower",
                  aspect=aspect, interpolation="nearest")
        if reference is not None and reference[:, :, k].any():
            ax.contour(reference[:, :, k].T.astype(float), levels=[0.5], colors=REFERENCE_COLOUR, linewidths=1.0,
                       linestyles="dashed")
        if mask[:, :, k].any():
            ax.contour(mask[:, :, k].T.astype(float), levels=[0.5], colors=MASK_COLOUR, linewidths=1.1)
        ax.set_title(f"slice {k}", fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_qc(path: str | Path, image: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
             reference: np.ndarray | None = None, title: str = "", n: int = QC_SLICES, dpi: int = 90) -> Path:
    """Draw :func:`qc_figure` and write it to ``path`` (PNG) atomically."""
    return io.save_figure(qc_figure(image, mask, spacing, reference, title, n), path, dpi=dpi)


def _cell(x: object, fmt: str) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    return html.escape(fmt.format(x))


def review_order(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` in the order a person should look at them: flagged stacks first, then by
    ascending ``confidence`` (stacks without one last), ties in input order."""
    flagged = scores.get("qc_flags", pd.Series("", index=scores.index)).fillna("").astype(str) != ""
    conf = pd.to_numeric(scores.get("confidence", pd.Series(np.nan, index=scores.index)), errors="coerce")
    key = pd.DataFrame({"f": ~flagged, "c": conf.fillna(np.inf), "i": np.arange(len(scores))}, index=scores.index)
    return scores.loc[key.sort_values(["f", "c", "i"]).index]


def write_report(path: str | Path, scores: pd.DataFrame, title: str = "Brain masks") -> Path:
    """One HTML page: a row per stack with its QC picture, volume (mL), confidence, DSC and HD95
    (when a reference lay beside it), flags and any warning, in :func:`review_order` (flagged
    and least confident stacks first); pictures are linked by relative path.

    Parameters
    ----------
    scores : DataFrame
        :data:`umcam_lib.segment.SCORE_COLUMNS` (``image``, ``mask``, ``qc``, ``volume_ml``,
        ``confidence``, ``dsc``, ``hd95_mm``, ``warning``, ``qc_flags``).
    """
    path = Path(path)
    scored = scores.dropna(subset=["dsc"])
    flags = scores.get("qc_flags", pd.Series("", index=scores.index)).fillna("").astype(str)
    n_flag = int((flags != "").sum())
    lines = ["<!doctype html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}img{max-width:min(1500px,80vw)}"
             ".warn{color:#b00}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(scores)} stack(s), {n_flag} flagged for a look; flagged stacks first, then by "
             "confidence (mean foreground probability on the mask's boundary: near 1 when the UNet is sure "
             "where the brain ends, near 0.5 when it guesses). Flags: an empty mask, a volume outside "
             "40-500 mL (fetal brains of 20-38 weeks), a mask in pieces, or a confidence far below the "
             "batch's. Mask outline green"
             + (f", reference magenta dashed; mean DSC {scored.dsc.mean():.2f} % over {len(scored)} "
                f"stack(s) with a reference" if len(scored) else "") + ".</p>",
             "<table><tr><th>stack</th><th>volume (mL)</th><th>confidence</th><th>DSC (%)</th><th>HD95 (mm)</th>"
             "<th>QC</th></tr>"]
    for r in review_order(scores.assign(qc_flags=flags)).itertuples(index=False):
        qc = str(getattr(r, "qc", "") or "")
        pic = (f'<img src="{html.escape(Path(os.path.relpath(qc, path.parent)).as_posix())}" alt="QC">'
               if qc else "")
        notes = [str(x) for x in (getattr(r, "qc_flags", ""), getattr(r, "warning", "")) if x and str(x) != "nan"]
        notes = list(dict.fromkeys(n for note in notes for n in note.split("; ")))  # "empty mask" once
        name = html.escape(Path(str(r.image)).name)
        mask_rel = html.escape(Path(os.path.relpath(str(r.mask), path.parent)).as_posix())
        lines.append(f"<tr><td>{name}<br><small>{mask_rel}</small>"
                     + "".join(f'<br><span class="warn">{html.escape(n)}</span>' for n in notes)
                     + f"</td><td>{_cell(r.volume_ml, '{:.1f}')}</td>"
                     f"<td>{_cell(getattr(r, 'confidence', None), '{:.3f}')}</td><td>{_cell(r.dsc, '{:.2f}')}</td>"
                     f"<td>{_cell(r.hd95_mm, '{:.2f}')}</td><td>{pic}</td></tr>")
    lines += ["</table></body></html>", ""]
    return io.write_text(path, "\n".join(lines))
