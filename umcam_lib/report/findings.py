"""What the study found: Tables 1 and 2 laid out as in the paper, and the sentences notebooks print.

The paper's claims are tested in :mod:`umcam_lib.report.verdicts`.

Used by notebook 08. Everything here is computed from the per-item scores that notebooks 03-07
recorded with :func:`umcam_lib.report.record_scores`.
"""
from __future__ import annotations

from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .tables import PAPER, seed_average, summarise
from ..data.scores import load_scores

ALPHA = 0.05


def _raw_scores(run_dir: str | Path) -> pd.DataFrame:
    """Scores of every table, one row per (section, split, method, id, seed)."""
    s = load_scores(run_dir)
    return s.drop_duplicates(subset=["section", "split", "method", "id", "seed"])


def _scores(run_dir: str | Path) -> pd.DataFrame:
    """Scores of every table averaged over seeds, one row per (section, split, method, id)."""
    s = seed_average(_raw_scores(run_dir).drop(columns=["table"]))
    return s.drop_duplicates(subset=["section", "split", "method", "id"])


def _compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, float, str]:
    """Means of DSC and a p-value: paired Wilcoxon on shared items, else Mann-Whitney U."""
    if a["section"].iloc[0] == b["section"].iloc[0]:
        xa, xb = a.set_index("id")["dsc"], b.set_index("id")["dsc"]
        common = xa.index.intersection(xb.index)
        va, vb = xa.loc[common].to_numpy(), xb.loc[common].to_numpy()
        d = va - vb
        p = float(stats.wilcoxon(va, vb).pvalue) if len(d) >= 2 and not np.allclose(d, 0) else float("nan")
        return float(va.mean()), float(vb.mean()), p, f"Wilcoxon signed-rank, {len(common)} pairs"
    va, vb = a["dsc"].to_numpy(), b["dsc"].to_numpy()
    p = float(stats.mannwhitneyu(va, vb).pvalue) if len(va) and len(vb) else float("nan")
    return float(va.mean()), float(vb.mean()), p, f"Mann-Whitney U ({len(va)} slices vs {len(vb)} volumes)"


def _pm(mean: float, std: float) -> str:
    return "" if np.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def paper_layout(run_dir: str | Path, table: str) -> pd.DataFrame:
    """A table in the paper's layout: ``mean ± std`` with ``*`` where the best row of a section
    and split beats the second best with p < 0.05, ours beside the paper's numbers."""
    df = summarise(run_dir, table)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for (section, split), grp in df.groupby(["section", "split"], sort=False):
        order = grp.sort_values("dsc_mean", ascending=False)
        star_best = len(order) > 1 and order["p_value"].iloc[1] < ALPHA
        best = order["method"].iloc[0]
        for r in grp.itertuples():
            key = (section, r.method)
            row = rows.setdefault(key, {"section": section, "method": r.method})
            star = "*" if (r.method == best and star_best) else ""
            row[f"{split} DSC (%)"] = _pm(r.dsc_mean, r.dsc_std) + star
            row[f"{split} HD95 (px)"] = _pm(r.hd95_mean, r.hd95_std)
            n_seeds = getattr(r, "n_seeds", 1)
            row[f"{split} seed SD (n)"] = (f"{r.dsc_seed_sd:.2f} ({int(n_seeds)})"
                                          if n_seeds and n_seeds > 1 and not np.isnan(r.dsc_seed_sd) else "")
            paper = PAPER.get((table, section, r.method, split))
            row[f"{split} paper DSC"] = _pm(paper[0], paper[1]) if paper else ""
            row[f"{split} paper HD95"] = _pm(paper[2], paper[3]) if paper else ""
    out = pd.DataFrame(list(rows.values()))
    return out.fillna("")


