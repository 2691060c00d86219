"""Ship two trained UNets of a finished real-profile run into ``models/``, with model cards.

::

    python -m umcam_lib.segment.ship RUN_DIR [--out models] [--allow-dirty] [--any-profile] [--segmenter ALIAS=NAME ...]
                                    [--shift TABLE.csv] [--keep ALIAS]

From the run folder ``RUN_DIR`` (``runs/real``) two UNets are shipped:

* ``weak``: the weakly supervised UNet that **validation** chooses: the highest mean
  validation 3D DSC among the weakly supervised segmentation rows of Tables 1 and 2
  (:func:`umcam_lib.report.summarise` of the run's recorded scores; every method but
  :data:`FULLY_SUPERVISED`). Test scores are reported on the card, never used to choose;
* ``fullysup``: the fully supervised reference (:data:`FULLY_SUPERVISED`).

Each goes to ``OUT/<method>/`` as described in :mod:`umcam_lib.segment.shipped`: ``best.pt`` (weights in
float16, the checkpoint's config), ``preprocessing.json``, ``card.json`` and ``MODEL_CARD.md``.
Every number on a card is read from the run's files: the split of the stacks
(``data/volumes.csv``), the recipe and commits (``provenance/NN.json``), validation and test 3D
DSC and HD95 (the recorded scores), the checkpoint's epoch and width (``best.pt``).
``OUT/registry.json`` lists every file with its SHA-256 and size; it is written last. Every
file is written atomically.

``--segmenter weak=NAME`` / ``--segmenter fullysup=NAME`` ship instead a UNet trained for
``segment`` alone (``RUN_DIR/segmenter/NAME``, :mod:`umcam_lib.segment.segmenter`): its card carries
that model's held-out scores (only test for a model refitted on the training and validation
stacks), its ``seg`` section as the recipe, and its own git state beside the run's notebooks
01-05 (FullySup: 01) whose artifacts it was trained on. The run then needs no notebook 06-07.

``--keep weak`` (or ``fullysup``) keeps that alias's model of ``OUT`` as it was shipped (files,
card and hashes unchanged; the registry records where and by which command it was shipped) and
ships only the other: for a retrained model that validation prefers while its partner's retraining
would lose on the held-out stacks.

Every card states its scope (:mod:`umcam_lib.segment.card_scope`): the training distribution
(real stacks, synthetic stacks and their ranges, augmentation) and what the model has never
seen; ``--shift TABLE.csv`` (``benchmarks/shift_benchmark.py`` or ``extractor_levers.py``) adds
its per-case shift-benchmark table.

Refusals (each a :class:`ShipError` naming the reason; ``--allow-dirty`` overrides the first two,
and the cards then say so in capitals):

* the git working tree has uncommitted changes to tracked files (``OUT`` itself excluded), so
  no commit would hold the code that shipped them;
* the run's provenance records ``dirty: true`` (or no git state) for a notebook that produced
  a shipped model or its inputs (notebooks 01 to the one that trained it);
* the run was not made with the ``real`` profile (``--any-profile`` overrides; tests);
* the chosen model has no ``seg/<method>/best.pt``, or the run has no validation rows.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import io, provenance, report
from . import card_scope
from ..data.artifacts import volumes_path
from ..data.fetch import REGISTRY as CC0_REGISTRY
from ..hashing import file_sha256
from ..models.unet import checkpoint_width
from ..paths import REPO_ROOT, resolve
from ..train.seg_predict import folder_name
from ..train.seg_targets import VARIANTS
from . import segmenter as seg_only
from . import shipped
from .model import Preprocessing, method_dir, run_preprocessing
from ..train.seg_sweep import PAPER_ROW

FULLY_SUPERVISED = "FullySup"
"""The fully supervised reference (trained on the true masks); every other segmentation row is
weakly supervised."""
TRAINED_IN = {**{v: "06" for v in VARIANTS}, "DRS": "07", "AMR": "07"}
"""The notebook that trains each method's UNet."""
PROFILE = "real"
DATA_LICENCE = (
    "CC0 (the fetal-mri-cc0 stacks: public sample data of the MIAL super-resolution toolkit, "
    "github.com/Medical-Image-Analysis-Laboratory/mialsuperresolutiontoolkit; sub-01's BIDS dataset "
    "description states the licence CC0; sub-02 is that repository's older sample, whose code is "
    "BSD-3-Clause and whose masks' provenance is not stated there: see the dataset's README.md)")
INTENDED_USE = (
    "Research use only, not for clinical use. Brain masks of fetal T2-weighted single-shot (HASTE) "
    "slice stacks, as a first step before motion correction and super-resolution reconstruction, "
    "and as a reference for weakly supervised fetal brain segmentation (UM-CAM, MICCAI 2023). "
    "Made from nine stacks of two fetuses from one 1.5 T scanner (trained on some, chosen and scored on "
    "the others: see Training data): expect lower accuracy on other "
    "scanners, field strengths, gestational ages and pathologies; check every mask (the QC pictures "
    "of python -m umcam_lib.segment).")
NOT_CLINICAL = "research use only, not for clinical use"


