"""Typed, frozen parameter sections passed downstream (issue 19, item 4).

``check_section`` turns a section (a dict from a notebook or a profile) into the section's
dataclass once; library code passes that object on and reads attributes; the keys a trained
model depends on are marked in the schema, and the resume checks read them from there.
"""
from __future__ import annotations

import dataclasses
import json

import pytest

from umcam_lib import config
from umcam_lib.config import ParameterError, SegParams, check_section, trained_keys


def test_a_checked_section_is_typed_and_frozen():
    seg = check_section("seg", {"lr": 1, "lambda_spl": 1, "sweep_lambda": [1, 10]})
    assert isinstance(seg, SegParams)
    assert seg.lr == 1.0 and isinstance(seg.lr, float)           # a YAML 1 in a float field reads as 1.0
    assert isinstance(seg.lambda_spl, float) and all(isinstance(v, float) for v in seg.sweep_lambda)
    assert isinstance(seg.width, int) and seg.patience == config.default("seg.patience")
    with pytest.raises(dataclasses.FrozenInstanceError):
        seg.lr = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError):
        seg["lr"] = 0.1  # type: ignore[index]


def test_a_section_reads_as_a_mapping_for_notebooks():
    seg = check_section("seg", {"epochs": 3})
    assert seg["epochs"] == seg.epochs == 3 and seg.get("epochs") == 3 and "epochs" in seg
    assert list(seg) == config.schema_keys(SegParams)
    assert {**seg} == dict(seg) == seg.to_dict() == seg            # equal to its dict form
    assert json.loads(json.dumps(seg.to_dict())) == seg.to_dict()
    with pytest.raises(KeyError):
        seg["no_such_key"]
    assert config.fingerprint(seg) == config.fingerprint(seg.to_dict())


def test_a_checked_section_is_passed_on_without_a_second_check():
    seg = check_section("seg", {})
    assert check_section("seg", seg) is seg
    with pytest.raises(ParameterError, match="expected the seg section, got the gse section"):
        check_section("seg", check_section("gse", {}))


def test_bad_values_are_refused_when_a_section_is_made_by_any_route():
    with pytest.raises(ParameterError, match=r"seg\.epochs: must be >= 1, got 0"):
        check_section("seg", {"epochs": 0})
    with pytest.raises(ParameterError, match=r"seg\.epochs: must be >= 1, got 0"):
        SegParams(epochs=0)                                       # the class itself checks
    with pytest.raises(ParameterError, match=r"seg\.optimizer: must be one of 'adamw', 'sgd'"):
        check_section("seg", {}).replace(optimizer="adam")
    with pytest.raises(ParameterError, match="did you mean 'epochs'"):
        check_section("seg", {}).replace(epoch=2)
    with pytest.raises(ParameterError, match="data.root: must name a folder"):
        config.DataParams(source="nifti")                         # cross-key checks too


def test_replace_returns_a_checked_copy():
    seg = check_section("seg", {})
    other = seg.replace(epochs=4, lambda_spl=1)
    assert (other.epochs, other.lambda_spl, seg.epochs) == (4, 1.0, config.default("seg.epochs"))


def test_the_schema_marks_what_a_trained_model_depends_on():
    seg = trained_keys("seg")
    assert {"width", "epochs", "lr", "batch_size", "loss_main", "patch", "cpu_bf16"} <= set(seg)
    # how a trained model is evaluated, reported or which models a sweep trains: not part of it
    assert not {"tta", "postprocess", "eval_batch_size", "channels_last", "lambda_spl",
                "sweep_main", "sweep_lambda", "sweep_epochs"} & set(seg)
    clf = trained_keys("classifier")
    assert "epochs" not in clf and {"width", "equivariance", "label_unit"} <= set(clf)
    assert set(clf) == set(config.schema_keys(config.ClassifierParams)) - {"epochs"}
    base = check_section("seg", {})
    assert base.replace(tta=True).trained() == base.trained()
    assert base.replace(width=8).trained() != base.trained()
    with pytest.raises(KeyError, match="unknown parameter section"):
        trained_keys("unet")


def test_the_sweep_helpers_take_the_checked_section():
    from umcam_lib.train import seg_sweep

    seg = check_section("seg", {"sweep_epochs": 4, "sweep_lambda": [0.1, 1], "sweep_main": ["spl"]})
    point = seg_sweep._point_cfg(seg, "spl", 1.0)
    assert isinstance(point, SegParams) and (point.epochs, point.lambda_spl, point.loss_main) == (4, 1.0, "spl")
    assert seg_sweep.sweep_grid(seg) == seg_sweep.sweep_grid(seg.to_dict()) == [("spl", 0.1), ("spl", 1.0)]
    assert seg_sweep._share_key(seg, "umcam", 1.0) == seg_sweep._share_key(seg, "spl", 1.0)  # AdamW: same share


def test_the_classifier_resume_key_is_the_schema_marked_keys():
    """A classifier run resumes with more epochs; any other key change starts it again."""
    clf = check_section("classifier", {})
    assert clf.trained() == {k: v for k, v in clf.items() if k != "epochs"}


def test_cosine_schedule_with_plateau_decay_is_refused_where_the_section_is_built():
    """A rule across two keys lives in the schema: the section refuses it, before any training starts."""
    with pytest.raises(ParameterError, match=r"seg.lr_schedule: cosine .* seg.plateau_decay"):
        check_section("seg", {"lr_schedule": "cosine", "plateau_decay": 0.5})
    assert check_section("seg", {"lr_schedule": "cosine", "plateau_decay": None}).lr_schedule == "cosine"
    assert check_section("seg", {"lr_schedule": "constant", "plateau_decay": 0.5}).plateau_decay == 0.5
    with pytest.raises(ParameterError, match="plateau_decay"):
        config.validate_params({"seg": {"lr_schedule": "cosine", "plateau_decay": 0.5}})
