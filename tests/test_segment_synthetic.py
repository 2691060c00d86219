"""Domain randomisation for the extractor (umcam_lib.segment.synthetic): the phantom's widened
draws, the prepared slices and their cache, and segmenter --synthetic."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from umcam_lib.config import ParameterError
from umcam_lib.data.phantom import generate_volume
from umcam_lib.data.phantom_anatomy import CONTRAST, AnatomyRanges, sample_anatomy
from umcam_lib.segment import segmenter as so
from umcam_lib.segment import synthetic as synth

from conftest import fake_slices
from test_segmenter import run  # noqa: F401  (the fixture)


def test_default_ranges_are_the_paper_cohort_bit_for_bit():
    a, b = generate_volume(5, 48), generate_volume(5, 48, None, AnatomyRanges())
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.meta == b.meta


def test_randomised_draws_leave_the_cohort_ranges():
    anats = [sample_anatomy(np.random.default_rng(s), 64, ranges=synth.DOMAIN_RANDOMISATION) for s in range(40)]
    thick = [a.acq.thickness_mm for a in anats]
    ga = [a.fetus.gestational_age_weeks for a in anats]
    assert min(thick) < 4.0 and max(thick) > 6.0 and all(2.5 <= t <= 7.0 for t in thick)
    assert max(ga) > 32.0 and all(20.0 <= g <= 36.0 for g in ga)
    # random contrast: the T2 order of brain tissues is not kept (white matter brighter than cortex in the table)
    assert CONTRAST["wm"] > CONTRAST["cortex"]
    assert any(a.contrast["wm"] < a.contrast["cortex"] for a in anats)


def test_synthetic_slices_are_on_the_run_grid_and_cached(tmp_path):
    made = synth.synthetic_slices(3, 2.0, 32, seed=11, matrix=64, cache_dir=tmp_path)
    assert made["images"].shape[1:] == (32, 32) and made["images"].dtype == np.float32
    assert 0.0 <= made["images"].min() and made["images"].max() <= 1.0
    assert set(np.unique(made["volume"])) == {0, 1, 2} and made["masks"].any()
    assert len(made["brain_ml"]) == 3 and (made["brain_ml"] > 0).all()
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1
    again = synth.synthetic_slices(3, 2.0, 32, seed=11, matrix=64, cache_dir=tmp_path)
    assert all(np.array_equal(made[k], again[k]) for k in made)
    other = synth.synthetic_slices(2, 2.0, 32, seed=11, matrix=64, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2 and np.array_equal(other["images"], made["images"][:len(other["images"])])
    with pytest.raises(ValueError, match="count"):
        synth.synthetic_slices(0, 2.0, 32)


def test_with_synthetic_adds_training_stacks_only():
    s = fake_slices()
    made = synth.synthetic_slices(2, s.spacing_mm, int(s.images.shape[-1]), seed=3, matrix=48)
    both = synth.with_synthetic(s, made)
    for split in ("val", "test"):
        np.testing.assert_array_equal(both.indices(split), s.indices(split))
    assert len(both.volume_ids("train")) == len(s.volume_ids("train")) + 2
    assert both.volumes["volume"].is_unique and len(both) == len(s) + len(made["images"])
    np.testing.assert_array_equal(both.labels[len(s):], made["masks"].reshape(len(made["masks"]), -1).any(1))
    with pytest.raises(ValueError, match="run's"):
        synth.with_synthetic(s, {**made, "images": made["images"][:, :8, :8]})


def test_segmenter_trains_fullysup_with_synthetic_stacks_and_refuses_a_weak_method(run, monkeypatch):  # noqa: F811
    monkeypatch.setattr(synth, "synthetic_slices", functools.partial(synth.synthetic_slices, matrix=48))
    summary = so.train_segmenter(run, "dr", "FullySup", ["epochs=1"], synthetic=2, progress=False)
    rec = summary["synthetic"]
    assert rec["n_volumes"] == 2 and rec["ranges"]["random_contrast"] and rec["n_slices"] > 0
    assert sum(n.startswith("synthetic-") for n in summary["trained_on"]) == 2
    assert set(summary["held_out"]) == {"val", "test"} and "--synthetic 2" in summary["command"]
    assert (run / "segmenter" / "_synthetic").is_dir()
    # segment (and the shift benchmark's --run) can use it by name; an unfinished folder is not offered
    from umcam_lib.segment.model import available_methods, load_model
    assert "segmenter/dr" in available_methods(run) and "segmenter/_synthetic" not in available_methods(run)
    model, info = load_model(run, "segmenter/dr")
    assert info["checkpoint"].endswith("segmenter/dr/best.pt")
    task = so.SegmenterTask(str(run), "dr", "FullySup", ("epochs=1",), 0, synthetic=2)
    assert so.finished_summary(task) is not None                     # resumes
    assert so.finished_summary(so.SegmenterTask(str(run), "dr", "FullySup", ("epochs=1",), 0)) is None
    with pytest.raises(ParameterError, match="image-level labels only"):
        so.train_segmenter(run, "weak-dr", "UM-CAM", ["epochs=1"], synthetic=2, progress=False)
    assert not (run / "segmenter" / "weak-dr" / "summary.json").exists()
    with pytest.raises(ParameterError, match=">= 0"):
        so.train_segmenter(run, "neg", "FullySup", ["epochs=1"], synthetic=-1, progress=False)