class ShipError(RuntimeError):
    """The run (or the working tree) cannot give shippable models; the message says why."""


# --------------------------------------------------------------------------- reading the run
def segmentation_rows(run_dir: str | Path) -> pd.DataFrame:
    """Segmentation rows of Tables 1 and 2 (:func:`umcam_lib.report.summarise`), one per method
    and split (a method in both tables, as UM-CAM+SPL, keeps its first row); column ``table``
    names the table."""
    frames = []
    for table in report.TABLES:
        df = report.summarise(run_dir, table)
        if len(df):
            frames.append(df[df["section"] == "segmentation"].assign(table=table))
    if not frames:
        return pd.DataFrame(columns=[*report.COLUMNS, "table"])
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates(subset=["method", "split"], keep="first").reset_index(drop=True)


def choose_weak(rows: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The weakly supervised method with the highest mean validation 3D DSC.

    Parameters
    ----------
    rows : DataFrame
        :func:`segmentation_rows`.

    Returns
    -------
    method : str
    candidates : DataFrame
        ``method``, ``table``, ``dsc_mean`` of every weakly supervised validation row, best first
        (the choice is recorded on the card).

    Raises
    ------
    ShipError
        No weakly supervised validation row.
    """
    sensitivity = rows["method"] == PAPER_ROW  # a one-seed sensitivity row beside UM-CAM+SPL, never shipped
    val = rows[(rows["split"] == "val") & (rows["method"] != FULLY_SUPERVISED) & ~sensitivity]
    if val.empty or val["dsc_mean"].isna().all():
        raise ShipError("the run has no weakly supervised segmentation rows on the validation split "
                        "(run notebooks 06-07 first)")
    cand = val[["method", "table", "dsc_mean"]].sort_values("dsc_mean", ascending=False, kind="stable")
    return str(cand.iloc[0]["method"]), cand.reset_index(drop=True)


def item_scores(run_dir: str | Path, method: str, split: str) -> pd.DataFrame:
    """Per-volume segmentation scores of ``method`` on ``split`` (the first table that has them)."""
    raw = report.load_scores(run_dir)
    for table in report.TABLES:
        sel = raw[(raw["table"] == table) & (raw["section"] == "segmentation") & (raw["method"] == method)
                  & (raw["split"] == split)]
        if len(sel):
            return report.seed_average(sel)
    return raw.iloc[0:0]


def scores_of(rows: pd.DataFrame, run_dir: str | Path, method: str) -> dict[str, Any]:
    """Validation and test 3D DSC (%) and HD95 (mm, and px of the profile's grid) of one method."""
    out: dict[str, Any] = {}
    for split in report.SPLITS:
        r = rows[(rows["method"] == method) & (rows["split"] == split)]
        if r.empty:
            continue
        r = r.iloc[0]
        items = item_scores(run_dir, method, split)
        entry = {"table": r["table"], "n_volumes": int(r["n"]), "dsc_mean": float(r["dsc_mean"]),
                 "dsc_std": float(r["dsc_std"]), "hd95_px_mean": float(r["hd95_mean"])}
        if len(items):
            entry["dsc_min"] = float(items["dsc"].min())
            entry["dsc_per_volume"] = {str(int(i)): float(d) for i, d in zip(items["id"], items["dsc"])}
            if "hd95_mm" in items and items["hd95_mm"].notna().all():  # the table's hd95_mm_mean
                entry["hd95_mm_mean"] = float(items["hd95_mm"].mean())
                entry["hd95_mm_std"] = float(items["hd95_mm"].std(ddof=1)) if len(items) > 1 else 0.0
        out[split] = entry
    return out


def training_data(run_dir: str | Path, params01: dict[str, Any]) -> dict[str, Any]:
    """Which stacks were train / val / test (``data/volumes.csv``) and where they come from."""
    path = volumes_path(run_dir)
    if not path.is_file():
        raise ShipError(f"{path}: missing (notebook 01 did not finish in this run folder)")
    vols = pd.read_csv(path)
    upstream = {Path(s.file).name: s for s in CC0_REGISTRY}
    stacks = []
    all_cc0 = True
    for v in vols.itertuples(index=False):
        name = Path(str(v.image_path)).name
        src = upstream.get(name)
        entry = {"volume": int(v.volume), "subject": str(v.subject), "name": str(v.name), "split": str(v.split),
                 "n_slices": int(v.n_slices), "positive_slices": int(v.positive_slices),
                 "thickness_mm": float(v.thickness_mm), "native_spacing_mm": str(v.native_spacing_mm),
                 "shape": str(v.shape)}
        image = Path(str(v.image_path))
        if src is not None and image.is_file() and file_sha256(image) == src.sha256:
            entry["source"] = f"{src.repository}@{src.commit}:{src.path}"
            entry["sha256"] = src.sha256
        else:
            all_cc0 = False
        stacks.append(entry)
    data = params01.get("data", {})
    counts = vols["split"].value_counts().to_dict()
    return {"dataset": data.get("root"), "source": data.get("source"),
            "licence": DATA_LICENCE if all_cc0 else "unknown: not (all) the fetal-mri-cc0 stacks, see 'stacks'",
            "all_stacks_are_the_cc0_files": all_cc0,
            "split_counts": {k: int(counts.get(k, 0)) for k in ("train", "val", "test")},
            "val_subjects": data.get("val_subjects"), "test_subjects": data.get("test_subjects"),
            "stacks": stacks}


def provenance_check(records: dict[str, Any], method: str) -> tuple[str, list[str], dict[str, Any]]:
    """The notebook that trained ``method``, the notebooks up to it that are not clean, and their
    git states.

    Raises
    ------
    ShipError
        No provenance record of the training notebook.
    """
    nb = TRAINED_IN.get(method, "07")
    if nb not in records:
        raise ShipError(f"no provenance/{nb}.json in the run: notebook {nb} (which trains {method}) did not finish")
    states = chain_states(records, nb)
    return nb, unclean_of(states), states


def chain_states(records: dict[str, Any], last: str) -> dict[str, dict[str, Any]]:
    """``notebook -> {"commit", "dirty", "time_utc"}`` of the recorded notebooks up to ``last``."""
    return {k: {"commit": r.get("git", {}).get("commit"), "dirty": r.get("git", {}).get("dirty"),
                "time_utc": r.get("time_utc")} for k, r in ((k, records[k]) for k in sorted(records) if k <= last)}


def unclean_of(states: dict[str, dict[str, Any]]) -> list[str]:
    """The entries of ``states`` not recorded clean (``dirty`` true or unknown)."""
    return [k for k, st in states.items() if st["dirty"] is not False]


def segmenter_source(run_dir: Path, alias: str, name: str, records: dict[str, Any]) -> dict[str, Any]:
    """What a card needs from a segment-only UNet (:mod:`umcam_lib.segment.segmenter`) shipped as ``alias``.

    Returns
    -------
    dict
        ``method``, ``src`` (its ``best.pt``), ``summary`` (its ``summary.json``), ``notebook`` (the
        last notebook of the run whose artifacts it trained on: 01 for FullySup, 05 for a weak
        method), ``unclean`` (that chain's notebooks recorded dirty, and ``segmenter`` when its own
        training was) and ``states``.

    Raises
    ------
    ShipError
        Not trained or not finished, the wrong supervision for ``alias``, or notebooks missing.
    """
    try:
        summary = seg_only.read_summary(run_dir, name)
    except FileNotFoundError as exc:
        raise ShipError(str(exc)) from exc
    method = str(summary["method"])
    if (alias == "fullysup") != (method == FULLY_SUPERVISED):
        raise ShipError(f"--segmenter {alias}={name}: that UNet is {method}, which cannot be shipped as {alias!r}")
    nb = "01" if method == FULLY_SUPERVISED else "05"
    missing = [k for k in ("01", nb) if k not in records]
    if missing:
        raise ShipError(f"{run_dir}: no provenance/{missing[0]}.json, whose artifacts {name} was trained on")
    states = chain_states(records, nb)
    git = summary.get("git") or {}
    states["segmenter"] = {"commit": git.get("commit"), "dirty": git.get("dirty"), "time_utc": None}
    return {"method": method, "src": seg_only.segmenter_dir(run_dir, name) / "best.pt", "summary": summary,
            "notebook": nb, "unclean": unclean_of(states), "states": states}


def refit_stacks(data: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """``training_data`` with the stacks a refit trained on marked ``train (refit)``."""
    trained = set(summary.get("trained_on") or [])
    stacks = [{**v, "split": "train (refit)"} if v["split"] == "val" and v["name"] in trained else v
              for v in data["stacks"]]
    return {**data, "stacks": stacks}


def segmenter_choice(summary: dict[str, Any]) -> str:
    """The card's ``chosen_by`` of a segment-only UNet: how it was trained and what chose its epoch."""
    text = (f"{summary['method']} trained for segment alone (python -m umcam_lib.segment.segmenter, "
            f"model {summary['name']}, seed {summary['seed']}, changes {', '.join(summary['changes']) or 'none'}): ")
    if summary["stage"] == "refit":
        src = summary["epochs_from"]
        return text + (f"trained on the training and validation stacks for {src['best_epoch']} epochs, the epoch "
                       f"that validation chose for model {src['model']}; the last epoch is shipped, and only the "
                       f"test stacks are held out")
    return text + "the epoch with the best validation 3D DSC; the test stacks were not used to choose"


# --------------------------------------------------------------------------- writing
def save_fp16(ckpt: dict[str, Any], method: str, path: Path) -> None:
    """Write a shipped ``best.pt``: float16 weights, the training checkpoint's config."""
    out = {"model": shipped.to_float16(ckpt["model"]), "config": dict(ckpt.get("config") or {}),
           "epoch": ckpt.get("epoch"), "score": ckpt.get("score"), "method": method, "dtype": "float16"}
    with io.atomic_path(path) as tmp:
        torch.save(out, tmp)


def render_card(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` from ``card.json`` (nothing on it that the JSON does not hold)."""
    s, ck, study, data = card["scores"], card["checkpoint"], card["study"], card["training_data"]
    lines = [f"# Model card: {card['name']} ({card['supervision']})", ""]
    if card.get("warning"):
        lines += [f"> **{card['warning']}**", ""]
    lines += [f"**{card['not_for_clinical_use'].capitalize()}.**", "",
              "## Intended use", "", card["intended_use"], "",
              "## Use", "", f"    python -m umcam_lib.segment my_scans/ --out masks/ --model {card['alias']}", "",
              "## Model", "",
              f"- 2D MONAI BasicUNet, width {ck['width']} ({ck['parameters']} parameters), weights stored in "
              f"{ck['dtype']} and cast to float32 on loading",
              (f"- best epoch {ck['epoch']} (validation 3D DSC at selection {ck['validation_score']:.2f} %)"
               if ck.get("validation_score") is not None and card["scores"].get("val") is not None else
               f"- epoch {ck['epoch']}, the last of a fixed number (no validation stack held out: see Choice)"),
              f"- slices prepared at {card['preprocessing']['spacing_mm']:g} mm, "
              f"{card['preprocessing']['image_size']} px; test-time augmentation {ck.get('tta')}, "
              f"post-processing {ck.get('postprocess')}", "",
              "## Choice", "", card["chosen_by"], ""]
    if card.get("candidates"):
        lines += ["| method | table | validation 3D DSC (%) |", "|---|---|---|"]
        lines += [f"| {c['method']} | {c['table']} | {c['dsc_mean']:.2f} |" for c in card["candidates"]]
        lines.append("")
    lines += ["## Scores (3D, per volume, held-out stacks only)", "",
              "| split | volumes | DSC (%) mean | DSC SD | DSC min | HD95 (mm) mean | HD95 (px) mean |",
              "|---|---|---|---|---|---|---|"]
    for split in ("val", "test"):
        if split in s:
            e = s[split]
            mm = f"{e['hd95_mm_mean']:.2f}" if "hd95_mm_mean" in e else ""
            mn = f"{e['dsc_min']:.2f}" if "dsc_min" in e else ""
            lines.append(f"| {split} | {e['n_volumes']} | {e['dsc_mean']:.2f} | {e['dsc_std']:.2f} | {mn} | "
                         f"{mm} | {e['hd95_px_mean']:.2f} |")
    lines += [""] + card_scope.render_scope(card)
    lines += ["## Training data", "",
              f"Dataset {data['dataset']} ({data['source']}); licence: {data['licence']}.", "",
              "| stack | subject | split | slices | with brain | source |", "|---|---|---|---|---|---|"]
    lines += [f"| {v['name']} | {v['subject']} | {v['split']} | {v['n_slices']} | {v['positive_slices']} | "
              f"{v.get('source', '')} |" for v in data["stacks"]]
    lines += ["", "## Recipe", "",
              f"Notebook {study['trained_in']} of profile `{study['profile']}`; its parameters (`card.json` → "
              f"`recipe`) include the segmentation settings:", "", "```"]
    lines += [f"seg.{k}: {v}" for k, v in sorted(card["recipe"].get("seg", {}).items())]
    lines += ["```", "", "## Provenance", "",
              f"- study commit {study['commit']} (dirty: {study['dirty']}), run folder `{study['run_dir']}`",
              f"- shipped by commit {card['shipped_by']['commit']} (dirty: {card['shipped_by']['dirty']}) at "
              f"{card['shipped_by']['time_utc']} with `{card['shipped_by']['command']}`", ""]
    lines += ["| notebook | commit | dirty | time (UTC) |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['commit']} | {v['dirty']} | {v['time_utc']} |" for k, v in study["notebooks"].items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- one call, step by step
@dataclass(frozen=True)
class Pick:
    """One model to ship: which alias, which method, where its weights are, its git chain.

    Attributes
    ----------
    alias : str
        ``weak`` or ``fullysup``.
    method : str
        The method's name (the shipped folder is :func:`~umcam_lib.train.seg_predict.folder_name` of it).
    notebook : str
        The notebook whose provenance holds its recipe (the one that trained it; for a
        segment-only UNet the last notebook whose artifacts it trained on).
    unclean : list of str
        The notebooks of its chain (and ``segmenter``) not recorded clean.
    states : dict
        ``notebook -> {"commit", "dirty", "time_utc"}`` of that chain.
    alone : dict or None
        :func:`segmenter_source` of a segment-only UNet; None for the study's UNet.
    src : Path or None
        Its ``best.pt`` (set by :func:`locate`).
    """

    alias: str
    method: str
    notebook: str
    unclean: list[str]
    states: dict[str, Any]
    alone: dict[str, Any] | None = None
    src: Path | None = None


@dataclass(frozen=True)
class Shipment:
    """What every card of one :func:`ship` call shares (read from the run before anything is written)."""

    run: Path
    profile: str | None
    records: dict[str, Any]
    rows: pd.DataFrame
    candidates: pd.DataFrame
    prep: Preprocessing
    data: dict[str, Any]
    shipped_by: dict[str, Any]
    tree_dirty: bool
    changed: list[str]
    shift: pd.DataFrame | None = None


def check_request(run: Path, segmenters: dict[str, str], keep: Sequence[str] = ()) -> None:
    """Refuse an unknown ``--segmenter`` or ``--keep`` alias, an alias both kept and shipped, or a
    folder with no ``seg/`` when a study UNet is needed."""
    unknown = sorted(set(segmenters) - {"weak", "fullysup"})
    if unknown:
        raise ShipError(f"--segmenter {unknown[0]}=...: the alias must be weak or fullysup")
    bad = sorted(set(keep) - {"weak", "fullysup"})
    if bad:
        raise ShipError(f"--keep {bad[0]}: the alias must be weak or fullysup")
    if set(keep) & set(segmenters):
        raise ShipError(f"--keep {sorted(set(keep) & set(segmenters))[0]}: that alias is also given to --segmenter")
    if len(set(keep)) == 2:
        raise ShipError("--keep weak and --keep fullysup: nothing would be shipped")
    if len(segmenters) + len(set(keep)) < 2 and not (run / "seg").is_dir():
        raise ShipError(f"{run}: not a run folder with trained UNets (no seg/)")


def check_tree(state: dict[str, Any], allow_dirty: bool) -> None:
    """Refuse a working tree with uncommitted changes (``state``: :func:`umcam_lib.provenance.git_state`)."""
    if state.get("dirty") is not False and not allow_dirty:
        changed = ", ".join(state.get("changed") or []) or "not a git checkout"
        raise ShipError(f"refusing to ship from a working tree with uncommitted changes ({changed}): no commit would "
                        f"hold the code that shipped these models. Commit the changes, or pass --allow-dirty")


def read_records(run: Path, any_profile: bool) -> tuple[dict[str, Any], str | None]:
    """The run's provenance records and its profile; refuse a run without notebook 01 or of
    another profile than ``real`` (unless ``any_profile``)."""
    records = provenance.collect(run)
    if "01" not in records:
        raise ShipError(f"{run}: no provenance/01.json (notebook 01 did not finish)")
    profile = records["01"].get("params", {}).get("profile")
    if profile != PROFILE and not any_profile:
        raise ShipError(f"{run}: made with profile {profile!r}, not {PROFILE!r}; ship a real-profile run "
                        f"(or pass --any-profile)")
    return records, profile


def choose(run: Path, rows: pd.DataFrame, records: dict[str, Any],
           segmenters: dict[str, str]) -> tuple[list[Pick], pd.DataFrame]:
    """Which models are shipped: the validation-chosen weak UNet (:func:`choose_weak`) and
    :data:`FULLY_SUPERVISED`, or the segment-only UNets that ``segmenters`` names.

    Returns
    -------
    picks : list of Pick
        ``weak`` then ``fullysup`` (no ``src`` yet).
    candidates : DataFrame
        The weak candidates (:func:`choose_weak`; empty for a segment-only weak UNet).
    """
    alone = {alias: segmenter_source(run, alias, name, records) for alias, name in segmenters.items()}
    if "weak" in alone:
        weak, candidates = alone["weak"]["method"], pd.DataFrame(columns=["method", "table", "dsc_mean"])
    else:
        weak, candidates = choose_weak(rows)
    picks = []
    for alias, method in (("weak", weak), ("fullysup", FULLY_SUPERVISED)):
        if alias in alone:
            a = alone[alias]
            picks.append(Pick(alias, method, a["notebook"], a["unclean"], a["states"], a))
        else:
            nb, unclean, states = provenance_check(records, method)
            picks.append(Pick(alias, method, nb, unclean, states))
    return picks, candidates


def check_provenance(run: Path, picks: Sequence[Pick], allow_dirty: bool) -> None:
    """Refuse models whose notebooks (or segment-only training) are recorded dirty."""
    unclean = sorted({nb for p in picks for nb in p.unclean})
    if unclean and not allow_dirty:
        raise ShipError(f"{run}: its provenance records dirty: true (or no git state) for notebook(s) "
                        f"{', '.join(unclean)}, which produced the shipped models or their inputs; rerun the "
                        f"pipeline from a clean commit, or pass --allow-dirty")


def shipped_by(state: dict[str, Any], run_dir: str | Path, out: Path, segmenters: dict[str, str],
               allow_dirty: bool, any_profile: bool, shift: str | Path | None = None,
               keep: Sequence[str] = ()) -> dict[str, Any]:
    """``commit``, ``dirty``, ``time_utc`` (now) and the ``command`` that ships (for cards and registry)."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    command = "python -m umcam_lib.segment.ship " + str(run_dir) + ("" if Path(out) == shipped.MODELS_DIR.resolve()
                                                                     else f" --out {out}") \
        + "".join(f" --segmenter {a}={n}" for a, n in sorted(segmenters.items())) \
        + (" --allow-dirty" if allow_dirty else "") + (" --any-profile" if any_profile else "") \
        + (f" --shift {shift}" if shift is not None else "") + "".join(f" --keep {a}" for a in sorted(keep))
    return {"commit": state.get("commit"), "dirty": state.get("dirty"), "time_utc": now, "command": command}


def previous_registry(out: Path) -> dict[str, Any]:
    """``out/registry.json`` as it was (empty when missing or not a registry)."""
    if (out / shipped.REGISTRY).is_file():
        try:
            return shipped.read_registry(out)
        except shipped.ShippedModelError:
            return {}
    return {}


def locate(run: Path, picks: Sequence[Pick]) -> list[Pick]:
    """The picks with their ``best.pt``; every source is checked before anything is written.

    Raises
    ------
    ShipError
        A chosen model has no checkpoint.
    """
    out = []
    for p in picks:
        if p.alone is not None:
            src = p.alone["src"]
            if not src.is_file():
                raise ShipError(f"{src}: missing (the segment-only UNet did not finish)")
        else:
            try:
                src = method_dir(run, p.method) / "best.pt"
            except FileNotFoundError as exc:
                raise ShipError(f"the run has no trained UNet for {p.method}, chosen as {p.alias!r} ({exc})") from exc
        out.append(replace(p, src=src))
    return out


def recipe_record(pick: Pick, records: dict[str, Any]) -> dict[str, Any]:
    """The provenance record whose parameters are the card's recipe (a segment-only UNet's
    ``seg`` section in place of the notebook's)."""
    rec = records[pick.notebook]
    if pick.alone is not None:
        rec = {**rec, "params": {**rec.get("params", {}), "seg": pick.alone["summary"]["seg"]}}
    return rec


def model_card(pick: Pick, ckpt: dict[str, Any], n_params: int, rec: dict[str, Any], s: Shipment) -> dict[str, Any]:
    """``card.json`` of one shipped model (every number read from the run's files)."""
    config, alone, method = ckpt["config"], pick.alone, pick.method
    dirty_notes = []
    if s.tree_dirty:
        dirty_notes.append(f"shipped from a working tree with uncommitted changes "
                           f"({', '.join(s.changed) or 'no git state'})")
    if pick.unclean:
        dirty_notes.append(f"trained by notebooks recorded dirty: {', '.join(pick.unclean)}")
    study_key = "segmenter" if alone is not None else pick.notebook
    card: dict[str, Any] = {
        "name": method, "alias": pick.alias,
        "supervision": "fully supervised (true masks)" if method == FULLY_SUPERVISED
        else "weakly supervised (image-level labels)",
        "not_for_clinical_use": NOT_CLINICAL, "intended_use": INTENDED_USE,
        "chosen_by": (segmenter_choice(alone["summary"]) if alone is not None else
                      "the fully supervised reference of the study (trained on the true masks)"
                      if method == FULLY_SUPERVISED else
                      "the highest mean validation 3D DSC among the weakly supervised segmentation rows of "
                      "Tables 1-2 of the run (test scores were not used to choose)"),
        "candidates": s.candidates.to_dict("records") if method != FULLY_SUPERVISED else [],
        "preprocessing": {"spacing_mm": s.prep.spacing_mm, "image_size": s.prep.image_size},
        "checkpoint": {"source": str(pick.src), "epoch": ckpt.get("epoch"), "validation_score": ckpt.get("score"),
                       "width": int(config["width"]), "parameters": n_params, "dtype": "float16",
                       "tta": config.get("tta"), "postprocess": config.get("postprocess")},
        "scores": alone["summary"]["scores"] if alone is not None else scores_of(s.rows, s.run, method),
        "training_data": refit_stacks(s.data, alone["summary"]) if alone is not None else s.data,
        "recipe": {k: v for k, v in rec.get("params", {}).items() if k not in ("device", "threads")},
        "study": {"run_dir": str(s.run), "profile": s.profile,
                  "trained_in": f"segmenter {alone['summary']['name']}" if alone is not None else pick.notebook,
                  "commit": pick.states[study_key]["commit"], "dirty": pick.states[study_key]["dirty"],
                  "notebooks": pick.states, "library": rec.get("library"), "packages": rec.get("packages")},
        "shipped_by": s.shipped_by,
    }
    dist = card_scope.training_distribution(card["training_data"], card["recipe"].get("seg", {}),
                                            alone["summary"].get("synthetic") if alone is not None else None,
                                            alone["summary"].get("restack") if alone is not None else None)
    card["training_distribution"], card["never_seen"] = dist, card_scope.never_seen(dist)
    if s.shift is not None:
        card["shift_benchmark"] = shift_of(pick, s.shift)
    if dirty_notes:
        card["warning"] = "NOT REPRODUCIBLE FROM A COMMIT (--allow-dirty): " + "; ".join(dirty_notes).upper()
    return card


def shift_of(pick: Pick, table: pd.DataFrame) -> dict[str, Any]:
    """The shift-benchmark rows of ``pick`` (named ``segmenter/<name>``, by its method or its alias).

    Raises
    ------
    ShipError
        The table has no row of it.
    """
    names = ([f"segmenter/{pick.alone['summary']['name']}"] if pick.alone is not None else []) + [pick.method, pick.alias]
    try:
        return card_scope.shift_cases(table, names)
    except card_scope.ScopeError as exc:
        raise ShipError(f"--shift: {exc}") from exc


def write_model(folder: Path, pick: Pick, s: Shipment) -> dict[str, Any]:
    """Write one model's four files (:data:`umcam_lib.segment.shipped.FILES`) into ``folder``.

    ``best.pt`` gets float16 weights and the checkpoint's config with its ``width`` (from the
    checkpoint, else the recipe's ``seg.width``), and is loaded back as a check.

    Returns
    -------
    dict
        The card written (``card.json``).

    Raises
    ------
    ShipError
        Neither the checkpoint nor the recipe gives the UNet width.
    """
    assert pick.src is not None
    ckpt = torch.load(pick.src, map_location="cpu", weights_only=True)
    config = dict(ckpt.get("config") or {})
    rec = recipe_record(pick, s.records)
    width = checkpoint_width(ckpt, rec.get("params", {}).get("seg", {}).get("width"))
    if width is None:
        raise ShipError(f"{pick.src}: the checkpoint records no UNet width and provenance/{pick.notebook}.json "
                        f"no seg.width")
    config["width"] = int(width)
    ckpt["config"] = config
    save_fp16(ckpt, pick.method, folder / "best.pt")
    net, _ = shipped.load_unet(folder / "best.pt")  # it loads back (float32)
    n_params = int(sum(p.numel() for p in net.parameters()))
    io.write_json(folder / "preprocessing.json", {"spacing_mm": s.prep.spacing_mm, "image_size": s.prep.image_size})
    card = model_card(pick, ckpt, n_params, rec, s)
    io.write_json(folder / "card.json", card)
    io.write_text(folder / "MODEL_CARD.md", render_card(card))
    return card


def kept_models(out: Path, old: dict[str, Any], keep: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The models of ``old`` (``out``'s registry) that ``keep`` names, each checked unchanged on disk.

    Returns
    -------
    dict
        ``method -> {"entry": its registry entry, "alias": alias, "origin": where and how it was
        shipped}`` (``origin`` carried over when it was already kept once).

    Raises
    ------
    ShipError
        ``out`` has no registry, no model of that alias, or one of its files is missing or changed.
    """
    kept: dict[str, dict[str, Any]] = {}
    for alias in keep:
        method = (old.get("aliases") or {}).get(alias)
        if not old or method is None or method not in (old.get("models") or {}):
            raise ShipError(f"--keep {alias}: {out} has no shipped {alias!r} model to keep")
        entry = old["models"][method]
        for f in shipped.FILES:
            rel = f"{entry['folder']}/{f}"
            path, want = out / rel, (old.get("files") or {}).get(rel, {}).get("sha256")
            if not path.is_file() or want is None or file_sha256(path) != want:
                raise ShipError(f"--keep {alias}: {path} is missing or differs from the registry; ship it anew")
        origin = (old.get("kept") or {}).get(alias) or {"source_run": old.get("source_run"),
                                                        "shipped_by": old.get("shipped_by")}
        kept[method] = {"entry": entry, "alias": alias, "origin": origin}
    return kept


def write_registry(out: Path, models: dict[str, Any], picks: Sequence[Pick], run: Path,
                   by: dict[str, Any], kept: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Hash every shipped (and kept) file and write ``out/registry.json`` (last, atomically); return it."""
    files = {}
    for method, m in models.items():
        for f in shipped.FILES:
            p = out / m["folder"] / f
            files[f"{m['folder']}/{f}"] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    kept = kept or {}
    aliases = {p.alias: p.method for p in picks} | {k["alias"]: method for method, k in kept.items()}
    registry = {"version": 1, "default": shipped.DEFAULT_ALIAS,
                "aliases": dict(sorted(aliases.items(), key=lambda a: a[0] != "weak")),
                "models": models, "files": dict(sorted(files.items())), "source_run": str(run),
                "shipped_by": by}
    if kept:
        registry["kept"] = {k["alias"]: k["origin"] for k in kept.values()}
    io.write_json(out / shipped.REGISTRY, registry)
    return registry


def remove_stale(out: Path, old: dict[str, Any], models: dict[str, Any]) -> None:
    """Delete the files of models shipped before (``old`` registry) and no longer chosen."""
    for name, m in (old.get("models") or {}).items():
        if name not in models:
            for f in shipped.FILES:
                (out / m["folder"] / f).unlink(missing_ok=True)
            if (out / m["folder"]).is_dir() and not any((out / m["folder"]).iterdir()):
                (out / m["folder"]).rmdir()


def ship(run_dir: str | Path, out: str | Path = shipped.MODELS_DIR, allow_dirty: bool = False,
         any_profile: bool = False, repo: Path = REPO_ROOT, git: dict[str, Any] | None = None,
         segmenters: dict[str, str] | None = None, shift: str | Path | None = None,
         keep: Sequence[str] = ()) -> dict[str, Any]:
    """Ship the validation-chosen weak UNet and the fully supervised one of ``run_dir`` into ``out``.

    Parameters
    ----------
    run_dir : path
        A finished pipeline run folder (notebooks 01-07).
    out : path
        The models folder (default the repository's ``models/``).
    allow_dirty : bool
        Ship from a dirty tree or a run recorded dirty; the cards then carry a warning.
    any_profile : bool
        Accept a run of another profile than ``real``.
    repo : Path
        The checkout whose git state is checked.
    git : dict, optional
        A :func:`umcam_lib.provenance.git_state` to judge instead of reading it (tests).
    segmenters : dict, optional
        ``alias -> name``: ship ``RUN_DIR/segmenter/<name>`` (a UNet trained for ``segment``
        alone, :mod:`umcam_lib.segment.segmenter`) as ``weak`` or ``fullysup`` instead of the
        study's UNet; its card carries that model's held-out scores.
    shift : path, optional
        A shift-benchmark table (``.csv``) with rows of every shipped model (as
        ``segmenter/<name>``, its method or its alias): the cards carry its per-case scores.
    keep : sequence of str
        Aliases whose model in ``out`` stays as shipped (checked against the registry's hashes);
        only the other alias is shipped.

    Returns
    -------
    dict
        The registry written to ``out/registry.json``.

    Raises
    ------
    ShipError
        See the module docstring.
    """
    run, out = resolve(run_dir), resolve(out)
    segmenters, keep = dict(segmenters or {}), sorted(set(keep))
    check_request(run, segmenters, keep)
    state = git if git is not None else provenance.git_state(repo, exclude=[out])
    check_tree(state, allow_dirty)
    records, profile = read_records(run, any_profile)
    rows = segmentation_rows(run)
    old = previous_registry(out)
    kept = kept_models(out, old, keep)
    picks, candidates = choose(run, rows, records, segmenters)
    picks = [p for p in picks if p.alias not in keep]
    check_provenance(run, picks, allow_dirty)
    try:
        shift_table = None if shift is None else card_scope.read_table(shift)
    except card_scope.ScopeError as exc:
        raise ShipError(f"--shift: {exc}") from exc
    s = Shipment(run=run, profile=profile, records=records, rows=rows, candidates=candidates,
                 prep=run_preprocessing(run), data=training_data(run, records["01"].get("params", {})),
                 shipped_by=shipped_by(state, run_dir, out, segmenters, allow_dirty, any_profile, shift, keep),
                 tree_dirty=state.get("dirty") is not False, changed=list(state.get("changed") or []),
                 shift=shift_table)
    picks = locate(run, picks)
    for pick in picks if shift_table is not None else []:
        shift_of(pick, shift_table)  # every shipped model has rows, before anything is written
    models: dict[str, Any] = {method: k["entry"] for method, k in kept.items()}
    for pick in picks:
        card = write_model(out / folder_name(pick.method), pick, s)
        models[pick.method] = {"folder": folder_name(pick.method), "alias": pick.alias,
                               "supervision": card["supervision"]}
    registry = write_registry(out, models, picks, run, s.shipped_by, kept)
    remove_stale(out, old, models)
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.segment.ship",
                                 description="Ship the validation-chosen weakly supervised UNet and the fully "
                                             "supervised UNet of a finished real-profile run into models/.")
    ap.add_argument("run_dir", help="finished pipeline run folder, e.g. runs/real")
    ap.add_argument("--out", default=str(shipped.MODELS_DIR), help="models folder (default: the repository's models/)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="ship from a dirty tree or a run recorded dirty (the model cards then say so)")
    ap.add_argument("--any-profile", action="store_true", help="accept a run of another profile than real")
    ap.add_argument("--segmenter", action="append", default=[], metavar="ALIAS=NAME",
                    help="ship RUN_DIR/segmenter/NAME (python -m umcam_lib.segment.segmenter) as ALIAS (weak or "
                         "fullysup) instead of the study's UNet")
    ap.add_argument("--keep", action="append", default=[], metavar="ALIAS",
                    help="keep this alias's model of --out as it was shipped (its files unchanged) and ship only the other")
    ap.add_argument("--shift", default=None, metavar="TABLE.csv",
                    help="shift-benchmark table (benchmarks/shift_benchmark.py) with rows of the shipped models: "
                         "their cards carry its per-case scores")
    args = ap.parse_args(argv)
    try:
        pairs = [p.split("=", 1) for p in args.segmenter]
        if any(len(p) != 2 or not p[1] for p in pairs):
            raise ShipError(f"--segmenter expects ALIAS=NAME, got {args.segmenter}")
        reg = ship(args.run_dir, args.out, args.allow_dirty, args.any_profile, segmenters=dict(pairs), shift=args.shift,
                   keep=args.keep)
    except (ShipError, FileNotFoundError, shipped.ShippedModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = resolve(args.out)
    for method, m in reg["models"].items():
        card = json.loads((out / m["folder"] / "card.json").read_text())
        s = card["scores"]
        val = s.get("val", {}).get("dsc_mean", np.nan)
        test = s.get("test", {}).get("dsc_mean", np.nan)
        print(f"{m['alias']:9s} {method:12s} validation 3D DSC {val:.2f} %, test {test:.2f} % -> {out / m['folder']}")
        if card.get("warning"):
            print(f"WARNING: {card['warning']}", file=sys.stderr)
    total = sum(f["bytes"] for f in reg["files"].values())
    print(f"{len(reg['files'])} files, {total / 1e6:.2f} MB; {out / shipped.REGISTRY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
