"""One validation pass over every parameter before anything runs (issue 11, items 7 and 9),
and the schema kept equal to params/quick.yaml."""
from __future__ import annotations

import pytest

from umcam_lib import config, paths, pipeline


def _error(**kw) -> str:
    with pytest.raises(config.ParameterError) as err:
        pipeline.resolve_params(**kw)
    return str(err.value)


def test_schema_is_params_quick_yaml():
    """Keys and defaults of the schema equal params/quick.yaml, both ways."""
    quick = config.load_params(config.profile_path("quick"))
    assert sorted(config.schema_keys()) == sorted(config.flatten(quick))
    assert config.schema_defaults() == quick


@pytest.mark.parametrize("profile", sorted(p.stem for p in paths.PARAMS_DIR.glob("*.yaml")))
def test_every_profile_validates_unchanged(profile):
    raw = config.load_params(config.profile_path(profile))
    assert pipeline.resolve_params(profile) == raw


def test_a_string_where_a_list_is_expected_is_refused_with_the_fix():
    msg = _error(profile="tiny", overrides=["data.test_subjects=sub-02"])
    assert "data.test_subjects" in msg and "a list of strings" in msg and "data.test_subjects=[sub-02]" in msg
    assert pipeline.resolve_params("tiny", overrides=["data.test_subjects=[sub-02]"])["data"]["test_subjects"] == ["sub-02"]


def test_prepare_dataset_refuses_a_string_where_a_list_is_expected(tmp_path):
    """The library refuses a string as well (a notebook run without the pipeline)."""
    from umcam_lib.config import ParameterError
    from umcam_lib.data import prepare

    from conftest import data_section, write_cohort

    write_cohort(tmp_path / "bids", {"sub-01": 1, "sub-02": 1, "sub-03": 1})
    with pytest.raises(ParameterError, match=r"data.test_subjects: expected a list of strings.*\[sub-02\]"):
        prepare.prepare_dataset(data_section(tmp_path / "bids", test_subjects="sub-02"), tmp_path / "run", 0,
                                progress=False)


@pytest.mark.parametrize("override,words", [
    ("classifier.epochs=abc", ["classifier.epochs", "expected an integer", "'abc'"]),
    ("classifier=3", ["classifier", "expected a section", "width, dilated"]),
    ("data.image_size=7", ["data.image_size", ">= 32", "7"]),
    ("classifier.optimizer=adam", ["classifier.optimizer", "'adamw', 'sgd'", "adam"]),
    ("seg.positive_fraction=1.5", ["seg.positive_fraction", "< 1"]),
    ("data.split_ratio=[1, 2]", ["data.split_ratio", "3 elements"]),
    ("seg.sweep_lambda=[]", ["seg.sweep_lambda", "at least one"]),
    ("amp=yes_please", ["amp", "true or false"]),
    ("classifier.augment={gama: 1}", ["classifier.augment", "gama", "allowed"]),
    ("data.source=nifti", ["data.root", "nifti"]),
])
def test_bad_values_are_refused_before_anything_runs(override, words):
    msg = _error(profile="tiny", overrides=[override])
    for w in words:
        assert w in msg, f"{w!r} not in {msg}"


def test_a_typo_in_a_params_file_names_the_file_key_and_nearest_name(tmp_path):
    """A typo in a YAML file is refused naming the file, the key and the nearest known name."""
    f = tmp_path / "mine.yaml"
    f.write_text("base: tiny\nclassifier:\n  epoch: 3\n")
    msg = _error(profile=None, params_file=f)
    assert str(f) in msg and "classifier.epoch" in msg and "did you mean 'epochs'" in msg


def test_a_typo_in_a_base_params_file_names_the_base_file(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("base: tiny\nseg:\n  sweep_lamda: [0.1]\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nseed: 3\n")
    msg = _error(profile=None, params_file=child)
    assert str(base) in msg and "seg.sweep_lamda" in msg


def test_every_parameter_problem_is_listed_at_once():
    msg = _error(profile="tiny", overrides=["classifier.epochs=abc", "seed=-1", "gse.spl_rule=mean"])
    assert "3 problem(s)" in msg and "seed" in msg and "gse.spl_rule" in msg and "'ratio', 'authors'" in msg


def test_pipeline_main_exits_1_on_bad_parameters_before_notebook_01(tmp_path, capsys):
    out = tmp_path / "run"
    rc = pipeline.main(["--profile", "tiny", "--set", "classifier.epochs=abc", "--out", str(out)])
    assert rc == 1 and "classifier.epochs" in capsys.readouterr().err
    assert not out.exists()


def test_missing_keys_take_the_schema_defaults(tmp_path):
    f = tmp_path / "small.yaml"
    f.write_text("profile: small\nseed: 2\nclassifier:\n  epochs: 1\n")
    p = pipeline.resolve_params(profile=None, params_file=f)
    assert p["seed"] == 2 and p["classifier"]["epochs"] == 1
    assert p["classifier"]["width"] == config.schema_defaults()["classifier"]["width"]


def test_own_data_command_drops_the_real_profiles_subjects(capsys):
    """Issue 10: `--profile real --set data.root=my_data` splits by ratio, not by sub-02."""
    p = pipeline.resolve_params("real", overrides=["data.root=my_data"])
    assert p["data"]["test_subjects"] == [] and p["data"]["val_subjects"] == []
    assert "not used" in capsys.readouterr().out
    kept = pipeline.resolve_params("real", overrides=["data.root=my_data", "data.test_subjects=[sub-B]"])
    assert kept["data"]["test_subjects"] == ["sub-B"] and kept["data"]["val_subjects"] == []
    assert pipeline.resolve_params("real")["data"]["test_subjects"] == ["sub-02"]
