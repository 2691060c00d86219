"""Baseline stage: the weakly supervised baselines DRS and AMR of notebook 07, end to end.

- :mod:`.drs`  build the DRS classifier from the profile, train it, read its localisation maps,
  choose the readout and the threshold on validation, build pseudo labels (the last steps are
  shared with AMR)
- :mod:`.amr`  build AMR around notebook 02's classifier, train it, read its localisation maps

The networks themselves are in :mod:`umcam_lib.models.drs` and :mod:`umcam_lib.models.amr`.
"""
