"""The steps of notebooks 03 and 04 as functions of a ``cam`` parameter section, and their records.

The ``cam`` section (``params/quick.yaml``; checked and completed by
:func:`umcam_lib.config.check_section`, whose :class:`~umcam_lib.config.CamParams` holds the
defaults)::

    layers                 layers fused by Average-CAM and UM-CAM (block1 .. block5, head, or
                           module names)
    threshold_grid         [start, stop, step] of the validation threshold search
    batch_size             slices per Grad-CAM / Grad-CAM++ pass
    scorecam_batch_size    perturbed images per forward pass (Score-CAM, Ablation-CAM)
    scorecam_max_channels  Score-CAM channels scored per slice (null = all)
    target                 what every CAM explains: "logit" (the brain logit, the usual Grad-CAM
                           target) or "margin" (brain minus background logit, the log-odds the
                           softmax decides with)

This is the module of the CAM stage that writes: per-slice scores go to Tables 1 and 2
(:func:`umcam_lib.data.scores.record_scores`) and the chosen thresholds to ``cams/thresholds.json``
(:mod:`umcam_lib.data.thresholds`). The algorithms it calls (:mod:`.gradcam`, :mod:`.baselines`,
:mod:`.fusion`, :mod:`.pseudo_mask`, :mod:`.diagnostics`) compute only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import io
from ..data.scores import record_scores
from ..config.schema import CamParams, ClassifierParams, check_section
from ..data.artifacts import SliceSet
from ..metrics import threshold_grid
from ..data.maps import save_maps
from ..data.thresholds import save_threshold
from .baselines import BASELINE_NAMES, compute_baseline_cams
from .diagnostics import layer_localisation
from .fairness import score_readings
from .fusion import fuse_reading, norm_groups, reading_of
from .gradcam import CAM_LAYER, compute_cams
from .pseudo_mask import EVAL_SPLITS, CamEvaluation, eval_rows, evaluate_cam, score_pseudo_masks
from .. import runtime
from ..data.artifacts import load_slices
from ..paths import resolve
from ..train.classifier import load_classifier

#: Map name -> method name in Tables 1 and 2.
METHOD_NAMES: dict[str, str] = {"gradcam": "Grad-CAM", **BASELINE_NAMES,
                                "average_cam": "Average-CAM", "umcam": "UM-CAM"}

#: Every layer notebook 04 computes: the five VGG blocks and the class-map convolution.
STUDY_LAYERS = ["block1", "block2", "block3", "block4", "block5", "head"]

def check_cam_config(cam: CamParams | Mapping[str, Any]) -> CamParams:
    """The ``cam`` section checked against the schema, missing keys at their defaults
    (:func:`umcam_lib.config.check_section`; a bad value raises ``ParameterError``)."""
    return check_section("cam", cam)


@dataclass(frozen=True)
class CamStage:
    """What notebooks 03 and 04 start from (:func:`open_cam_stage`).

    Attributes
    ----------
    slices : SliceSet
        The prepared slices of the run (notebook 01).
    model : nn.Module
        The trained classifier of the run (notebook 02, its first seed), on ``device``.
    device : torch.device
    cam : CamParams
        The checked ``cam`` section.
    grid : ndarray, float, shape (k,)
        The CAM thresholds the validation split chooses from (``cam.threshold_grid``).
    figures_dir : Path
    """

    slices: SliceSet
    model: nn.Module
    device: torch.device
    cam: CamParams
    grid: np.ndarray
    figures_dir: Path

    def describe(self, profile: str) -> str:
        """One line: slices, their size and spacing, the device and the threshold range."""
        s = self.slices
        return (f"profile {profile}: {len(s)} slices of {s.images.shape[1]}x{s.images.shape[2]} px "
                f"at {s.spacing_mm} mm, device {self.device}, thresholds {self.grid[0]:.2f}..{self.grid[-1]:.2f}")


def open_cam_stage(run_dir: str | Path, figures_dir: str | Path, classifier: ClassifierParams | Mapping[str, Any],
                   cam: CamParams | Mapping[str, Any], *, seed: int, threads: int | None,
                   device: str = "auto") -> CamStage:
    """Set threads, seeds and device, then load the run's slices and classifier for a CAM notebook.

    Parameters
    ----------
    run_dir, figures_dir : path
        The run folder (with ``data/`` and ``classifier/``) and the figures folder.
    classifier, cam : section
        The ``classifier`` section (its architecture rebuilds the checkpoint) and ``cam`` section.
    seed, threads, device
        The profile's ``seed``, ``threads`` and ``device``.
    """
    runtime.set_threads(threads)
    runtime.seed_everything(seed)
    dev = runtime.select_device(device)
    fig_dir = resolve(figures_dir)
    cam = check_cam_config(cam)
    grid = threshold_grid(cam["threshold_grid"])
    slices = load_slices(run_dir)
    model = load_classifier(resolve(run_dir) / "classifier", classifier, device=dev)
    return CamStage(slices=slices, model=model, device=dev, cam=cam, grid=grid, figures_dir=fig_dir)


def study_layers(fused: Sequence[str]) -> list[str]:
    """The fused layers followed by the other :data:`STUDY_LAYERS` (no duplicates)."""
    return list(dict.fromkeys([*fused, *STUDY_LAYERS]))


def compute_cam_variants(model: nn.Module, images: np.ndarray, cam: CamParams | Mapping[str, Any],
                         device: str | torch.device | None = None, amp: bool = False,
                         progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Grad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM on ``block5`` for a stack of slices.

    Parameters
    ----------
    model : nn.Module
        The trained classifier (not modified).
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    cam : mapping
        The ``cam`` parameter section.

    Returns
    -------
    maps : dict
        Map name (``gradcam``, ``gradcam_pp``, ``scorecam``, ``ablationcam``) -> float16 [N, H, W].
    seconds : dict
        Map name -> wall-clock seconds it took.
    """
    cam = check_cam_config(cam)
    maps: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    maps["gradcam"] = compute_cams(model, images, [CAM_LAYER], batch_size=cam.batch_size,
                                   device=device, amp=amp, progress=progress, target=cam.target)[0]
    seconds["gradcam"] = time.perf_counter() - t0
    for method in BASELINE_NAMES:
        t0 = time.perf_counter()
        maps[method] = compute_baseline_cams(
            model, images, method, layer=CAM_LAYER, batch_size=cam.batch_size,
            method_batch_size=cam.scorecam_batch_size, max_channels=cam.scorecam_max_channels,
            device=device, progress=progress, target=cam.target)
        seconds[method] = time.perf_counter() - t0
    return maps, seconds


