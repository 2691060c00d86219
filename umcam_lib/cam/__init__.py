"""Class activation maps: multi-layer Grad-CAM, the CAM baselines, Average-CAM and UM-CAM,
and their evaluation as pseudo masks.

- :mod:`.gradcam`      ``multi_layer_gradcam`` (METHOD Eq. 1-2, one forward + one backward pass),
  ``compute_cams`` (a stack of slices, batch by batch)
- :mod:`.baselines`    Grad-CAM++, Score-CAM, Ablation-CAM, LayerCAM through pytorch-grad-cam
- :mod:`.fusion`       ``average_cam``, ``umcam`` (Eq. 3-4), ``entropy_weights``
- :mod:`.pseudo_mask`  validation-chosen threshold, Dice / HD95 of pseudo masks
- :mod:`.ablation`     fusing subsets of layers
- :mod:`.figures`      CAM grids, entropy weights, threshold curves
- :mod:`.study`        the steps of notebooks 03 and 04 from the ``cam`` parameter section, per seed,
  and their records (Tables 1-2 rows, ``cams/thresholds.json``): the only module here that writes
- :mod:`.fairness`     is the fusion comparison fair? weights by region, leave-one-out, readings of
  Eq. 3-4 and LayerCAM over seeds (notebook 04)
- :mod:`.diagnostics`  does the classifier / each layer's CAM look at the brain (pointing game,
  per-layer Dice, erase-the-brain test)

Map names (``runs/<profile>/cams/<name>.npz`` and keys of ``cams/thresholds.json``) and the
method names used in the tables are listed in :data:`METHOD_NAMES`.

This package's ``__init__`` gathers the names the notebooks use; library modules import the
submodule they need (``from ..cam.gradcam import compute_cams``), never the package, so a lower
stage does not depend on :mod:`.study`'s records (``tests/test_layers.py``).
"""
from ..data.thresholds import load_threshold, load_thresholds, save_threshold
from .ablation import DEFAULT_SUBSETS, layer_ablation
from .baselines import BASELINE_NAMES, baseline_cam, compute_baseline_cams
from .fusion import average_cam, binary_entropy, entropy_weights, umcam
from .gradcam import (CAM_LAYER, compute_cams, multi_layer_gradcam, resolve_layer_names, upsample_normalise,
                      working_copy)
from .pseudo_mask import (CamEvaluation, evaluate_cam, eval_rows, score_pseudo_masks, select_threshold, summary_table,
                          threshold_curves)
from .study import (FLOOR_METHOD, METHOD_NAMES, STUDY_LAYERS, CamStage, check_cam_config, open_cam_stage, compute_cam_variants,
                    evaluate_and_record, evaluate_extra_seeds, evaluate_seed, fuse_layers, load_reading_scores,
                    record_evaluation, record_floor, score_readings_over_seeds, study_layers)

__all__ = [
    "BASELINE_NAMES", "CAM_LAYER", "CamEvaluation", "FLOOR_METHOD", "evaluate_extra_seeds", "evaluate_seed",
    "record_floor", "load_reading_scores", "score_readings_over_seeds", "DEFAULT_SUBSETS", "METHOD_NAMES", "STUDY_LAYERS",
    "average_cam", "baseline_cam", "binary_entropy", "check_cam_config", "CamStage", "open_cam_stage", "compute_cam_variants", "fuse_layers",
    "study_layers", "compute_baseline_cams", "compute_cams", "entropy_weights",
    "eval_rows", "evaluate_and_record", "evaluate_cam", "layer_ablation", "load_threshold",
    "load_thresholds", "multi_layer_gradcam", "record_evaluation", "resolve_layer_names",
    "save_threshold", "score_pseudo_masks", "select_threshold", "summary_table", "threshold_curves",
    "umcam", "upsample_normalise", "working_copy",
]
