"""Training stage: shared checkpointing (:mod:`.common`), the classifier and the segmenter."""
