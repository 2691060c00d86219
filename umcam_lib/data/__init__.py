"""Data stage: the synthetic cohort, NIfTI reading and the prepared slice set."""
from .artifacts import SliceSet, load_slices, save_slices

__all__ = ["SliceSet", "load_slices", "save_slices"]