def describe_section(table: pd.DataFrame, section: str = "pseudo_mask", split: str = "val") -> str:
    """Markdown sentences read off one section and split of a table from :func:`summarise`:
    the rows from best to worst with their seed spread, and which gaps exceed it.

    Nothing here is typed in ahead of the results: notebooks print this under their tables so
    that their prose cannot contradict their numbers.
    """
    rows = table[(table["section"] == section) & (table["split"] == split)].sort_values("dsc_mean", ascending=False)
    if rows.empty:
        return f"- No {section} rows on {split}."
    def cell(r: Any) -> str:
        sd = r.dsc_seed_sd if "dsc_seed_sd" in rows and not pd.isna(r.dsc_seed_sd) else None
        return f"{r.method} {r.dsc_mean:.1f}" + (f" (seed SD {sd:.1f})" if sd is not None else "")
    lines = [f"- {split}, best to worst: " + "; ".join(cell(r) for r in rows.itertuples()) + "."]
    ranked = [r for r in rows.itertuples() if r.method != "All-foreground"]
    for a, b in zip(ranked, ranked[1:]):
        sds = [x for x in (getattr(a, "dsc_seed_sd", np.nan), getattr(b, "dsc_seed_sd", np.nan)) if not pd.isna(x)]
        gap = a.dsc_mean - b.dsc_mean
        if sds:
            spread = max(sds)
            word = "exceeds" if gap > 2 * spread else "does not exceed"
            lines.append(f"- {a.method} over {b.method}: {gap:.1f} points, which {word} twice the larger "
                         f"seed SD ({spread:.1f}).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- generated prose
# Each function below returns the sentence a notebook prints where its markdown would otherwise
# state a result: the words are chosen by comparing the numbers, so they cannot contradict them.
def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def describe_class_balance(labels: pd.DataFrame) -> str:
    """How often "always no brain" is right, per split, from the ``label_units`` table.

    Parameters
    ----------
    labels : DataFrame
        :func:`umcam_lib.train.classifier.label_table`: columns ``unit`` (``slice`` / ``crop``),
        ``split``, ``images``, ``positives``, ``positive_share`` (0-1).

    Returns
    -------
    str
        One sentence per label unit: the share of negative images over all splits and per split,
        which is the accuracy of a classifier that always answers "no brain" (its F1 is 0).
    """
    if labels.empty:
        raise ValueError("describe_class_balance: the label table is empty")
    out = []
    for unit, g in labels.groupby("unit", sort=False):
        neg = 1.0 - g["positives"].sum() / g["images"].sum()
        per = ", ".join(f"{r.split} {_pct(1 - r.positive_share)}" for r in g.itertuples())
        out.append(f"{unit} labels: {_pct(neg)} of the images show no brain ({per}), so a classifier that "
                   f"always answers \"no brain\" is right {_pct(neg)} of the time, with F1 0.")
    return "\n".join(out)


def describe_seed_spread(seed_table: pd.DataFrame, metric: str = "f1") -> str:
    """The spread over classifier seeds of one score, per split (``classification_seeds`` table).

    Parameters
    ----------
    seed_table : DataFrame
        Columns ``seed``, ``split`` and ``metric`` (0-1).
    """
    if seed_table.empty:
        raise ValueError("describe_seed_spread: the seed table is empty")
    n = seed_table["seed"].nunique()
    parts = []
    for split, g in seed_table.groupby("split", sort=False):
        v = g[metric].to_numpy(float)
        parts.append(f"{split} {metric} {v.min():.3f} to {v.max():.3f}"
                     + (f" (SD {np.std(v, ddof=1):.3f})" if len(v) > 1 else ""))
    return f"Over {n} seed{'s' if n != 1 else ''}: " + "; ".join(parts) + "."


def describe_spl_quality(quality: pd.DataFrame) -> str:
    """SPL > 0.5 against the thresholded UM-CAM as masks, per split (``spl_quality`` table).

    Parameters
    ----------
    quality : DataFrame
        :func:`umcam_lib.gse.spl_quality`: rows ``method`` in {UM-CAM, SPL, ...} per ``split`` with
        ``dsc_mean`` (%) and ``hd95_mean`` (px).
    """
    out = []
    for split, g in quality.groupby("split", sort=False):
        r = g.set_index("method")
        if not {"UM-CAM", "SPL"} <= set(r.index):
            continue
        s, u = r.loc["SPL"], r.loc["UM-CAM"]
        gap = s["dsc_mean"] - u["dsc_mean"]
        word = "above" if gap > 0 else "below" if gap < 0 else "equal to"
        out.append(f"{split}: SPL > 0.5 scores {s['dsc_mean']:.1f} % Dice, {abs(gap):.1f} points {word} the "
                   f"UM-CAM mask ({u['dsc_mean']:.1f} %); HD95 {s['hd95_mean']:.1f} vs {u['hd95_mean']:.1f} px.")
    return "\n".join(out) if out else "No SPL and UM-CAM rows to compare."


def describe_combination(run_dir: str | Path, split: str = "test", table: str = "table1") -> str:
    """Whether the UNet trained on UM-CAM+SPL (Eq. 8) beats those trained on each label alone.

    Compares the segmentation rows UM-CAM, SPL and UM-CAM+SPL of ``table`` on ``split`` (mean
    3D DSC over volumes, paired Wilcoxon over volumes; p is NaN with fewer than two volumes or
    identical scores).

    Returns
    -------
    str
        The three means, the two paired tests, and the verdict: the combination *complements*
        the single labels only when it is above both.
    """
    scores = _scores(run_dir)
    seg = scores[(scores["section"] == "segmentation") & (scores["split"] == split)]
    rows = {m: seg[seg["method"] == m] for m in ("UM-CAM", "SPL", "UM-CAM+SPL")}
    if any(r.empty for r in rows.values()):
        missing = [m for m, r in rows.items() if r.empty]
        return f"{split}: no segmentation rows for {', '.join(missing)} yet."
    both = rows["UM-CAM+SPL"]
    parts, above, significant = [], 0, 0
    for single in ("UM-CAM", "SPL"):
        ms, mb, p, _ = _compare(rows[single], both)
        above += mb > ms
        significant += bool(not np.isnan(p) and p < ALPHA)
        ptxt = "p n/a" if np.isnan(p) else f"p = {p:.3g}"
        parts.append(f"{single} {ms:.1f} ({'+' if mb >= ms else '-'}{abs(mb - ms):.1f} for the combination, {ptxt})")
    mean_both = float(both["dsc"].mean())
    verdict = {2: "above both single labels: here the two labels complement each other"
                  + ("" if significant == 2 else " (in the means; not significant against both)"),
               1: "between the two single labels: here it does not beat the better label alone",
               0: "below both single labels: here combining them costs Dice"}[int(above)]
    n = both["id"].nunique()
    return (f"{split}, mean 3D DSC over {n} volume{'s' if n != 1 else ''}: UM-CAM+SPL {mean_both:.1f} against "
            + "; ".join(parts) + f". The combination is {verdict}.")


def describe_tta(tta: pd.DataFrame) -> str:
    """How many UNets test-time augmentation helps, per split (``segmentation_tta`` table).

    Parameters
    ----------
    tta : DataFrame
        :func:`umcam_lib.train.segmentation.tta_comparison`: ``method`` and ``<split>_gain``
        (DSC points, TTA minus plain) for ``val`` and ``test``.
    """
    parts = []
    for split in ("val", "test"):
        col = f"{split}_gain"
        if col not in tta:
            continue
        g = tta[col].to_numpy(float)
        parts.append(f"{split}: TTA raises {int((g > 0).sum())} of {len(g)} UNets "
                     f"(gain {g.min():+.1f} to {g.max():+.1f} points, mean {g.mean():+.1f})")
    return "; ".join(parts) + "." if parts else "No TTA comparison."


def describe_oracle(oracle: pd.DataFrame) -> str:
    """How much the evaluation protocol moves the numbers, against how much the methods differ.

    Parameters
    ----------
    oracle : DataFrame
        :func:`umcam_lib.train.segmentation.oracle_comparison`: ``method``, ``dsc_all`` (every
        slice predicted) and ``dsc_oracle`` (only slices with brain), in %.
    """
    shift = (oracle["dsc_oracle"] - oracle["dsc_all"]).to_numpy(float)
    spread = float(oracle["dsc_all"].max() - oracle["dsc_all"].min())
    word = "more than" if shift.mean() > spread else "less than"
    return (f"Scoring only the slices whose truth is non-empty (the authors' protocol) moves the mean DSC by "
            f"{shift.min():+.1f} to {shift.max():+.1f} points across the {len(shift)} UNets (mean {shift.mean():+.1f}), "
            f"{word} the {spread:.1f} points between the best and the worst UNet under the full protocol.")


def describe_pseudo_masks(table: pd.DataFrame, split: str = "val", reference: str = "Grad-CAM",
                          others: tuple[str, ...] = ("DRS", "AMR")) -> str:
    """Pseudo-mask Dice of the baselines against plain Grad-CAM (``baseline_pseudo_masks`` table).

    Parameters
    ----------
    table : DataFrame
        :func:`umcam_lib.cam.pseudo_mask.summary_table`: ``method`` and ``<split>_dsc`` (%).
    reference : str
        The row the others are compared with.
    others : tuple of str
        Method-name prefixes to compare (``DRS`` matches ``DRS (suppressed)``, ...).

    Returns
    -------
    str
        The rows from best to worst, then for each baseline whether it is above or below the
        reference: the spread the suppression / modulation was meant to bring.
    """
    col = f"{split}_dsc"
    rows = table.sort_values(col, ascending=False)
    ref = rows[rows["method"] == reference]
    lines = [f"{split} pseudo-mask Dice, best to worst: "
             + "; ".join(f"{r.method} {getattr(r, col):.1f}" for r in rows.itertuples()) + "."]
    if ref.empty:
        return lines[0]
    ref_dsc = float(ref[col].iloc[0])
    for r in rows.itertuples():
        if any(str(r.method).startswith(o) for o in others):
            gap = getattr(r, col) - ref_dsc
            where = (f"{abs(gap):.1f} points {'above' if gap > 0 else 'below'}" if abs(gap) >= 0.05
                     else "equal to")
            lines.append(f"{r.method} is {where} plain {reference} ({ref_dsc:.1f}).")
    return " ".join(lines)
