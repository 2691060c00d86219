"""Geodesic distance-based seed expansion (GSE): seeds, geodesic distances, EGD cues and SPL.

METHOD sections 3-4. The pieces, in the order a slice goes through them:

- :mod:`.threshold` -- the UM-CAM threshold (``grid``: validation-chosen; ``variance``: the
  authors' per-slice label-free rule) and the binarisation ``CAM >= t``;
- :mod:`.seed_points` -- largest component, its centroid (foreground seed) and its bounding-box
  corners pushed out by a margin (background seeds);
- :mod:`.geodesic` -- geodesic distance by raster scanning: GeodisTK for one slice, or this
  package's vectorised engine for a batch (same values, many times faster);
- :mod:`.pseudo_labels` -- EGD cues and the SPL, for one slice (:func:`spl`) or many (:func:`spl_batch`);
- :mod:`.quality` and :mod:`.figures` -- SPL vs ground truth, and the teaching figure.

Typical use (notebook 05)::

    t = gse.resolve_threshold("grid", gse.load_thresholds(run_dir))   # or "variance"
    index, maps, seeds_df, n_missing = gse.spl_batch(images, cams, t, beta=4.0, rows=rows)

(:mod:`.figures` is not imported here; ``from umcam_lib.gse import figures``.)
"""
from .geodesic import (UNREACHED, geodesic_batch, geodesic_batch_points, geodesic_distance, geodesic_geodistk,
                       zscore)
from .pseudo_labels import (SPL_RULES, NoSeedsError, SPLBatch, egd_cues, explain, seeds_table, spl, spl_batch,
                            spl_from_distances)
from .seed_points import largest_component, seed_mask, seeds, seeds_batch
from .quality import spl_quality
from ..metrics import binarise
from ..data.thresholds import load_thresholds
from .threshold import (RULES, grid_values, resolve_threshold, variance_thresholds,
                        within_class_variance)

__all__ = [
    "UNREACHED", "geodesic_batch", "geodesic_batch_points", "geodesic_distance", "geodesic_geodistk", "zscore",
    "largest_component", "seed_mask", "seeds", "seeds_batch",
    "SPL_RULES", "NoSeedsError", "SPLBatch", "egd_cues", "explain", "spl", "spl_batch", "spl_from_distances",
    "seeds_table", "spl_quality",
    "RULES", "binarise", "grid_values", "load_thresholds", "resolve_threshold", "variance_thresholds",
    "within_class_variance",
]
from .settings import chosen_gse, margin_pixels, spl_settings, sweep_gse, sweep_points  # noqa: E402

__all__ += ["chosen_gse", "margin_pixels", "spl_settings", "sweep_gse", "sweep_points"]
