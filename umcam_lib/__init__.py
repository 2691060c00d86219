"""umcam_lib: the helper library of the UM-CAM study.

Modules are organised by pipeline stage:

- :mod:`umcam_lib.data`     cohort generation (synthetic phantom), NIfTI reading, slice preparation
- :mod:`umcam_lib.models`   VGG-16 slice classifier and its weakly supervised variants
- :mod:`umcam_lib.cam`      multi-layer Grad-CAM, CAM baselines, Average-CAM and UM-CAM
- :mod:`umcam_lib.gse`      seeds and geodesic seed expansion (SPL)
- :mod:`umcam_lib.train`    training loops (classifier, segmentation)
- :mod:`umcam_lib.metrics`  Dice and HD95
- :mod:`umcam_lib.report`   tables in the study's CSV / Markdown / LaTeX schema
- :mod:`umcam_lib.pipeline` the papermill runner (``python -m umcam_lib.pipeline``)
"""

__version__ = "0.1.0"
