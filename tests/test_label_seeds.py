"""The crossed design's bookkeeping (umcam_lib.train.label_seeds) on constructed inputs."""
from __future__ import annotations

from pathlib import Path

import pytest

from umcam_lib.train import label_seeds as ls


def test_each_unet_seed_gets_the_labels_of_its_classifier_seed_and_the_true_masks_are_not_crossed(tmp_path):
    pairs = ls.paired_seeds([0, 1, 2], [0, 1, 2])
    calls: list[Path] = []

    def build(folder: Path) -> dict:
        calls.append(folder)
        return {"SPL": {"from": folder.name}, "FullySup": {"from": folder.name}}

    crossed = ls.crossed_targets(tmp_path, pairs, 0, build)
    assert calls == [tmp_path / "seeds" / "seed-1", tmp_path / "seeds" / "seed-2"]   # the primary's are the run's own
    assert crossed == {"SPL": {1: {"from": "seed-1"}, 2: {"from": "seed-2"}}}


def test_more_unet_seeds_than_classifier_seeds_cycle_and_each_folder_is_built_once(tmp_path):
    pairs = ls.paired_seeds([0, 1, 2, 3], [0, 1])
    assert pairs == {0: 0, 1: 1, 2: 0, 3: 1}
    calls = []
    crossed = ls.crossed_targets(tmp_path, pairs, 0, lambda f: calls.append(f) or {"AMR": {"f": f.name}})
    assert len(calls) == 1 and crossed == {"AMR": {1: {"f": "seed-1"}, 3: {"f": "seed-1"}}}


def test_without_crossing_no_other_seed_is_labelled():
    assert ls.extra_label_seeds([0, 1, 2], cross=False) == []
    assert set(ls.paired_seeds([0, 1, 2], [0, 1, 2], cross=False).values()) == {0}
    with pytest.raises(ValueError, match="at least one classifier seed"):
        ls.paired_seeds([0], [])


def test_tasks_name_the_targets_they_train_on(tmp_path):
    from umcam_lib.config import load_params, profile_path
    from umcam_lib.train.tasks import unet_tasks

    seg = load_params(profile_path("tiny"))["seg"]
    tasks = unet_tasks(tmp_path, "SPL", seg, [0, 1], 0, labels={1: ls.labels_name("SPL", 1, 0)})
    assert [t.targets for t in tasks] == ["SPL", "SPL__labels1"]
    assert tasks[1].folder == "SPL__seed1" and "SPL__labels1" in tasks[1].describe()
