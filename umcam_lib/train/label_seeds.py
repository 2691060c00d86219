"""The crossed design: UNet seed k trains on the labels that classifier seed k made.

A weakly supervised UNet row has two sources of seed-to-seed spread: the classifier (and so the
CAMs, SPL and baseline fine-tunes its labels come from) and the UNet itself. A rerun on another
machine redraws both. When every UNet seed trained on the first classifier seed's labels, a
row's seed SD held only the UNet's part, and a rerun that moved the first classifier moved every
UNet of the row together. Crossing pairs them instead: the ``k``-th UNet seed (``seed + k``)
trains on the labels of the ``k``-th classifier seed (``seed + k mod seeds``), so the ``S`` UNet
seeds of a row are ``S`` draws of the whole chain and its spread covers both.

Each classifier seed's labels live in its own folder with the run folder's layout
(:func:`labels_dir`): the primary seed's in the run folder itself, the others' in
``seeds/seed-<s>/`` beside their classifier (``cams/<name>.npz``, ``cams/thresholds.json``,
``spl/spl.npz``, ``baselines/<kind>/``). Notebook 04 writes the CAMs, 05 the SPL and 07 the
baseline fine-tunes of every classifier seed a UNet seed is paired with; 06 and 07 read them.
The pairing costs no extra UNets: a row still trains ``seg.seeds`` of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..paths import resolve

#: Rows whose targets do not come from the classifier (every UNet seed trains on the same ones).
LABEL_FREE = ("FullySup",)


def labels_dir(run_dir: str | Path, classifier_seed: int, primary_seed: int) -> Path:
    """The folder holding one classifier seed's labels: the run folder for the primary seed,
    ``seeds/seed-<s>`` (beside its classifier) for the others.

    Examples
    --------
    >>> labels_dir("/r", 0, 0).name, labels_dir("/r", 2, 0).relative_to("/r").as_posix()
    ('r', 'seeds/seed-2')
    """
    root = resolve(run_dir)
    return root if int(classifier_seed) == int(primary_seed) else root / "seeds" / f"seed-{int(classifier_seed)}"


def paired_seeds(unet_seeds: Sequence[int], classifier_seeds: Sequence[int], cross: bool = True) -> dict[int, int]:
    """UNet seed -> the classifier seed whose labels it trains on.

    With ``cross`` the ``k``-th UNet seed pairs with the ``k``-th classifier seed (cycling when
    there are more UNet seeds); without it every UNet seed takes the first (primary) one.

    Examples
    --------
    >>> paired_seeds([0, 1, 2], [0, 1, 2]), paired_seeds([0, 1, 2], [0, 1])
    ({0: 0, 1: 1, 2: 2}, {0: 0, 1: 1, 2: 0})
    >>> paired_seeds([0, 1], [0, 1, 2], cross=False)
    {0: 0, 1: 0}
    """
    if not classifier_seeds:
        raise ValueError("there must be at least one classifier seed")
    return {int(u): int(classifier_seeds[k % len(classifier_seeds)] if cross else classifier_seeds[0])
            for k, u in enumerate(unet_seeds)}


def extra_label_seeds(classifier_seeds: Sequence[int], cross: bool, unet_seeds: Sequence[int] | None = None) -> list[int]:
    """The classifier seeds, other than the primary, whose labels some UNet trains on.

    ``unet_seeds`` None (a notebook before the UNets, which does not read ``seg``): every extra
    classifier seed when ``cross``.

    Examples
    --------
    >>> extra_label_seeds([0, 1, 2], True), extra_label_seeds([0, 1, 2], True, [0]), extra_label_seeds([0, 1], False)
    ([1, 2], [], [])
    """
    if not cross:
        return []
    pairs = paired_seeds(unet_seeds if unet_seeds is not None else classifier_seeds, classifier_seeds)
    return sorted({c for c in pairs.values() if c != int(classifier_seeds[0])})


def crossing(cross: bool, last_notebook: str | int | None) -> bool:
    """Whether notebooks 04-05 must write the labels of the other classifier seeds: crossing is on
    and the run goes on to the UNets of notebooks 06-07 (a profile that stops at 05, as the real
    profile's companions do, would compute them for nothing).

    Examples
    --------
    >>> crossing(True, None), crossing(True, "05"), crossing(True, 8), crossing(False, None)
    (True, False, True, False)
    """
    return bool(cross) and (last_notebook is None or str(last_notebook).zfill(2) >= "06")


def crossed_targets(run_dir: str | Path, pairs: Mapping[int, int], primary_seed: int,
                    build: Callable[[Path], Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    """The targets of every UNet seed paired with an extra classifier seed, row by row.

    Parameters
    ----------
    pairs : mapping
        UNet seed -> classifier seed (:func:`paired_seeds`).
    build : callable
        ``labels folder -> {row: targets}`` (e.g. ``lambda d: all_targets(slices, d, seg)``),
        called once per extra classifier seed.

    Returns
    -------
    dict
        ``row -> {UNet seed: targets}`` for the UNet seeds whose classifier seed is not the
        primary one (the others train on the row's own targets); rows of :data:`LABEL_FREE` are
        left out.
    """
    built: dict[int, Mapping[str, Mapping[str, Any]]] = {}
    out: dict[str, dict[int, Mapping[str, Any]]] = {}
    for unet_seed, cls_seed in pairs.items():
        if int(cls_seed) == int(primary_seed):
            continue
        if cls_seed not in built:
            built[cls_seed] = build(labels_dir(run_dir, cls_seed, primary_seed))
        for row, targets in built[cls_seed].items():
            if row not in LABEL_FREE:
                out.setdefault(row, {})[int(unet_seed)] = targets
    return out


def labels_name(row: str, classifier_seed: int, primary_seed: int) -> str:
    """Name of a row's targets made from one classifier seed's labels: ``row`` for the primary
    seed, ``row__labels<s>`` otherwise.

    Examples
    --------
    >>> labels_name("SPL", 0, 0), labels_name("SPL", 2, 0)
    ('SPL', 'SPL__labels2')
    """
    return row if int(classifier_seed) == int(primary_seed) else f"{row}__labels{int(classifier_seed)}"


__all__ = ["LABEL_FREE", "crossed_targets", "crossing", "extra_label_seeds", "labels_dir", "labels_name", "paired_seeds"]
