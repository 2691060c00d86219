"""Training stage: shared checkpointing and optimisers (:mod:`.common`), the classifier
(:mod:`.classifier`, :mod:`.augment`) and the segmenter (:mod:`.seg_targets`, :mod:`.seg_train`,
:mod:`.seg_predict`, :mod:`.seg_sweep`; :mod:`.segmentation` gathers them for the notebooks and
records their scores)."""
