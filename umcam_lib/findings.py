"""What the study found: Tables 1 and 2 laid out as in the paper, and the paper's orderings tested.

Used by notebook 08. Everything here is computed from the per-item scores that notebooks 03-07
recorded with :func:`umcam_lib.report.record_scores`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .report import PAPER, SPLITS, load_scores, seed_average, summarise

ALPHA = 0.05

#: The paper's claims, each a chain of methods expected to increase in DSC, with where they live.
#: ``~`` links mean "about equal" (no significant difference expected).
ORDERINGS: list[tuple[str, str, list[str]]] = [
    ("pseudo masks", "pseudo_mask", ["Grad-CAM", "<", "Average-CAM", "<", "UM-CAM"]),
    ("segmentation", "segmentation", ["Grad-CAM", "<", "UM-CAM", "<", "SPL", "<", "UM-CAM+SPL", "<", "FullySup"]),
    ("state of the art", "mixed", ["Grad-CAM++", "~", "Score-CAM", "~", "Ablation-CAM", "<", "AMR", "<", "DRS", "<", "UM-CAM+SPL"]),
]


@dataclass
class Link:
    claim: str
    split: str
    left: str
    relation: str
    right: str
    left_dsc: float
    right_dsc: float
    p_value: float
    test: str
    verdict: str
    n_seeds: int = 1
    seeds_agreeing: int = 0
    gap_seed_sd: float = float("nan")


def _raw_scores(run_dir: str | Path) -> pd.DataFrame:
    """Scores of every table, one row per (section, split, method, id, seed)."""
    s = load_scores(run_dir)
    return s.drop_duplicates(subset=["section", "split", "method", "id", "seed"])


def _scores(run_dir: str | Path) -> pd.DataFrame:
    """Scores of every table averaged over seeds, one row per (section, split, method, id)."""
    s = seed_average(_raw_scores(run_dir).drop(columns=["table"]))
    return s.drop_duplicates(subset=["section", "split", "method", "id"])


def _per_seed_gaps(raw: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Mean DSC of ``b`` minus ``a`` for every seed both were recorded with (same section)."""
    if a.empty or b.empty or a["section"].iloc[0] != b["section"].iloc[0]:
        return np.array([])
    sec, split = a["section"].iloc[0], a["split"].iloc[0]
    sub = raw[(raw["section"] == sec) & (raw["split"] == split)]
    ma = sub[sub["method"] == a["method"].iloc[0]].groupby("seed")["dsc"].mean()
    mb = sub[sub["method"] == b["method"].iloc[0]].groupby("seed")["dsc"].mean()
    common = ma.index.intersection(mb.index)
    common = [c for c in common if c >= 0]
    return (mb.loc[common] - ma.loc[common]).to_numpy(dtype=float)


def _section_of(scores: pd.DataFrame, method: str, split: str, prefer: str) -> pd.DataFrame:
    m = scores[(scores["method"] == method) & (scores["split"] == split)]
    if prefer != "mixed":
        m = m[m["section"] == prefer]
    elif (m["section"] == "segmentation").any():
        m = m[m["section"] == "segmentation"]
    return m


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


def _verdict(relation: str, lo: float, hi: float, p: float) -> str:
    if np.isnan(lo) or np.isnan(hi):
        return "not measured"
    significant = not np.isnan(p) and p < ALPHA
    if relation == "~":
        return "holds (no significant difference)" if not significant else "does not hold (significant difference)"
    if hi > lo:
        return "holds" if significant else "holds in the means, not significant"
    return "does not hold (reversed, significant)" if significant else "does not hold (reversed, not significant)"


def check_orderings(run_dir: str | Path, splits: tuple[str, ...] = SPLITS) -> pd.DataFrame:
    """Every link of every ordering in :data:`ORDERINGS`, with means, p-value and a verdict.

    Each ``A < B`` link holds when B's mean DSC is higher and a two-sided test gives p < 0.05
    (paired Wilcoxon over shared slices or volumes; Mann-Whitney U between a pseudo-mask row
    and a segmentation row, whose items differ). ``A ~ B`` holds when p >= 0.05.

    With several seeds (pseudo-mask rows of the ``seeds`` parameter), item scores are averaged
    over seeds before the test, ``n_seeds`` / ``seeds_agreeing`` count the seeds and those whose
    own gap has the expected sign (``<``: B above A), and ``gap_seed_sd`` is the SD of the
    per-seed gap. A ``<`` link that holds but not in every seed is reported as
    "holds in the mean, not in every seed": a rerun may reverse it.
    """
    raw = _raw_scores(run_dir)
    scores = _scores(run_dir)
    links: list[Link] = []
    for claim, section, chain in ORDERINGS:
        for split in splits:
            for i in range(0, len(chain) - 2, 2):
                left, rel, right = chain[i], chain[i + 1], chain[i + 2]
                a = _section_of(scores, left, split, section)
                b = _section_of(scores, right, split, section)
                if a.empty or b.empty:
                    links.append(Link(claim, split, left, rel, right, np.nan, np.nan, np.nan, "", "not measured"))
                    continue
                ma, mb, p, test = _compare(a, b)
                verdict = _verdict(rel, ma, mb, p)
                gaps = _per_seed_gaps(raw, a, b)
                agree = int((gaps > 0).sum()) if rel == "<" else int(len(gaps))
                if len(gaps) > 1 and rel == "<" and verdict.startswith("holds") and agree < len(gaps):
                    verdict = "holds in the mean, not in every seed"
                links.append(Link(claim, split, left, rel, right, ma, mb, p, test, verdict,
                                  n_seeds=max(1, len(gaps)), seeds_agreeing=agree,
                                  gap_seed_sd=float(np.std(gaps, ddof=1)) if len(gaps) > 1 else float("nan")))
    return pd.DataFrame([link.__dict__ for link in links])


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