def fuse_layers(layer_maps: np.ndarray, layer_names: Sequence[str], fused: Sequence[str],
                cam: CamParams | Mapping[str, Any] | None = None, peaks: np.ndarray | None = None,
                rows: np.ndarray | None = None, volumes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Grad-CAM (``block5``), Average-CAM and UM-CAM of ``fused`` layers from per-layer maps.

    Parameters
    ----------
    layer_maps : ndarray, shape (L, N, H, W)
        Per-layer CAMs in [0, 1], layer ``i`` named ``layer_names[i]``.
    fused : sequence of str
        The layers Average-CAM and UM-CAM combine (``cam.layers``).
    cam : mapping, optional
        The checked ``cam`` section: its reading of Eq. 3-4 (``umcam_norm``, ``entropy_base``,
        ``entropy_temperature``, ``umcam_final_norm``; :func:`umcam_lib.cam.fusion.fuse_reading`).
        None or the defaults: the paper's reading, the same maps bit for bit.
    peaks : ndarray, shape (L, N), optional
        Raw maxima of the maps (``compute_cams(..., return_peaks=True)``); needed by the
        ``batch_max`` and ``volume_max`` readings.
    rows, volumes : ndarray, optional
        Slice rows of the maps and the volume of every slice (``SliceSet.volume``): the groups of
        those readings (batches of ``cam.batch_size`` maps, or volumes).

    Returns
    -------
    dict
        ``gradcam``, ``average_cam``, ``umcam`` -> float16 [N, H, W].
    """
    names = list(layer_names)
    missing = [l for l in [*fused, CAM_LAYER] if l not in names]
    if missing:
        raise ValueError(f"layers {missing} were not computed (have {names})")
    idx = [names.index(l) for l in fused]
    sel = layer_maps[idx]
    reading = reading_of(cam or {})
    groups = None
    if reading["norm"] in ("batch_max", "volume_max"):
        if peaks is None or rows is None or volumes is None:
            raise ValueError(f"cam.umcam_norm={reading['norm']!r} needs the maps' peaks, rows and volumes")
        positions = np.arange(len(rows)) if reading["norm"] == "batch_max" else np.asarray(rows)
        groups = norm_groups(reading["norm"], positions, volumes, int((cam or {}).get("batch_size", 64)))
        peaks = np.asarray(peaks)[idx]
    extra = dict(peaks=peaks, groups=groups) if groups is not None else {}
    return {"gradcam": np.asarray(layer_maps[names.index(CAM_LAYER)], dtype=np.float16),
            "average_cam": np.asarray(fuse_reading(sel, "average_cam", **reading, **extra), dtype=np.float16),
            "umcam": np.asarray(fuse_reading(sel, "umcam", **reading, **extra), dtype=np.float16)}


#: The fused maps UNets train on (Grad-CAM and UM-CAM labels; SPL grows from UM-CAM).
LABEL_MAPS = ("gradcam", "umcam")


def evaluate_seed(model: nn.Module, slices: SliceSet, run_dir: str | Path, cam: CamParams | Mapping[str, Any],
                  seed: int, stage: str, device: str | torch.device | None = None, amp: bool = False,
                  primary: bool = False, labels_dir: str | Path | None = None) -> dict[str, Any]:
    """Score one seed's classifier as notebook 03 (``stage="variants"``) or 04 (``"fusion"``) does.

    Computes the CAMs on the positive validation and test slices only, chooses each method's
    threshold on validation and records the rows with ``seed`` (Table 2 for the variants,
    Table 1 for Grad-CAM / Average-CAM / UM-CAM). ``primary`` also stores the thresholds that
    notebooks 05-07 read; an extra seed leaves them alone.

    ``labels_dir`` (``"fusion"`` only; the crossed design, :mod:`umcam_lib.train.label_seeds`):
    this seed's labels feed a UNet seed, so its maps are computed for every slice, as the primary
    seed's are in notebook 04, and stored with their thresholds in ``labels_dir/cams/``.

    Returns
    -------
    dict
        ``results`` (map name -> CamEvaluation) and, for ``"fusion"``, ``localisation``
        (:func:`umcam_lib.cam.diagnostics.layer_localisation` on validation).
    """
    cam = check_cam_config(cam)
    grid = threshold_grid(cam.threshold_grid)
    rows = eval_rows(slices)
    names = METHOD_NAMES
    if stage == "variants":
        if labels_dir is not None:
            raise ValueError("labels_dir belongs to the fusion stage (notebook 04), not the variants")
        maps, _ = compute_cam_variants(model, slices.images[rows], cam, device=device, amp=amp, progress=False)
        results = evaluate_and_record(run_dir, slices, "table2", {n: (rows, m) for n, m in maps.items()},
                                      grid, names, seed=seed, keep_thresholds=primary)
        return {"results": results}
    if stage == "fusion":
        if labels_dir is not None:
            rows = np.arange(len(slices))
        layer_names = study_layers(cam.layers)
        layer_maps, peaks = compute_cams(model, slices.images[rows], layer_names, batch_size=cam.batch_size,
                                         device=device, amp=amp, progress=False, target=cam.target,
                                         return_peaks=True)
        fused = fuse_layers(layer_maps, layer_names, cam.layers, cam, peaks=peaks, rows=rows,
                            volumes=slices.volume)
        results = evaluate_and_record(run_dir, slices, "table1", {n: (rows, m) for n, m in fused.items()},
                                      grid, names, seed=seed, keep_thresholds=primary)
        if labels_dir is not None:
            for name in LABEL_MAPS:
                save_maps(labels_dir, "cams", name, rows, fused[name])
                save_threshold(labels_dir, name, results[name].threshold)
        loc = layer_localisation(model, slices, "val", cam.layers, target=cam.target,
                                 grid=cam.threshold_grid, batch_size=cam.batch_size, device=device)
        return {"results": results, "localisation": loc.assign(seed=seed)}
    raise ValueError(f"stage must be 'variants' or 'fusion', got {stage!r}")


def evaluate_extra_seeds(models: Mapping[int, nn.Module], slices: SliceSet, run_dir: str | Path,
                         cam: CamParams | Mapping[str, Any], stage: str, device: str | torch.device | None = None,
                         amp: bool = False, labels_dirs: Mapping[int, str | Path] | None = None) -> pd.DataFrame:
    """:func:`evaluate_seed` for the classifiers of the extra seeds (seed -> trained model; the
    primary seed is scored by the notebook itself); ``labels_dirs`` (seed -> folder) stores the
    maps of the seeds whose labels a UNet trains on.

    Returns
    -------
    DataFrame
        One row per extra seed, method and split: ``seed, method, split, threshold, dsc``; for
        ``"fusion"`` also the per-layer localisation rows (``method`` = layer name, ``pointing``).
    """
    out = []
    for s, model in models.items():
        res = evaluate_seed(model, slices, run_dir, cam, int(s), stage, device=device, amp=amp,
                            labels_dir=(labels_dirs or {}).get(int(s)))
        for r in res["results"].values():
            for split, df in r.scores.items():
                out.append({"seed": s, "method": r.method, "split": split, "threshold": r.threshold,
                            "dsc": float(df["dsc"].mean())})
        if "localisation" in res:
            for r in res["localisation"].itertuples():
                out.append({"seed": s, "method": r.layer, "split": "val", "threshold": r.threshold,
                            "dsc": r.dsc, "pointing": r.pointing})
    return pd.DataFrame(out)


#: Per-seed scores of every reading of Eq. 3-4 and the LayerCAM rows (notebook 04 -> notebook 08).
READINGS_FILE = "cams/fusion_readings.csv"


def score_readings_over_seeds(models: Mapping[int, nn.Module], slices: SliceSet, run_dir: str | Path,
                              cam: CamParams | Mapping[str, Any], device: str | torch.device | None = None,
                              amp: bool = False) -> pd.DataFrame:
    """:func:`umcam_lib.cam.fairness.score_readings` for every seed's classifier, written to
    ``<run_dir>/cams/fusion_readings.csv`` (atomically) and returned (rows of all seeds)."""
    cam = check_cam_config(cam)
    frames = [score_readings(m, slices, cam, int(s), device=device, amp=amp) for s, m in models.items()]
    df = pd.concat(frames, ignore_index=True)
    with io.atomic_path(Path(run_dir) / READINGS_FILE) as tmp:
        df.to_csv(tmp, index=False)
    return df


def load_reading_scores(run_dir: str | Path) -> pd.DataFrame | None:
    """The scores :func:`score_readings_over_seeds` wrote, or None when notebook 04 skipped them."""
    path = Path(run_dir) / READINGS_FILE
    return pd.read_csv(path) if path.is_file() else None


# ----------------------------------------------------------------------------- records
def record_evaluation(run_dir: str | Path, table: str, result: CamEvaluation,
                      save_threshold_as: str | None = None, seed: int | None = None,
                      keep_threshold: bool = True) -> None:
    """Record a :class:`CamEvaluation` in ``table``'s pseudo-mask section and store its threshold.

    Parameters
    ----------
    table : {"table1", "table2"}
        Which table's ``pseudo_mask`` section the rows belong to.
    save_threshold_as : str, optional
        Key in ``thresholds.json`` (default: ``result.name``).
    seed : int, optional
        Seed of the classifier the maps came from (rows of several seeds get a seed spread).
    keep_threshold : bool
        Store the threshold in ``thresholds.json`` (the maps later notebooks read: only the
        primary seed's).
    """
    for split, df in result.scores.items():
        record_scores(run_dir, table, "pseudo_mask", result.method, split,
                             df["id"].to_numpy(), df["dsc"].to_numpy(), df["hd95"].to_numpy(), seed=seed)
    if keep_threshold:
        save_threshold(run_dir, save_threshold_as or result.name, result.threshold)


def evaluate_and_record(run_dir: str | Path, slices: SliceSet, table: str,
                        maps_by_name: Mapping[str, tuple[np.ndarray, np.ndarray]], grid: Sequence[float],
                        method_names: Mapping[str, str], seed: int | None = None,
                        keep_thresholds: bool = True) -> dict[str, CamEvaluation]:
    """Evaluate several CAMs, record their Table rows and thresholds.

    Parameters
    ----------
    maps_by_name : mapping
        map name -> ``(index [n], maps [n, H, W])``.
    method_names : mapping
        map name -> name in the table (e.g. ``{"umcam": "UM-CAM"}``).
    seed, keep_thresholds
        See :func:`record_evaluation`.

    Returns
    -------
    dict
        map name -> :class:`CamEvaluation`.
    """
    out = {}
    for name, (index, maps) in maps_by_name.items():
        res = evaluate_cam(slices, index, maps, grid, name, method_names.get(name, name))
        record_evaluation(run_dir, table, res, seed=seed, keep_threshold=keep_thresholds)
        out[name] = res
    return out


#: Table name of the floor row: a pseudo mask covering the whole slice.
FLOOR_METHOD = "All-foreground"


def record_floor(run_dir: str | Path, slices: SliceSet, tables: Sequence[str] = ("table1", "table2")) -> pd.DataFrame:
    """Record the all-foreground pseudo mask (every pixel "brain") as a row of ``tables``.

    Every pseudo-mask row must beat this floor: a CAM that does not localise at all, thresholded
    low enough, gives it. Scored on the positive validation and test slices like the CAMs.

    Returns
    -------
    DataFrame
        ``split, n, dsc, hd95`` (means).
    """
    out = []
    for split in EVAL_SPLITS:
        rows = slices.positive_rows([split])
        if rows.size == 0:
            continue
        ones = np.ones((rows.size, *slices.images.shape[1:]), dtype=np.float32)
        dsc, hd = score_pseudo_masks(ones, slices.masks[rows], 0.5)
        for table in tables:
            record_scores(run_dir, table, "pseudo_mask", FLOOR_METHOD, split, rows, dsc, hd)
        out.append({"split": split, "n": int(rows.size), "dsc": float(np.mean(dsc)), "hd95": float(np.mean(hd))})
    return pd.DataFrame(out)
