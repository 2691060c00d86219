"""The method on one slice: every intermediate of UM-CAM + SPL, from the image to the UNet.

Drawn at the end of notebook 06, the first point where every stage exists, from the run's own
artifacts: the slice set (``data/``), the classifier of notebook 02 (``classifier/best.pt``),
the stored UM-CAM and thresholds of notebook 04 (``cams/umcam.npz``, ``cams/thresholds.json``),
the GSE settings and SPL of notebook 05 (``spl/gse_choice.json``, ``spl/spl.npz``) and the test
predictions of the UM-CAM+SPL UNet of notebook 06 (``seg/UM-CAM+SPL/pred_test.npz``). Only the
per-block CAMs of the one slice are recomputed (one forward/backward pass of the classifier);
the rest is read, and :func:`method_panels` checks that what it recomputes (UM-CAM, SPL) equals
what the run stored. UM-CAM is recomputed under the reading of Eq. 3-4 that notebook 04 chose on
validation (:func:`notebook04_cam`); a reading normalised per batch or per volume needs the maps
of the slice's whole batch or volume, so those are recomputed too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..cam import fairness
from ..cam.fusion import entropy_weights, fuse_reading, norm_groups, reading_of
from ..config.schema import CamParams, ClassifierParams, GseParams, SegParams, check_section
from ..cam.gradcam import compute_cams
from ..data import load_slices
from ..gse.figures import pick_examples
from ..gse.pseudo_labels import explain
from ..gse.threshold import resolve_threshold
from ..io import save_figure
from ..losses import spl_share
from ..data.maps import load_maps
from ..metrics import dice
from ..data.thresholds import load_thresholds
from ..train.classifier import load_classifier
from ..train.seg_predict import load_predictions

VARIANT = "UM-CAM+SPL"

#: Notebook 04's scores of every reading of Eq. 3-4 (``umcam_lib.cam.study.READINGS_FILE``).
READINGS_FILE = "cams/fusion_readings.csv"


def _row_of(index: np.ndarray, row: int) -> int:
    hit = np.flatnonzero(np.asarray(index) == row)
    if hit.size == 0:
        raise KeyError(row)
    return int(hit[0])


def notebook04_cam(run_dir: str | Path, cam: CamParams | Mapping[str, Any]) -> CamParams:
    """The ``cam`` section under the reading of Eq. 3-4 that notebook 04 chose on validation (its
    rule, :func:`umcam_lib.cam.fairness.choose_reading`, applied to ``cams/fusion_readings.csv``);
    ``cam`` itself when the run compared no readings."""
    cam = check_section("cam", cam)
    path = Path(run_dir) / READINGS_FILE
    if not cam.readings or not path.is_file():
        return cam
    chosen = fairness.choose_reading(fairness.summarise_readings(pd.read_csv(path)))
    return fairness.reading_section(cam, str(chosen["reading"]))


def method_panels(run_dir: str | Path, classifier: ClassifierParams | Mapping[str, Any],
                  cam: CamParams | Mapping[str, Any],
                  gse: GseParams | Mapping[str, Any], seg: SegParams | Mapping[str, Any], row: int | None = None,
                  device: str = "cpu") -> dict[str, Any]:
    """Every intermediate of the method for one test slice of a finished run (notebooks 01-06).

    Parameters
    ----------
    run_dir : path
        The run folder.
    classifier, cam, gse, seg : mapping
        The run's parameter sections (``params["classifier"]`` etc.): the classifier's
        architecture, the fused layers ``cam.layers`` and ``cam.target``, the threshold rule
        ``gse.threshold_rule``, and the Eq. 8 reading ``seg.loss_main`` / weight ``seg.lambda_spl``.
    row : int, optional
        Row of the slice set; by default the test slice of median brain area among those with an
        SPL and a UNet prediction.
    device : str
        Where the classifier computes the per-block CAMs.

    Returns
    -------
    dict
        ``row``, ``image`` and ``gt`` [H, W]; ``layers`` (names); ``cams`` and ``weights``
        [L, H, W] (Eq. 1-2, Eq. 3); ``umcam`` [H, W] (Eq. 4, recomputed) and
        ``umcam_stored_diff`` (max abs difference to ``cams/umcam.npz``); ``threshold``;
        ``seeds`` (the :func:`umcam_lib.gse.explain` dict: mask, component, fg, bg, d_f, d_b, e_f,
        e_b, spl); ``spl_stored_diff``; ``y_um`` (UM-CAM pseudo mask, the first label of Eq. 8);
        ``share`` (the SPL's share ``w`` of Eq. 8), ``loss_main``, ``lambda``; ``pred`` [H, W]
        (the UNet's P(brain)) and ``dice`` (2D, %, of ``pred > 0.5``).

    Raises
    ------
    FileNotFoundError
        When an artifact of notebooks 02-06 is missing (the message names it).
    ValueError
        When no test slice has both an SPL and a prediction, or ``row`` has not.
    """
    cam, gse, seg = check_section("cam", cam), check_section("gse", gse), check_section("seg", seg)
    run = Path(run_dir)
    for rel in ("classifier/best.pt", "cams/umcam.npz", "spl/spl.npz", "spl/gse_choice.json",
                f"seg/{VARIANT}/pred_test.npz"):
        if not (run / rel).is_file():
            raise FileNotFoundError(f"{run / rel} is missing: run notebooks 02-06 into {run} first")
    slices = load_slices(run)
    spl_index, spl_maps = load_maps(run, "spl", "spl")
    pred_index, pred_probs = load_predictions(run, VARIANT, "test")
    candidates = np.intersect1d(spl_index, pred_index)
    candidates = candidates[slices.split[candidates] == "test"]
    if row is None:
        if candidates.size == 0:
            raise ValueError(f"{run}: no test slice has both an SPL and a {VARIANT} prediction")
        picks = pick_examples(slices, candidates, k=3, splits=("test",))
        row = int(picks[len(picks) // 2])
    elif int(row) not in set(candidates.tolist()):
        raise ValueError(f"row {row} is not a test slice with an SPL and a {VARIANT} prediction")
    row = int(row)
    image = np.asarray(slices.images[row], np.float32)

    model = load_classifier(run / "classifier", classifier, device=device)
    layers = list(cam.layers)
    cams = compute_cams(model, image[None], layers, batch_size=1, device=device, progress=False,
                        target=cam.target).astype(np.float32)            # [L, 1, H, W]
    weights = np.asarray(entropy_weights(cams), np.float32)[:, 0]
    used = notebook04_cam(run, cam)
    members = np.array([row])
    norm = reading_of(used)["norm"]
    if norm in ("batch_max", "volume_max"):  # the slice's maps were normalised with its batch or volume
        everything = np.arange(len(slices))
        groups = norm_groups(norm, everything, slices.volume, int(used.batch_size))
        members = everything[groups == groups[row]]
    group_maps, peaks = compute_cams(model, slices.images[members], list(used.layers), batch_size=used.batch_size,
                                     device=device, progress=False, target=used.target, return_peaks=True)
    grouped = norm in ("batch_max", "volume_max")  # members are one group: the slice's batch or volume
    extra = {"peaks": np.asarray(peaks), "groups": np.zeros(len(members), int)} if grouped else {}
    fused = np.asarray(fuse_reading(np.asarray(group_maps, np.float32), "umcam", **reading_of(used), **extra),
                       np.float32)[int(np.flatnonzero(members == row)[0])]
    um_index, um_maps = load_maps(run, "cams", "umcam")
    stored_um = np.asarray(um_maps[_row_of(um_index, row)], np.float32)

    choice = json.loads((run / "spl" / "gse_choice.json").read_text())
    threshold = resolve_threshold(gse.threshold_rule, load_thresholds(run))
    seeds = explain(image, stored_um, threshold=threshold, grid=cam.threshold_grid, **choice["settings"])
    stored_spl = np.asarray(spl_maps[_row_of(spl_index, row)], np.float32)
    spl_diff = float(np.abs(np.asarray(seeds["spl"], np.float32) - stored_spl).max()) if seeds["spl"] is not None \
        else float("nan")

    t_um = float(load_thresholds(run)["umcam"])
    pred = np.asarray(pred_probs[_row_of(pred_index, row)], np.float32)
    gt = np.asarray(slices.masks[row]).astype(bool)
    return dict(row=row, split="test", image=image, gt=gt, layers=layers, cams=cams[:, 0], weights=weights,
                umcam=fused, umcam_stored_diff=float(np.abs(fused - stored_um).max()), threshold=seeds["threshold"],
                seeds=seeds, spl=stored_spl, spl_stored_diff=spl_diff, y_um=(stored_um >= t_um).astype(np.float32),
                umcam_threshold=t_um, beta=float(choice["settings"].get("beta", gse.beta)),
                loss_main=seg.loss_main, **{"lambda": seg.lambda_spl},
                share=spl_share(seg.lambda_spl, seg.loss_main), pred=pred,
                dice=float(dice(pred > 0.5, gt)))


#: Lowest cue value the Eq. 6-7 panels colour (their log scale spans 1e-6 to 1).
CUE_FLOOR = 1e-6


def _show(fig: Any, ax: Any, data: np.ndarray, title: str, cmap: str = "magma", vmin: float | None = 0.0,
          vmax: float | None = 1.0, label: str = "", gt: np.ndarray | None = None, log: bool = False) -> None:
    if log:  # a cue exp(-beta D) spans many decades: a linear scale shows one bright dot at the seed
        from matplotlib.colors import LogNorm

        im = ax.imshow(np.clip(data, vmin, vmax), cmap=cmap, norm=LogNorm(vmin=vmin, vmax=vmax))
    else:
        im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax)
    if gt is not None and gt.any():
        ax.contour(gt.astype(float), levels=[0.5], colors=["lime"], linewidths=0.7)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if cmap != "gray":
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=6)
        if label:
            cb.set_label(label, fontsize=6)


def plot_method_overview(p: Mapping[str, Any]) -> Any:
    """The figure of :func:`method_panels`: four rows, image to UNet, each panel with its equation.

    Row 1: the slice and the Grad-CAM of each block (Eq. 1-2); row 2: the true mask (shown for
    reading only) and each block's entropy weight (Eq. 3); row 3: UM-CAM (Eq. 4), the seeds, the
    geodesic distances (Eq. 5) and EGD cues (Eq. 6-7); row 4: the two labels of Eq. 8, the
    UNet's probability and its mask against the truth. Every map has a colour bar; the green
    outline is the true brain.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    layers = list(p["layers"])
    ncol = max(6, len(layers) + 1)
    fig, axes = plt.subplots(4, ncol, figsize=(2.45 * ncol, 2.3 * 4), squeeze=False)
    img, gt, sd = p["image"], p["gt"], p["seeds"]
    _show(fig, axes[0, 0], img, f"{p['split']} slice {p['row']}", cmap="gray", vmin=0, vmax=1)
    for j, name in enumerate(layers, start=1):
        _show(fig, axes[0, j], p["cams"][j - 1], f"Grad-CAM {name} (Eq. 1-2)", cmap="jet", label="CAM")
    _show(fig, axes[1, 0], gt.astype(float), "true mask (evaluation only)", cmap="gray", vmin=0, vmax=1)
    for j, name in enumerate(layers, start=1):
        _show(fig, axes[1, j], p["weights"][j - 1], f"weight {name} (Eq. 3)", cmap="viridis", vmin=0.5, vmax=1.0,
              label="exp(-H)")
    _show(fig, axes[2, 0], p["umcam"], "UM-CAM (Eq. 4)", cmap="jet", label="UM-CAM", gt=gt)
    ax = axes[2, 1]
    _show(fig, ax, img, f"seeds: UM-CAM >= {float(p['threshold']):.2f}", cmap="gray", vmin=0, vmax=1)
    comp = np.asarray(sd["component"])
    if comp.any() and not comp.all():
        ax.contour(comp.astype(float), levels=[0.5], colors=["yellow"], linewidths=0.8)
    for pts, color, marker in ((sd["fg"], "red", "o"), (sd["bg"], "cyan", "s")):
        if pts:
            r, c = zip(*pts)
            ax.scatter(c, r, s=30, c=color, marker=marker, edgecolors="white", linewidths=0.5, zorder=3)
    if sd["spl"] is not None:
        d_f, d_b = np.asarray(sd["d_f"]), np.asarray(sd["d_b"])
        vmax = float(np.percentile(np.concatenate([d_f.ravel(), d_b.ravel()]), 99)) or 1.0
        _show(fig, axes[2, 2], d_f, "D_f: to brain seed (Eq. 5)", vmax=vmax, label="geodesic distance", gt=gt)
        _show(fig, axes[2, 3], d_b, "D_b: to background seeds (Eq. 5)", vmax=vmax, label="geodesic distance", gt=gt)
        for ax, key, title in ((axes[2, 4], "e_f", "E_f = exp(-β D_f) (Eq. 6)"),
                               (axes[2, 5], "e_b", "E_b = exp(-β D_b) (Eq. 7)")):
            _show(fig, ax, np.asarray(sd[key]), f"{title}\nβ = {float(p['beta']):g}, log colour scale", cmap="viridis",
                  vmin=CUE_FLOOR, vmax=1.0, label="cue (log scale)", gt=gt, log=True)
    else:
        for ax in axes[2, 2:6]:
            ax.text(0.5, 0.5, "no UM-CAM component:\nno seeds, no SPL", ha="center", va="center", fontsize=8)
    _show(fig, axes[3, 0], p["y_um"], f"Y_UM: UM-CAM >= {p['umcam_threshold']:.2f} (Eq. 8)", cmap="RdBu_r",
          label="target", gt=gt)
    _show(fig, axes[3, 1], p["spl"], "Y_SPL = E_f / (E_f + E_b) (Eq. 8)", cmap="RdBu_r", label="target", gt=gt)
    reading = ("CE(Y_UM) + λ CE(Y_SPL)" if p["loss_main"] == "umcam" else "CE(Y_SPL) + λ CE(Y_UM)")
    _show(fig, axes[3, 2], p["pred"], f"UNet P(brain), {reading}\nλ = {p['lambda']:g}, SPL share w = "
          f"{p['share']:.2f} (Eq. 8)", cmap="RdBu_r", label="P(brain)", gt=gt)
    ax = axes[3, 3]
    _show(fig, ax, img, f"UNet > 0.5 (red) vs truth (green)\nthis slice's 2D DSC {p['dice']:.0f} %",
          cmap="gray", vmin=0, vmax=1)
    m = p["pred"] > 0.5
    if m.any() and not m.all():
        ax.contour(m.astype(float), levels=[0.5], colors=["red"], linewidths=0.8)
    if gt.any():
        ax.contour(gt.astype(float), levels=[0.5], colors=["lime"], linewidths=0.8)
    for ax in list(axes[3, 4:]) + list(axes[0, len(layers) + 1:]) + list(axes[1, len(layers) + 1:]):
        ax.axis("off")
    axes[3, 4].text(0.0, 0.5, "green outline: the true brain,\nshown for reading only;\nno step of the method sees it.\n"
                    "Equations: docs/method.md", fontsize=8, va="center")
    fig.suptitle("UM-CAM + SPL on one slice: per-block CAMs, entropy weights, fusion, seeds, geodesic cues, "
                 "SPL and the UNet trained on them", fontsize=10)
    fig.tight_layout()
    return fig


def write_method_overview(run_dir: str | Path, figures_dir: str | Path,
                          classifier: ClassifierParams | Mapping[str, Any],
                          cam: CamParams | Mapping[str, Any], gse: GseParams | Mapping[str, Any],
                          seg: SegParams | Mapping[str, Any],
                          row: int | None = None, device: str = "cpu") -> tuple[Path, dict[str, Any]]:
    """Draw :func:`plot_method_overview` for a run and save ``<figures_dir>/method_overview.png``.

    Returns
    -------
    (path, panels)
        The PNG written and the :func:`method_panels` dict it was drawn from.
    """
    import matplotlib.pyplot as plt

    panels = method_panels(run_dir, classifier, cam, gse, seg, row=row, device=device)
    fig = plot_method_overview(panels)
    path = save_figure(fig, Path(figures_dir) / "method_overview.png")
    plt.close(fig)
    return path, panels


def describe_method_overview(panels: Mapping[str, Any]) -> str:
    """One sentence on the slice of the method figure, read from :func:`method_panels`."""
    sd = panels["seeds"]
    seeds = (f"1 brain seed and {len(sd['bg'])} background seeds" if sd["fg"] else "no seeds (empty UM-CAM component)")
    return (f"Slice {panels['row']} ({panels['split']}): UM-CAM thresholded at {float(panels['threshold']):.2f} gives "
            f"{seeds}; the UNet's mask scores {panels['dice']:.1f} % Dice on this slice. Recomputed vs stored: "
            f"UM-CAM max difference {panels['umcam_stored_diff']:.3f}, SPL {panels['spl_stored_diff']:.3f} "
            f"(float16 storage).")
