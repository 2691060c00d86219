"""Figures of notebook 01: example slices with their masks, and synthetic beside real slices."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .artifacts import SliceSet
from .nifti import find_stacks, read_stack
from .prepare import prepare_stack

MASK_COLOUR = "#ff3b30"


def _show(ax: plt.Axes, image: np.ndarray, mask: np.ndarray | None, title: str) -> None:
    """One slice in grey with its mask outline (red)."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=MASK_COLOUR, linewidths=0.9)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def pick_examples(s: SliceSet, volume: int) -> list[int]:
    """Four telling rows of one volume: largest brain, smallest brain (the partial-volume edge),
    the negative slice next to the brain, and the negative slice farthest from it.

    Returns fewer rows when the volume has no positive or no negative slice.
    """
    rows = s.volume_slices(volume)
    area = s.masks[rows].reshape(len(rows), -1).sum(axis=1)
    pos, neg = rows[area > 0], rows[area == 0]
    picks: list[int] = []
    if len(pos):
        pos_area = area[area > 0]
        picks += [int(pos[np.argmax(pos_area)]), int(pos[np.argmin(pos_area)])]
    if len(neg):
        centre = s.slice_index[pos].mean() if len(pos) else 0.0
        dist = np.abs(s.slice_index[neg] - centre)
        picks += [int(neg[np.argmin(dist)]), int(neg[np.argmax(dist)])]
    return list(dict.fromkeys(picks))


def example_slices_figure(s: SliceSet, n_volumes: int = 3, split: str = "train", seed: int = 0) -> plt.Figure:
    """Example slices of a few volumes with brain-mask outlines, positives and negatives.

    Parameters
    ----------
    s : SliceSet
    n_volumes : int
        Rows of the figure, one volume each (chosen at random in ``split`` with ``seed``,
        preferring volumes that have both positive and negative slices).
    split : str
        Split to draw volumes from.

    Returns
    -------
    Figure
        ``n_volumes`` x 4 panels: largest brain, smallest brain (label 1), nearest and farthest
        negative (label 0). Titles give the volume, the slice and the image-level label.
    """
    vols = s.volume_ids(split)
    if len(vols) == 0:
        vols = s.volumes["volume"].to_numpy()
    mixed = [v for v in vols if 0 < s.labels[s.volume == v].sum() < (s.volume == v).sum()]
    pool = np.array(mixed if len(mixed) >= min(n_volumes, len(vols)) else list(vols))
    chosen = np.sort(np.random.default_rng(seed).choice(pool, size=min(n_volumes, len(pool)), replace=False))
    fig, axes = plt.subplots(len(chosen), 4, figsize=(8.4, 2.45 * len(chosen) + 0.4), squeeze=False)
    names = ("largest brain", "smallest brain", "next to brain", "far from brain")
    for r, v in enumerate(chosen):
        picks = pick_examples(s, int(v))
        subject = s.volumes.loc[s.volumes.volume == v, "subject"].iloc[0]
        for c in range(4):
            ax = axes[r, c]
            if c >= len(picks):
                ax.axis("off")
                continue
            i = picks[c]
            what = names[c] if len(picks) == 4 else ("label 1" if s.labels[i] else "label 0")
            _show(ax, s.images[i], s.masks[i],
                  f"{subject} vol {v}, slice {s.slice_index[i]}\nlabel {s.labels[i]} ({what})")
    fig.suptitle(f"Prepared slices ({s.spacing_mm:g} mm, {s.images.shape[1]} px) with brain-mask outlines",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _largest_brain(masks: np.ndarray) -> int:
    return int(np.argmax(masks.reshape(masks.shape[0], -1).sum(axis=1)))


def phantom_vs_real_figure(s: SliceSet, real_root: str | Path, n: int = 5, seed: int = 0,
                           image_glob: str = "**/*_T2w.nii.gz", mask_suffix: str = "_desc-brain_mask",
                           real_stacks: Sequence[str] | None = None) -> plt.Figure:
    """Synthetic slices (top row) beside real stacks (bottom row), same grid and normalisation.

    Each panel is the slice with the largest brain of its volume. The real stacks are read with
    the same reader and prepared with the same resampling, normalisation and padding as ``s``.

    Parameters
    ----------
    s : SliceSet
        The synthetic slice set.
    real_root : str or Path
        Folder of real NIfTI stacks (e.g. :data:`umcam_lib.paths.SHARED_DATA`).
    n : int
        Panels per row.
    real_stacks : sequence of str, optional
        Stack names to show; default ``n`` stacks spread over the folder's sorted list.
    """
    refs = find_stacks(real_root, image_glob, mask_suffix)
    if real_stacks:
        refs = [r for r in refs if r.name in set(real_stacks)]
    else:
        refs = [refs[i] for i in np.unique(np.linspace(0, len(refs) - 1, min(n, len(refs))).round().astype(int))]
    vols = s.volumes["volume"].to_numpy()
    syn = np.sort(np.random.default_rng(seed).choice(vols, size=min(n, len(vols)), replace=False))
    cols = max(len(syn), len(refs))
    fig, axes = plt.subplots(2, cols, figsize=(2.0 * cols, 4.6), squeeze=False)
    for c in range(cols):
        if c < len(syn):
            rows = s.volume_slices(int(syn[c]))
            i = rows[_largest_brain(s.masks[rows])]
            _show(axes[0, c], s.images[i], s.masks[i], f"synthetic vol {syn[c]}, slice {s.slice_index[i]}")
        else:
            axes[0, c].axis("off")
        if c < len(refs):
            stack = read_stack(refs[c])
            images, masks, _ = prepare_stack(stack, s.spacing_mm, s.images.shape[1])
            k = _largest_brain(masks)
            _show(axes[1, c], images[k], masks[k], f"real {refs[c].name.replace('_T2w', '')}, slice {k}")
        else:
            axes[1, c].axis("off")
    fig.suptitle(f"Synthetic phantom (top) vs real fetal MRI (bottom), both at {s.spacing_mm:g} mm", fontsize=10)
    fig.tight_layout()
    return fig


def crop_labels_figure(s: SliceSet, rows: Sequence[int], crop: int, per_slice: int, min_fraction: float,
                       seed: int = 0) -> plt.Figure:
    """Slices with the outlines of their random crops: green = labelled "brain", orange = "no brain".

    Parameters
    ----------
    s : SliceSet
    rows : sequence of int
        Slices to show (one panel each).
    crop, per_slice, min_fraction, seed
        As in :func:`umcam_lib.data.weak_labels.crop_set` (the same arguments draw the same crops).

    Returns
    -------
    matplotlib Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from .weak_labels import crop_boxes, crop_labels

    rows = [int(r) for r in rows]
    boxes = crop_boxes(len(rows), int(s.images.shape[-1]), crop, per_slice, seed)
    labels = crop_labels(s.masks[rows], boxes, crop, min_fraction)
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 2.9), squeeze=False)
    for ax, row, bx, lab in zip(axes[0], rows, boxes, labels):
        _show(ax, s.images[row], s.masks[row], f"slice label {int(s.labels[row])}; crops {int(lab.sum())}/{len(lab)} brain")
        for (r, c), y in zip(bx, lab):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), crop, crop, fill=False, linewidth=1.2 if y else 0.8,
                                   edgecolor="#34c759" if y else "#ff9500", alpha=0.95 if y else 0.6))
    handles = [Line2D([], [], color="#34c759", lw=1.5, label=f'crop labelled "brain" (>= {min_fraction:.0%} of the slice\'s brain)'),
               Line2D([], [], color="#ff9500", lw=1.5, label='crop labelled "no brain"')]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
