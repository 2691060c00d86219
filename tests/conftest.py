"""Shared fixtures and helpers: one run of the whole pipeline on the tiny profile for the notebook
tests, and the small synthetic cohorts, slice sets and configs that several test files build on
(imported with ``from conftest import ...``; no test file imports another)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from umcam_lib.data import SliceSet, save_slices
from umcam_lib.data.maps import save_maps
from umcam_lib.data.nifti import mask_path_for
from umcam_lib.io import write_json

os.environ.setdefault("MPLBACKEND", "Agg")


@dataclass
class TinyRun:
    run_dir: Path
    figures_dir: Path
    results: list


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Run every registered notebook with ``params/tiny.yaml`` into a temporary folder, once."""
    from umcam_lib import paths, pipeline

    base = tmp_path_factory.mktemp("tiny_run")
    run_dir, fig_dir = base / "run", base / "figures"
    existing = []  # the unbroken run of notebooks from 01 (later ones need earlier artifacts)
    for number, name in pipeline.NOTEBOOKS.items():
        if not (paths.NOTEBOOK_DIR / name).is_file():
            break
        existing.append(number)
    results = pipeline.run_pipeline(profile="tiny", only=existing, out=run_dir, figures=fig_dir)
    return TinyRun(run_dir=run_dir, figures_dir=fig_dir, results=results)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the tiny pipeline run as slow (``make test-fast`` skips them)."""
    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Skip, not fail, a test that needs GeodisTK where the optional ``[geodesic]`` extra is absent
    (the plain ``pip install -e .`` and conda routes; ``make`` installs it)."""
    try:
        return (yield)
    except ModuleNotFoundError as err:
        if err.name == "GeodisTK":
            pytest.skip("GeodisTK is not installed (optional extra [geodesic]; see CONTRIBUTING.md)")
        raise


