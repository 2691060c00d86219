"""Classifier training: metrics, augmentation, determinism, checkpoints, resume, the loss hook."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CLS_CFG, disc_slices

from umcam_lib.data import SliceSet, load_slices, save_slices
from umcam_lib.train.augment import build_augmentation
from umcam_lib.train.classifier import (
    build_classifier,
    check_config,
    classification_metrics,
    load_classifier,
    metrics_table,
    predict_proba,
    train_classifier,
)

HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_precision",
                   "val_recall", "val_f1", "lr", "seconds"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def slices() -> SliceSet:
    return disc_slices()


def _train(slices, out_dir, seed=0, **overrides):
    cfg = {**CLS_CFG, **overrides}
    model = build_classifier(cfg, seed=seed)
    history = train_classifier(model, slices, cfg, out_dir, device="cpu", seed=seed, progress=False)
    return model, history


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- metrics
def test_metrics_on_a_hand_example():
    labels = [1, 1, 0, 0, 1, 0]
    probs = [0.9, 0.4, 0.6, 0.1, 0.5, 0.2]  # predicted 1 0 1 0 1 0: tp 2, fp 1, fn 1, tn 2
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    m = classification_metrics(labels, probs, threshold=0.55)  # predicted 1 0 1 0 0 0: tp 1, fp 1, fn 2
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1 / 2, 1 / 3, 0.4))


def test_metrics_without_predicted_positives_are_zero_not_nan():
    m = classification_metrics([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])
    assert m == {"accuracy": 0.75, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_metrics_reject_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([1, 0], [0.5])


# ----------------------------------------------------------------------------- config and augmentation
def test_config_defaults_come_from_the_schema_and_bad_values_are_named():
    from umcam_lib.config import ParameterError, default

    assert check_config({k: v for k, v in CLS_CFG.items() if k != "momentum"})["momentum"] == default("classifier.momentum")
    assert check_config(CLS_CFG)["balance"] is False
    with pytest.raises(ParameterError, match=r"classifier.optimizer: must be one of 'adamw', 'sgd', got 'adam'"):
        check_config({**CLS_CFG, "optimizer": "adam"})
    with pytest.raises(ParameterError, match=r"classifier.momentun: unknown parameter; did you mean 'momentum'"):
        check_config({**CLS_CFG, "momentun": 0.9})


def test_augmentation_keeps_shape_and_range_and_is_seeded():
    aug = build_augmentation((32, 32), True)
    x = torch.rand(1, 32, 32)
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert build_augmentation((32, 32), False) is None
    with pytest.raises(ValueError, match=r"classifier.augment: unknown key\(s\) \[.rotate.\]; allowed: crop_padding"):
        build_augmentation((32, 32), {"rotate": 10})


def test_augmentation_gamma_only_changes_contrast():
    aug = build_augmentation((8, 8), {"gamma": [2.0, 2.0], "rotation": 0, "flip": False, "crop_padding": 0})
    x = torch.rand(1, 8, 8)
    torch.testing.assert_close(aug(x), x ** 2)


# ----------------------------------------------------------------------------- training
def test_training_writes_checkpoints_and_history(slices, tmp_path):
    model, history = _train(slices, tmp_path / "run")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    for name in ("best.pt", "last.pt", "history.csv"):
        assert (tmp_path / "run" / name).is_file()
    on_disk = pd.read_csv(tmp_path / "run" / "history.csv")
    np.testing.assert_allclose(on_disk["val_f1"], history["val_f1"])
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert best["epoch"] == int(history["epoch"][history["val_f1"].idxmax()])
    assert best["score"] == pytest.approx(history["val_f1"].max())


def test_training_is_deterministic_for_a_seed(slices, tmp_path):
    a, ha = _train(slices, tmp_path / "a", seed=0)
    b, hb = _train(slices, tmp_path / "b", seed=0)
    c, _ = _train(slices, tmp_path / "c", seed=1)
    assert _same_weights(a, b)
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"))
    assert not _same_weights(a, c)


def test_resume_continues_from_the_saved_epoch(slices, tmp_path, capsys):
    full, h_full = _train(slices, tmp_path / "full", epochs=3)
    _train(slices, tmp_path / "cut", epochs=1)  # "interrupted" after one epoch
    capsys.readouterr()
    resumed, h_resumed = _train(slices, tmp_path / "cut", epochs=3)
    assert "resuming" in capsys.readouterr().out
    assert h_resumed["epoch"].tolist() == [1, 2, 3]
    assert _same_weights(full, resumed)  # as if never interrupted
    pd.testing.assert_frame_equal(h_full.drop(columns="seconds"), h_resumed.drop(columns="seconds"))
    # nothing left to do: a rerun trains no epoch and returns the same history
    _, h_again = _train(slices, tmp_path / "cut", epochs=3)
    pd.testing.assert_frame_equal(h_again, h_resumed)


def test_changed_settings_start_a_new_run(slices, tmp_path, capsys):
    _train(slices, tmp_path / "run", epochs=1)
    capsys.readouterr()
    _, history = _train(slices, tmp_path / "run", epochs=1, lr=5e-4)
    assert "other settings" in capsys.readouterr().out
    assert history["epoch"].tolist() == [1]


def test_model_training_loss_hook_is_used(slices, tmp_path):
    calls = []

    class Hooked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_classifier(CLS_CFG, seed=0)

        def forward(self, x):
            return self.net(x)

        def training_loss(self, images, labels):
            calls.append(images.shape[0])
            return torch.nn.functional.cross_entropy(self.net(images), labels) + 0.0 * images.sum()

    history = train_classifier(Hooked(), slices, {**CLS_CFG, "epochs": 1}, tmp_path / "hook", device="cpu",
                               progress=False)
    assert sum(calls) == slices.indices("train").size
    assert history["train_accuracy"].isna().all()  # no logits seen by the loop
    assert np.isfinite(history["val_f1"]).all()


def test_a_learnable_task_is_learned(slices, tmp_path):
    cfg = dict(epochs=6, batch_size=8, optimizer="adamw", momentum=0.9, augment=False)
    model, history = _train(slices, tmp_path / "learn", **cfg)
    assert history["val_f1"].max() >= 0.8
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    best = load_classifier(tmp_path / "learn", {**CLS_CFG, **cfg})
    table = metrics_table(best, slices, device="cpu")
    assert table["split"].tolist() == ["val", "test"]
    assert table.loc[0, "f1"] == pytest.approx(history["val_f1"].max())


# ----------------------------------------------------------------------------- loading and prediction
def test_load_classifier_returns_the_best_epoch(slices, tmp_path):
    _train(slices, tmp_path / "run")
    model = load_classifier(tmp_path / "run", CLS_CFG)
    assert not model.training
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="does not fit"):
        load_classifier(tmp_path / "run", {**CLS_CFG, "width": 0.125})
    with pytest.raises(FileNotFoundError, match="train this model first"):
        load_classifier(tmp_path / "nothing", CLS_CFG)


def test_predict_proba_shape_range_and_mode(slices):
    model = build_classifier(CLS_CFG, seed=0).train()
    p = predict_proba(model, slices.images[:10], batch_size=4, device="cpu")
    assert p.shape == (10,) and np.all((p >= 0) & (p <= 1))
    assert model.training  # mode restored
    logits = model.eval()(torch.from_numpy(slices.images[:10, None]))
    np.testing.assert_allclose(p, torch.softmax(logits.double(), 1)[:, 1].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_slice_set_round_trip_keeps_every_array_and_trains_identically(slices, tmp_path):
    """save_slices -> load_slices loses nothing: every array (values and dtype), the spacing and the
    volume table come back, and one epoch on the loaded set equals one epoch on the original."""
    save_slices(tmp_path / "data_run", slices)
    loaded = load_slices(tmp_path / "data_run")
    for name in ("images", "masks", "labels", "volume", "slice_index", "split"):
        got, want = np.asarray(getattr(loaded, name)), np.asarray(getattr(slices, name))
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert loaded.spacing_mm == slices.spacing_mm
    pd.testing.assert_frame_equal(loaded.volumes.reset_index(drop=True), slices.volumes.reset_index(drop=True))
    original, h_original = _train(slices, tmp_path / "original", epochs=1)
    again, h_loaded = _train(loaded, tmp_path / "data_run" / "classifier", epochs=1)
    assert len(h_loaded) == 1
    pd.testing.assert_frame_equal(h_loaded.drop(columns="seconds"), h_original.drop(columns="seconds"))
    assert _same_weights(again, original)


# ----------------------------------------------------------------------------- notebook 02 (tiny pipeline)
@pytest.fixture(scope="module")
def notebook02(tiny_run):
    out = tiny_run.run_dir / "classifier"
    if not (out / "best.pt").is_file():
        pytest.fail(f"notebook 02 wrote no {out / 'best.pt'} (notebooks run: {[r.name for r in tiny_run.results]})")
    return tiny_run


@pytest.mark.slow
def test_notebook02_writes_checkpoints_curves_and_metrics(notebook02):
    from umcam_lib import config

    run, fig = notebook02.run_dir, notebook02.figures_dir
    tiny = config.load_params(config.profile_path("tiny"))["classifier"]
    history = pd.read_csv(run / "classifier" / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == list(range(1, int(tiny["epochs"]) + 1))
    assert (fig / "classifier_curves.png").stat().st_size > 0
    table = pd.read_csv(fig / "classification_metrics.csv")
    assert table["split"].tolist() == ["val", "test"]
    assert {"accuracy", "precision", "recall", "f1"} <= set(table.columns)
    assert table[["accuracy", "precision", "recall", "f1"]].apply(lambda c: c.between(0, 1)).all().all()
    # the table's validation F1 is that of the best epoch of the history
    assert table.loc[0, "f1"] == pytest.approx(history["val_f1"].max(), abs=1e-6)
    # and the checkpoint reproduces the recorded test scores
    s = load_slices(run)
    model = load_classifier(run / "classifier", tiny)
    test = s.indices("test")
    m = classification_metrics(s.labels[test], predict_proba(model, s.images[test], 64, "cpu"))
    assert m["f1"] == pytest.approx(table.loc[1, "f1"], abs=1e-6)
    assert m["accuracy"] == pytest.approx(table.loc[1, "accuracy"], abs=1e-6)
