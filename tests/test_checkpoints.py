"""Checkpoints: safe loading, and resuming only what may be continued (issue 11, items 3, 4, 10)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLS_CFG, disc_slices

from umcam_lib import provenance
from umcam_lib.train import common
from umcam_lib.train.classifier import build_classifier, train_classifier

PKG = Path(common.__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


def _model_opt():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _saved(tmp_path, epoch=3, config=None):
    model, opt = _model_opt()
    state = common.TrainState(epoch=epoch, best_score=np.float64(0.5), best_epoch=2,
                              history=[{"epoch": i + 1, "val_f1": np.float32(0.5), "n": np.int64(4)} for i in range(epoch)])
    common.save_last(tmp_path, model, opt, state, config=config if config is not None else {"lr": 0.1, "grid": (1, 2)})
    common.save_best(tmp_path, model, state, config={"lr": 0.1})
    return model


class _Exploit:
    """A pickle that runs code when loaded (creates a file)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_checkpoints_with_numpy_history_load_with_weights_only(tmp_path):
    """Checkpoints with numpy values in their history still load under weights_only=True."""
    _saved(tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["state"]["history"][0]["n"] == 4 and isinstance(ckpt["state"]["best_score"], float)
    model, opt = _model_opt()
    state = common.resume(tmp_path, model, opt, config={"lr": 0.1, "grid": (1, 2)})
    assert state.epoch == 3 and state.best_epoch == 2
    assert common.load_best(tmp_path, model)["epoch"] == 2


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_a_foreign_pickle_in_a_checkpoint_is_refused_not_executed(tmp_path, name):
    target = tmp_path / "pwned"
    torch.save({"model": {}, "config": _Exploit(target), "state": {}}, tmp_path / name)
    model, opt = _model_opt()
    with pytest.raises((ValueError, pickle.UnpicklingError), match="refused to load|weights_only|Unsupported"):
        if name == "last.pt":
            common.resume(tmp_path, model, opt, config={})
        else:
            common.load_best(tmp_path, model)
    assert not target.exists()


def test_the_library_never_calls_torch_load_with_weights_only_false():
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if "weights_only=False" in p.read_text()]
    assert not offenders, f"torch.load(..., weights_only=False) in {offenders}"


def test_resume_starts_over_under_force_or_other_training_code(tmp_path, monkeypatch):
    _saved(tmp_path)
    cfg = {"lr": 0.1, "grid": (1, 2)}
    model, opt = _model_opt()
    assert common.resume(tmp_path, model, opt, config=cfg).epoch == 3
    monkeypatch.setenv(common.FORCE_ENV, "1")
    assert common.resume(tmp_path, model, opt, config=cfg).epoch == 0
    monkeypatch.delenv(common.FORCE_ENV)
    monkeypatch.setattr(common, "code_fingerprint", lambda *a, **k: "another-version")
    assert common.resume(tmp_path, model, opt, config=cfg).epoch == 0


def test_resume_code_key_covers_the_training_modules_imports_only():
    """The code key of a training run covers its module's transitive imports, not the library."""
    classifier = common.training_code(caller="umcam_lib.train.classifier")
    assert classifier == common.training_code(caller="umcam_lib.train.classifier")
    assert classifier != common.training_code(caller="umcam_lib.train.seg_train")
    closure = provenance.module_closure(["umcam_lib.train.classifier", "umcam_lib.train.common"])
    assert "umcam_lib.train.augment" in closure and "umcam_lib.models.vgg" in closure
    assert "umcam_lib.report" not in closure and "umcam_lib.pipeline" not in closure


def test_library_fingerprint_changes_when_a_source_file_changes(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    before = provenance.library_fingerprint(pkg)
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    provenance.library_fingerprint.cache_clear()
    assert provenance.library_fingerprint(pkg) != before


def test_resume_refuses_a_checkpoint_with_more_epochs_than_asked(tmp_path):
    _saved(tmp_path, epoch=3)
    model, opt = _model_opt()
    cfg = {"lr": 0.1, "grid": (1, 2)}
    assert common.resume(tmp_path, model, opt, config=cfg, epochs=2).epoch == 0
    assert common.resume(tmp_path, model, opt, config=cfg, epochs=3).epoch == 3
    assert common.resume(tmp_path, model, opt, config=cfg, epochs=5).epoch == 3   # extending is fine


def test_fewer_classifier_epochs_after_a_longer_run_retrain(tmp_path):
    """Lowering classifier.epochs after a longer run trains the asked-for epochs only."""
    slices = disc_slices(n=48)
    cfg = {**CLS_CFG, "epochs": 2, "augment": False}
    train_classifier(build_classifier(cfg, seed=0), slices, cfg, tmp_path, device="cpu", progress=False)
    short = {**cfg, "epochs": 1}
    history = train_classifier(build_classifier(short, seed=0), slices, short, tmp_path, device="cpu", progress=False)
    assert list(history.epoch) == [1]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 1
