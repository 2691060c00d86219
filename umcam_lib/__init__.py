"""umcam_lib: the helper library of the UM-CAM study.

Modules are organised by pipeline stage, each importing only the stages before it
(``tests/test_layers.py``; CONTRIBUTING.md, "Layers"):

- :mod:`umcam_lib.config`     parameter files and the typed schema (one dataclass per section)
- :mod:`umcam_lib.data`       cohort generation (synthetic phantom), NIfTI reading, slice preparation
- :mod:`umcam_lib.maps`, :mod:`umcam_lib.thresholds`  per-slice maps and CAM thresholds between notebooks
- :mod:`umcam_lib.models`     networks: VGG-16 slice classifier, its DRS / AMR variants, the 2D UNet
- :mod:`umcam_lib.cam`        multi-layer Grad-CAM, CAM baselines, Average-CAM and UM-CAM
- :mod:`umcam_lib.gse`        seeds and geodesic seed expansion (SPL)
- :mod:`umcam_lib.losses`     the segmentation loss (Eq. 8)
- :mod:`umcam_lib.metrics`, :mod:`umcam_lib.scoring`  Dice and HD95; 3D scoring of segmentations
- :mod:`umcam_lib.train`      training loops (classifier, segmentation)
- :mod:`umcam_lib.baselines`  the DRS and AMR baselines end to end
- :mod:`umcam_lib.report`     tables in the study's CSV / Markdown / LaTeX schema
- :mod:`umcam_lib.pipeline`   the papermill runner (``python -m umcam_lib.pipeline``)
"""

__version__ = "0.1.0"
