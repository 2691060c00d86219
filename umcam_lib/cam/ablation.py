"""Which layers to fuse? Average-CAM and UM-CAM over subsets of layers.

Neither the paper nor the authors' code says which convolutional blocks UM-CAM fuses; this
study fuses the last ReLU of each of VGG-16's five blocks by default and measures the choice
here: every subset is fused, thresholded with its own validation-chosen threshold and scored on
the positive validation and test slices.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.artifacts import SliceSet
from .fusion import FUSIONS
from .pseudo_mask import evaluate_cam

#: Default subsets: label -> layer names (as given to ``multi_layer_gradcam``).
DEFAULT_SUBSETS: dict[str, list[str]] = {
    "block5": ["block5"],
    "block4-5": ["block4", "block5"],
    "block3-5": ["block3", "block4", "block5"],
    "block2-5": ["block2", "block3", "block4", "block5"],
    "block1-5": ["block1", "block2", "block3", "block4", "block5"],
    "block1-5 + head": ["block1", "block2", "block3", "block4", "block5", "head"],
    "block3-5 + head": ["block3", "block4", "block5", "head"],
    "head": ["head"],
}


def layer_ablation(slices: SliceSet, index: np.ndarray, layer_maps: np.ndarray, layer_names: Sequence[str],
                   grid: Sequence[float], subsets: Mapping[str, Sequence[str]] | None = None,
                   fusions: Sequence[str] = ("umcam", "average_cam")) -> pd.DataFrame:
    """Score every fusion of every layer subset as pseudo masks.

    Parameters
    ----------
    slices : SliceSet
        Ground truth and splits.
    index : ndarray, shape (n,)
        Slice rows of ``layer_maps`` (at least the positive validation and test slices).
    layer_maps : ndarray, shape (L, n, H, W)
        Per-layer CAMs in [0, 1].
    layer_names : sequence of str, length L
        Names of the layers of ``layer_maps`` (the names used in ``subsets``).
    grid : sequence of float
        Threshold grid; each row's threshold is chosen on validation.
    subsets : mapping, optional
        label -> layer names (default :data:`DEFAULT_SUBSETS`, restricted to available layers).
    fusions : sequence of str
        Keys of :data:`umcam_lib.cam.fusion.FUSIONS`.

    Returns
    -------
    DataFrame
        Columns ``layers, fusion, n_layers, threshold, val_n, val_dsc, val_dsc_std, val_hd95,
        test_n, test_dsc, test_dsc_std, test_hd95``.
    """
    layer_names = list(layer_names)
    if layer_maps.shape[0] != len(layer_names):
        raise ValueError(f"layer_maps has {layer_maps.shape[0]} layers but {len(layer_names)} names were given")
    if subsets is None:
        subsets = {k: v for k, v in DEFAULT_SUBSETS.items() if set(v) <= set(layer_names)}
    rows = []
    for label, layers in subsets.items():
        missing = [l for l in layers if l not in layer_names]
        if missing:
            raise ValueError(f"subset {label!r} uses layers {missing} that were not computed ({layer_names})")
        sel = layer_maps[[layer_names.index(l) for l in layers]]
        for fusion in fusions:
            if fusion not in FUSIONS:
                raise ValueError(f"unknown fusion {fusion!r}: use one of {sorted(FUSIONS)}")
            fused = FUSIONS[fusion](sel)
            res = evaluate_cam(slices, index, fused, grid, name=f"{fusion}[{label}]", method=fusion)
            summary = res.summary()
            rows.append({"layers": label, "fusion": fusion, "n_layers": len(layers), **{
                k: v for k, v in summary.items() if k != "method"}})
    return pd.DataFrame(rows)
