"""The DRS and AMR labels of the other classifier seeds (the crossed design of notebook 07).

In the crossed design (:mod:`umcam_lib.train.label_seeds`) the ``k``-th UNet seed of the DRS and
AMR rows trains on labels that the ``k``-th classifier seed made: both baselines are fine-tuned
from that seed's classifier (:func:`umcam_lib.baselines.tasks.fine_tune_baselines` with
``extra_seeds``), their maps are read as the primary seed's are (the DRS readout validation chose
for it), thresholded on validation, and turned into targets. Everything is written in the seed's
own folder (``seeds/seed-<s>/``: ``baselines/<kind>/``, ``cams/drs.npz``, ``cams/amr.npz`` and
their thresholds), never in the run folder's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config.schema import BaselinesParams, ClassifierParams
from ..data.artifacts import SliceSet
from ..data.maps import save_maps
from ..train.classifier import load_classifier
from .amr import amr_cams, train_amr
from .drs import cam_rows, drs_cams, evaluate_baseline_cam, train_drs


def seed_baseline_targets(slices: SliceSet, folders: Mapping[int, str | Path],
                          classifier: ClassifierParams | Mapping[str, Any],
                          baselines: BaselinesParams | Mapping[str, Any], grid: Sequence[float], drs_readout: str,
                          batch_size: int = 64, device: str | torch.device = "auto",
                          amp: bool = True) -> dict[Path, dict[str, dict[str, Any]]]:
    """Targets of the DRS and AMR rows from each extra classifier seed's finished fine-tunes.

    Parameters
    ----------
    folders : mapping
        Classifier seed -> its labels folder (:func:`umcam_lib.train.label_seeds.labels_dir`),
        whose ``baselines/drs`` and ``baselines/amr`` hold finished fine-tunes (they are trained
        here if not).
    grid : sequence of float
        Candidate thresholds.
    drs_readout : {"suppressed", "unsuppressed"}
        The DRS readout validation chose for the primary seed.

    Returns
    -------
    dict
        Folder -> ``{"DRS": targets, "AMR": targets}``
        (:func:`umcam_lib.baselines.drs.pseudo_label_targets`).
    """
    if drs_readout not in ("suppressed", "unsuppressed"):
        raise ValueError(f"drs_readout must be 'suppressed' or 'unsuppressed', got {drs_readout!r}")
    rows = cam_rows(slices)
    out: dict[Path, dict[str, dict[str, Any]]] = {}
    for seed, folder in folders.items():
        folder = Path(folder)
        spotlight = load_classifier(folder / "classifier", classifier, device=device)
        drs_model, _ = train_drs(slices, classifier, baselines, folder / "baselines" / "drs", init=spotlight,
                                 device=device, amp=amp, seed=int(seed), progress=False)
        amr_model, _ = train_amr(slices, classifier, baselines, folder / "baselines" / "amr", spotlight,
                                 device=device, amp=amp, seed=int(seed), progress=False)
        maps = {"drs": drs_cams(drs_model, slices.images[rows], batch_size=batch_size, device=device, amp=amp,
                                progress=False, suppress=drs_readout == "suppressed"),
                "amr": amr_cams(amr_model, slices.images[rows], batch_size=batch_size, device=device, amp=amp,
                                progress=False)}
        targets = {}
        for name, method in (("drs", "DRS"), ("amr", "AMR")):
            save_maps(folder, "cams", name, rows, maps[name])
            _, targets[method] = evaluate_baseline_cam(folder, slices, rows, maps[name], grid, name, method)
        out[folder] = targets
    return out


__all__ = ["seed_baseline_targets"]