# --------------------------------------------------------------------------- cohorts (test_prepare, test_input_files)
def disc(shape: tuple[int, int], spacing: float, radius_mm: float) -> np.ndarray:
    """A centred disc of ``radius_mm`` on a grid of ``spacing`` mm (pixel centres inside)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return (np.hypot((yy - cy) * spacing, (xx - cx) * spacing) <= radius_mm).astype(np.uint8)


def write_cohort(root: Path, subjects: dict[str, int], shape=(40, 40, 8), spacing=(1.5, 1.5, 5.0)) -> None:
    """Write a tiny BIDS cohort: ``subjects`` maps subject id -> number of stacks."""
    rng = np.random.default_rng(0)
    for sub, n_runs in subjects.items():
        for run in range(1, n_runs + 1):
            folder = root / sub / "anat"
            folder.mkdir(parents=True, exist_ok=True)
            img_path = folder / f"{sub}_run-{run}_T2w.nii.gz"
            mask = np.zeros(shape, np.uint8)
            mask[..., 2:6] = disc(shape[:2], spacing[0], 12.0)[..., None]
            image = (rng.random(shape) * 100 + 400.0 * mask).astype(np.uint16)
            aff = np.diag([*spacing, 1.0])
            nib.save(nib.Nifti1Image(image, aff), str(img_path))
            nib.save(nib.Nifti1Image(mask, aff), str(mask_path_for(img_path)))


def data_section(root: Path | None, **kw) -> dict:
    """A ``data`` section reading the cohort under ``root`` (``kw`` overrides its keys)."""
    d = dict(source="nifti", root=None if root is None else str(root), image_glob="**/*_T2w.nii.gz", mask_suffix="_desc-brain_mask",
             n_volumes=3, phantom_matrix=64, spacing_mm=2.0, image_size=32, split_ratio=[80, 10, 25],
             test_subjects=[], val_subjects=[])
    d.update(kw)
    return d


# --------------------------------------------------------------------------- classifier (test_classifier, test_checkpoints, test_weak_labels)
CLS_CFG = dict(width=0.0625, dilated=False, pretrained=False, epochs=2, batch_size=16, lr=1e-3, momentum=0.99,
               weight_decay=5e-4, augment=True,
               # the paper's recipe, not the quick profile's (the schema's defaults): SGD, plain VGG
               optimizer="sgd", batch_norm=False, pooling="avg", input_norm="imagenet", padding="zeros", equivariance=0.0)


def disc_slices(n: int = 96, size: int = 32, seed: int = 0) -> SliceSet:
    """Noise slices; every third one holds a bright disc (the "brain", label 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.uniform(0.0, 0.3, (n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    labels = (np.arange(n) % 3 == 0).astype(np.uint8)
    for i in np.flatnonzero(labels):
        cy, cx = rng.uniform(9, size - 9, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(4, 7) ** 2
        images[i][disc] = rng.uniform(0.7, 1.0)
        masks[i] = disc
    per_volume = 8
    volume = np.arange(n) // per_volume
    n_vol = int(volume.max()) + 1
    vol_split = np.array(["train"] * (n_vol - 4) + ["val"] * 2 + ["test"] * 2)
    return SliceSet(images=images, masks=masks, labels=labels, volume=volume.astype(np.int32),
                    slice_index=(np.arange(n) % per_volume).astype(np.int32), split=vol_split[volume],
                    spacing_mm=2.0, volumes=pd.DataFrame({"volume": np.arange(n_vol), "split": vol_split}))


# --------------------------------------------------------------------------- CAM evaluation (test_pseudo_mask, test_fairness)
def make_slices(n_val: int = 4, n_test: int = 4, size: int = 16) -> SliceSet:
    """Positive slices with a square brain (rows 4..11), plus one negative slice per split."""
    splits = ["train"] + ["val"] * (n_val + 1) + ["test"] * (n_test + 1)
    n = len(splits)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    val_pos = range(1, 1 + n_val)  # then one negative validation slice
    test_pos = range(n_val + 2, n_val + 2 + n_test)  # then one negative test slice
    for i in [*val_pos, *test_pos]:
        masks[i, 4:12, 4:12] = 1
    labels = np.zeros(n, dtype=np.uint8)
    labels[:] = masks.reshape(n, -1).any(axis=1)
    vols = pd.DataFrame({"volume": [0, 1, 2], "subject": ["a", "b", "c"], "split": ["train", "val", "test"]})
    return SliceSet(images=np.zeros((n, size, size), np.float32), masks=masks, labels=labels,
                    volume=np.array([0] + [1] * (n_val + 1) + [2] * (n_test + 1), np.int32),
                    slice_index=np.arange(n, dtype=np.int32), split=np.array(splits), spacing_mm=2.0,
                    volumes=vols)


def ramp_cam(core: float, ring: float, size: int = 16) -> np.ndarray:
    """A CAM that is ``core`` on the brain square and ``ring`` on a 2-pixel ring around it."""
    cam = np.zeros((size, size), np.float32)
    cam[2:14, 2:14] = ring
    cam[4:12, 4:12] = core
    return cam


# --------------------------------------------------------------------------- segmentation (test_segmentation, test_segmenter)
SEG_CFG = dict(width=2, epochs=2, batch_size=6, lr=0.01, momentum=0.9, weight_decay=5e-4, lambda_spl=0.1,
               soft_labels=True,
               # the paper's plain recipe, not the quick profile's (the schema's defaults): SGD, every
               # training slice each epoch, no early stopping, no warm-up
               optimizer="sgd", epoch_slices=None, positive_fraction=None, val_every=1, eval_batch_size=64,
               patience=None, loss_main="umcam", channels_last=False, postprocess="none", plateau_decay=None,
               min_epochs=0, seeds=1, tta=False)


def fake_slices(n_volumes: int = 4, n_slices: int = 6, size: int = 32, seed: int = 0) -> SliceSet:
    """Discs that grow and shrink through each stack: two train volumes, one val, one test."""
    rng = np.random.default_rng(seed)
    splits = ["train"] * (n_volumes - 2) + ["val", "test"]
    yy, xx = np.mgrid[:size, :size]
    images, masks, volume, index, split, vols = [], [], [], [], [], []
    for v in range(n_volumes):
        cy, cx = rng.uniform(0.4, 0.6, 2) * size
        for s in range(n_slices):
            radius = [0, 2, 4, 5, 3, 0][s % 6] * size / 16
            m = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
            images.append(np.clip(0.3 + 0.5 * m + rng.normal(0, 0.05, m.shape), 0, 1))
            masks.append(m)
            volume.append(v)
            index.append(s)
            split.append(splits[v])
        vols.append(dict(volume=v, subject=f"s{v}", split=splits[v], image_path="", n_slices=n_slices,
                         thickness_mm=5.0, native_spacing_mm=1.0, shape=""))
    masks = np.array(masks, dtype=np.uint8)
    return SliceSet(np.array(images, np.float32), masks, masks.reshape(len(masks), -1).max(1).astype(np.uint8),
                    np.array(volume, np.int32), np.array(index, np.int32), np.array(split), 2.0, pd.DataFrame(vols))


def write_upstream(run_dir: Path, s: SliceSet) -> None:
    """Notebooks 01-05's artifacts for ``s`` in ``run_dir``: the slice set, CAMs, thresholds, and SPL
    (0.25 everywhere) for every positive training slice but the first."""
    save_slices(run_dir, s)
    idx = np.arange(len(s))
    save_maps(run_dir, "cams", "gradcam", idx, np.where(s.masks > 0, 0.6, 0.2))
    save_maps(run_dir, "cams", "umcam", idx, np.where(s.masks > 0, 0.9, 0.1))
    write_json(run_dir / "cams" / "thresholds.json", {"gradcam": 0.5, "umcam": 0.5})
    pos = s.indices("train", positive_only=True)
    save_maps(run_dir, "spl", "spl", pos[1:], np.full((len(pos) - 1, 32, 32), 0.25))


#: The parameters cell of a stand-in notebook (the study's four lines).
PARAMETERS = 'profile = "quick"\noverrides = {}\nrun_dir = None\nfigures_dir = None'


def stand_in_notebook(path: Path, load_src: str, body_src: str) -> None:
    """A stand-in notebook shaped like the study's: the parameters cell, a cell that loads the
    parameters (``load_src`` reads them as ``params["key"]``), then ``body_src``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(PARAMETERS)
    p.metadata["tags"] = ["parameters"]
    load = ("from umcam_lib.config import notebook as notebook_params\n"
            "params = notebook_params.load(profile, overrides, validate=False)\n" + load_src)
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in"), p, nbformat.v4.new_code_cell(load),
                nbformat.v4.new_code_cell(body_src)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (bit-identical results across machines), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
