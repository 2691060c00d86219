"""umcam_lib: the helper library of the UM-CAM study.

Folders are wings, organised by pipeline stage; each module imports only its own stage and the
stages before it (``tests/test_layers.py``; CONTRIBUTING.md, "Layers"):

- base: :mod:`umcam_lib.paths`, :mod:`umcam_lib.io`, :mod:`umcam_lib.hashing`, :mod:`umcam_lib.runtime`,
  :mod:`umcam_lib.provenance` (files, devices and seeds, commits) and :mod:`umcam_lib.config`
  (parameter files, the typed schema, the notebooks' parameter loading)
- :mod:`umcam_lib.data`       cohort generation (synthetic phantom), NIfTI reading, slice preparation,
  and what notebooks store between them: per-slice maps, CAM thresholds, per-item scores
- :mod:`umcam_lib.models`     networks: VGG-16 slice classifier, its DRS / AMR variants, the 2D UNet
- methods: :mod:`umcam_lib.cam` (multi-layer Grad-CAM, CAM baselines, Average-CAM and UM-CAM),
  :mod:`umcam_lib.gse` (seeds and geodesic seed expansion, SPL), :mod:`umcam_lib.losses` (Eq. 8),
  :mod:`umcam_lib.metrics` (Dice, HD95), :mod:`umcam_lib.scoring` (3D scoring of segmentations)
- :mod:`umcam_lib.train`      training loops (classifier, segmentation), targets, prediction
- :mod:`umcam_lib.baselines`  the DRS and AMR baselines end to end
- :mod:`umcam_lib.report`     tables, findings and figures from the recorded scores
- :mod:`umcam_lib.pipeline`   the notebook runner (``python -m umcam_lib.pipeline``, ``umcam-study``)
- :mod:`umcam_lib.segment`    the brain extractor: ``python -m umcam_lib.segment`` (``umcam-segment``),
  the shipped models, shipping them and training a segmenter
"""

__version__ = "0.1.0"
