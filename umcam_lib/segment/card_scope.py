"""What a shipped model has seen, and has not: the scope sections of its model card.

A person with stacks from another hospital needs three things a score table does not say: what
the model trained on (real stacks, synthetic stacks and the ranges they were drawn from, the
augmentation), what it has never seen, and how it did on stacks unlike its training data (the
shift benchmark, ``benchmarks/shift_benchmark.py``, case by case). :func:`scope` builds them from
the run's files and the segmenter's summary; :func:`render_scope` writes them as Markdown.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

AUGMENT_KEYS = ("augment_scale", "augment_gamma", "augment_resolution", "augment_bias", "augment_noise")


class ScopeError(ValueError):
    """A shift-benchmark table that cannot go on a card (missing, or without the model's rows)."""


def training_distribution(data: dict[str, Any], seg: dict[str, Any], synthetic: dict[str, Any] | None,
                          restack: dict[str, Any] | None = None) -> dict[str, Any]:
    """Real stacks trained on, synthetic stacks and their ranges, stacks cut from the real ones,
    and the augmentation.

    Parameters
    ----------
    data : dict
        The card's ``training_data`` (stacks with ``split``, ``subject``, ``thickness_mm``,
        ``native_spacing_mm``).
    seg : dict
        The recipe's ``seg`` section.
    synthetic : dict or None
        The segmenter summary's ``synthetic`` record (:mod:`umcam_lib.segment.synthetic`).
    restack : dict or None
        The segmenter summary's ``restack`` record (:mod:`umcam_lib.segment.restack`).
    """
    trained = [v for v in data.get("stacks", []) if str(v.get("split", "")).startswith("train")]
    thick = sorted({round(float(v["thickness_mm"]), 2) for v in trained if "thickness_mm" in v})
    return {
        "real": {"n_stacks": len(trained), "subjects": sorted({str(v["subject"]) for v in trained}),
                 "thickness_mm": thick, "spacing_mm": sorted({str(v.get("native_spacing_mm", "")) for v in trained}),
                 "dataset": data.get("dataset")},
        "synthetic": synthetic,
        "restack": ({k: restack[k] for k in ("planes", "plane_step", "tight", "margin_mm", "tight_share",
                                          "n_stacks", "n_slices")
                     if k in restack} if restack else None),
        "augmentation": ({k: seg[k] for k in AUGMENT_KEYS if k in seg} | {"rotations_flips": True})
        if seg.get("augment") else None,
    }


def never_seen(dist: dict[str, Any]) -> list[str]:
    """Plain sentences of what the model has never seen, from :func:`training_distribution`."""
    real, syn = dist["real"], dist.get("synthetic")
    subjects = ", ".join(real["subjects"]) or "none"
    out = [f"a real stack of any fetus but {subjects} ({real['n_stacks']} real training stacks"
           f"{', dataset ' + str(real['dataset']) if real.get('dataset') else ''}), so any other scanner, "
           "site, field strength or sequence in real data"]
    if real["thickness_mm"]:
        out.append("real slices thinner or thicker than " + ", ".join(f"{t:g}" for t in real["thickness_mm"]) + " mm")
    if syn:
        r = syn.get("ranges", {})
        ml = syn.get("brain_ml") or []
        out.append(f"brains outside {min(ml):.0f}-{max(ml):.0f} mL, the range of its {syn['n_volumes']} synthetic "
                   f"stacks" if ml else "brains outside the range of its synthetic stacks")
        if r:
            out.append(f"synthetic anatomy is the phantom's: slices {r['thickness_mm'][0]:g}-{r['thickness_mm'][1]:g} mm, "
                       f"fields of view {512 * r['fov_scale'][0]:.0f}-{512 * r['fov_scale'][1]:.0f} mm, gestational "
                       f"ages {r['gestational_age'][0]:g}-{r['gestational_age'][1]:g} weeks; real anatomy of other "
                       "ages, shapes or pathology only as far as the real stacks show it")
    else:
        out.append("any brain size, field of view, slice thickness or contrast other than those of the real "
                   "training stacks: no synthetic stacks were added")
    if dist.get("restack"):
        out.append("a stack acquired in another plane with its own field of view: the other planes it saw are "
                   "reslices of its axial training stacks, each only as tall as those stacks are thick")
    else:
        out.append("another acquisition plane or a field of view cropped to the head: no stacks were resliced "
                   "or cropped from the real ones")
    aug = dist.get("augmentation")
    if not aug:
        out.append("another in-plane orientation, zoom or contrast of its training stacks: augmentation was off")
    return out


SHIFT_COLUMNS = ("model", "half", "case", "brain_ml", "spacing_mm", "shape", "dsc")


def read_table(path: str | Path) -> pd.DataFrame:
    """A shift-benchmark ``.csv``, checked for :data:`SHIFT_COLUMNS`.

    Raises
    ------
    ScopeError
        Missing, unreadable, or without one of the columns.
    """
    if not Path(path).is_file():
        raise ScopeError(f"{path}: no such shift-benchmark table")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise ScopeError(f"{path}: cannot read it as CSV ({exc})") from exc
    missing = [c for c in SHIFT_COLUMNS if c not in table.columns]
    if missing:
        raise ScopeError(f"{path}: not a shift-benchmark table (no column {', '.join(missing)})")
    return table


def shift_cases(table: str | Path | pd.DataFrame, models: Sequence[str]) -> dict[str, Any]:
    """The shift-benchmark rows of one model: per case, and mean / min per half.

    Parameters
    ----------
    table : path or DataFrame
        The ``.csv`` of ``benchmarks/shift_benchmark.py`` or ``benchmarks/extractor_levers.py``
        (columns ``model``, ``half``, ``case``, ``brain_ml``, ``spacing_mm``, ``shape``, ``dsc``).
    models : sequence of str
        The names the model may have in the ``model`` column (e.g. ``segmenter/fs-s1``,
        ``fullysup``); the first that has rows is used.

    Raises
    ------
    ScopeError
        The file is missing or has no row of any of ``models``.
    """
    if not isinstance(table, pd.DataFrame):
        table = read_table(table)
    for name in models:
        rows = table[table["model"].astype(str) == name]
        if len(rows):
            break
    else:
        raise ScopeError(f"the shift-benchmark table has no rows of {' or '.join(models)} "
                         f"(it has: {', '.join(sorted(table['model'].astype(str).unique()))})")
    cases = [{"half": r.half, "case": r.case, "brain_ml": round(float(r.brain_ml), 1), "spacing_mm": str(r.spacing_mm),
              "shape": str(r.shape), "dsc": round(float(r.dsc), 2)} for r in rows.itertuples(index=False)]
    halves = {h: {"mean": round(float(g.dsc.mean()), 2), "min": round(float(g.dsc.min()), 2), "n": int(len(g))}
              for h, g in rows.groupby("half", sort=False)}
    return {"model": name, "cases": cases, "halves": halves}


def render_scope(card: dict[str, Any]) -> list[str]:
    """Markdown lines of the card's scope sections (none for a card shipped without them)."""
    lines: list[str] = []
    dist = card.get("training_distribution")
    if dist:
        real, syn, aug = dist["real"], dist.get("synthetic"), dist.get("augmentation")
        lines += ["## Training distribution", "",
                  f"- real: {real['n_stacks']} stacks of {', '.join(real['subjects'])}, slices "
                  + ", ".join(f"{t:g}" for t in real["thickness_mm"]) + " mm thick"]
        if syn:
            r = syn["ranges"]
            lines.append(f"- synthetic: {syn['n_volumes']} domain-randomised phantom stacks (seed {syn['seed']}, "
                         f"{syn['n_slices']} slices; brains {min(syn['brain_ml']):.0f}-{max(syn['brain_ml']):.0f} mL), "
                         + ", ".join(f"{k} {v}" for k, v in r.items()))
        else:
            lines.append("- synthetic: none")
        rst = dist.get("restack")
        if rst:
            what = [f"resliced into {', '.join(rst['planes'])} (one slab every {rst['plane_step']:g} thicknesses)"
                    if rst.get("planes") else "",
                    f"cropped tight (margin {rst['margin_mm'][0]:g}-{rst['margin_mm'][1]:g} mm"
                    + (f", {rst['tight_share']:.0%} of each copy's slices" if rst.get("tight_share", 1) != 1 else "")
                    + ")" if rst.get("tight") else ""]
            lines.append(f"- cut from the real stacks: {rst.get('n_stacks', '?')} stacks ({rst.get('n_slices', '?')} "
                         f"slices), " + " and ".join(w for w in what if w))
        else:
            lines.append("- cut from the real stacks: none")
        lines.append("- augmentation: " + (", ".join(f"{k} {v}" for k, v in aug.items()) if aug else "off"))
        lines += ["", "## Never seen", ""] + [f"- {s}" for s in card.get("never_seen", [])] + [""]
    shift = card.get("shift_benchmark")
    if shift:
        lines += ["## Shift benchmark (stacks made unlike the training data)", "",
                  f"`benchmarks/shift_benchmark.py`; model `{shift['model']}`; the validation half may have chosen "
                  "this model, the test half did not.", "",
                  "| half | case | brain (mL) | spacing (mm) | shape | 3D DSC (%) |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['half']} | {c['case']} | {c['brain_ml']:.0f} | {c['spacing_mm']} | {c['shape']} | "
                  f"{c['dsc']:.1f} |" for c in shift["cases"]]
        lines += [""] + [f"- {h}: mean {v['mean']:.1f}, min {v['min']:.1f} over {v['n']} cases"
                         for h, v in shift["halves"].items()] + [""]
    return lines
