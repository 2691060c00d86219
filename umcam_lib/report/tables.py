"""Tables of the study: per-item scores, Tables 1 and 2, and CSV / Markdown / LaTeX output.

Notebooks record per-item scores (one file per method, section and split) with
:func:`umcam_lib.data.scores.record_scores`; :func:`write_table` rebuilds a table from every score recorded so far, so
Tables 1 and 2 grow as notebooks 03-07 run and notebook 08 only assembles them.

Table schema (STUDY section 4)::

    section, method, split, n, dsc_mean, dsc_std, hd95_mean, hd95_std, p_value,
    paper_dsc_mean, paper_hd95_mean[, hd95_mm_mean, hd95_mm_std]

``p_value`` is a paired two-sided Wilcoxon signed-rank test of each row's DSC against the row
with the best mean DSC of the same section and split (over the items both share); it is empty
for that best row.

Seeds. Rows whose scores were recorded for several seeds of the classifier-and-CAM stage
(``record_scores(..., seed=s)``, notebooks 03-04 with the ``seeds`` parameter) are averaged
over seeds: ``dsc_mean`` is the mean over seeds and items, ``dsc_std`` the mean over seeds of
the per-seed item SD (the spread between slices, comparable with the paper's), ``n_seeds`` the
number of seeds and ``dsc_seed_sd`` / ``dsc_seed_range`` the SD and max - min of the per-seed
mean DSC: the spread a rerun with another seed, or on another machine, should stay within.
Paired tests use each item's DSC averaged over seeds.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.scores import NO_SEED, SECTIONS, SPLITS, TABLES, load_scores, scores_dir
from ..io import atomic_path, write_text
from ..metrics import paired_test
from ..paths import resolve

COLUMNS = ["section", "method", "split", "n", "dsc_mean", "dsc_std", "hd95_mean", "hd95_std",
           "p_value", "paper_dsc_mean", "paper_hd95_mean", "n_seeds", "dsc_seed_sd", "dsc_seed_range"]


#: The paper's numbers: (table, section, method, split) -> (dsc mean, dsc std, hd95 mean, hd95 std).
#: Table 1 reports one split; its UM-CAM+SPL row equals Table 2's validation row, so Table 1 is
#: read as validation.
PAPER: dict[tuple[str, str, str, str], tuple[float, float, float, float]] = {
    ("table1", "pseudo_mask", "Grad-CAM", "val"): (74.48, 13.26, 39.88, 14.66),
    ("table1", "pseudo_mask", "Average-CAM", "val"): (77.40, 13.28, 38.70, 19.75),
    ("table1", "pseudo_mask", "UM-CAM", "val"): (79.00, 12.83, 35.33, 16.98),
    ("table1", "segmentation", "Grad-CAM", "val"): (78.69, 10.02, 22.17, 16.60),
    ("table1", "segmentation", "UM-CAM", "val"): (85.22, 6.62, 5.26, 4.23),
    ("table1", "segmentation", "SPL", "val"): (89.05, 4.30, 3.84, 4.07),
    ("table1", "segmentation", "UM-CAM+SPL", "val"): (89.76, 5.09, 3.10, 2.61),
    ("table2", "pseudo_mask", "Grad-CAM++", "val"): (74.52, 13.29, 39.87, 14.69),
    ("table2", "pseudo_mask", "Grad-CAM++", "test"): (76.60, 10.58, 37.49, 11.72),
    ("table2", "pseudo_mask", "Score-CAM", "val"): (74.49, 13.35, 39.88, 14.83),
    ("table2", "pseudo_mask", "Score-CAM", "test"): (76.58, 10.60, 37.54, 11.73),
    ("table2", "pseudo_mask", "Ablation-CAM", "val"): (74.56, 13.29, 39.76, 14.64),
    ("table2", "pseudo_mask", "Ablation-CAM", "test"): (76.55, 10.61, 37.57, 11.82),
    ("table2", "segmentation", "AMR", "val"): (78.77, 8.83, 11.53, 9.82),
    ("table2", "segmentation", "AMR", "test"): (79.79, 6.86, 11.35, 8.02),
    ("table2", "segmentation", "DRS", "val"): (84.98, 5.62, 7.17, 8.01),
    ("table2", "segmentation", "DRS", "test"): (83.79, 7.81, 7.06, 5.13),
    ("table2", "segmentation", "UM-CAM+SPL", "val"): (89.76, 5.09, 3.10, 2.61),
    ("table2", "segmentation", "UM-CAM+SPL", "test"): (90.22, 3.75, 4.04, 4.26),
    ("table2", "segmentation", "FullySup", "val"): (95.98, 3.17, 1.22, 0.65),
    ("table2", "segmentation", "FullySup", "test"): (96.51, 2.67, 1.10, 0.40),
}


#: Display order of methods (others follow alphabetically).
METHOD_ORDER = ["All-foreground", "Grad-CAM", "Grad-CAM++", "Score-CAM", "Ablation-CAM", "Average-CAM", "UM-CAM",
                "UM-CAM (paper's Eq. 3-4 reading)",
                "SPL", "AMR", "DRS", "UM-CAM+SPL", "UM-CAM+SPL (paper's Eq. 8)", "FullySup"]


def seed_average(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with each (table, section, split, method, id) averaged over its seeds.

    Returns one row per item; numeric score columns are means over seeds and ``n_seeds`` counts
    them. Frames without a ``seed`` column pass through with ``n_seeds`` = 1.
    """
    keys = [k for k in ("table", "section", "split", "method", "id") if k in scores.columns]
    if "seed" not in scores.columns or scores.empty:
        return scores.assign(n_seeds=1)
    values = [c for c in ("dsc", "hd95", "hd95_mm") if c in scores.columns]
    out = scores.groupby(keys, sort=False)[values].mean().reset_index()
    out["n_seeds"] = scores.groupby(keys, sort=False)["seed"].nunique().to_numpy()
    return out


def seed_spread(scores: pd.DataFrame, metric: str = "dsc") -> pd.DataFrame:
    """Per-seed mean of ``metric`` for every (section, split, method): one row per seed.

    Returns
    -------
    DataFrame
        Columns ``section, split, method, seed, mean, std, n``.
    """
    if scores.empty:
        return pd.DataFrame(columns=["section", "split", "method", "seed", "mean", "std", "n"])
    g = scores.groupby(["section", "split", "method", "seed"], sort=False)[metric]
    return g.agg(mean="mean", std=lambda x: x.std(ddof=1) if len(x) > 1 else 0.0, n="size").reset_index()


def compare(scores: pd.DataFrame, a: str, b: str, metric: str = "dsc") -> tuple[float, float, float, int]:
    """Paired comparison of methods ``a`` and ``b`` within a frame of one section and split.

    Returns
    -------
    mean_a, mean_b, p_value, n_pairs
        Means over the items both methods scored, and the Wilcoxon p-value.
    """
    xa = scores[scores["method"] == a].set_index("id")[metric]
    xb = scores[scores["method"] == b].set_index("id")[metric]
    common = xa.index.intersection(xb.index)
    if len(common) == 0:
        return float("nan"), float("nan"), float("nan"), 0
    va, vb = xa.loc[common].to_numpy(), xb.loc[common].to_numpy()
    return float(va.mean()), float(vb.mean()), paired_test(va, vb), int(len(common))


def _method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _pixel_spacing(run_dir: str | Path) -> float | None:
    p = resolve(run_dir) / "data" / "slices.npz"
    if not p.is_file():
        return None
    with np.load(p) as z:
        return float(z["spacing_mm"]) if "spacing_mm" in z.files else None


def summarise(run_dir: str | Path, table: str) -> pd.DataFrame:
    """Build one table (STUDY section 4 schema) from the recorded scores."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    raw = load_scores(run_dir, table)
    spacing = _pixel_spacing(run_dir)
    rows = []
    for (section, split), by_seed in raw.groupby(["section", "split"], sort=False):
        if "hd95_mm" not in by_seed or by_seed["hd95_mm"].isna().any():
            if section == "pseudo_mask" and spacing is not None:
                by_seed = by_seed.assign(hd95_mm=by_seed["hd95"] * spacing)
        grp = seed_average(by_seed)
        means = grp.groupby("method")["dsc"].mean()
        best = means.idxmax()
        for method, m in grp.groupby("method"):
            per_seed = {k: seed_spread(by_seed[by_seed["method"] == method], k) for k in ("dsc", "hd95")}
            paper = PAPER.get((table, section, method, split))
            seed_means = per_seed["dsc"]["mean"]
            row = {
                "section": section, "method": method, "split": split, "n": len(m),
                "dsc_mean": m["dsc"].mean(), "dsc_std": per_seed["dsc"]["std"].mean(),
                "hd95_mean": m["hd95"].mean(), "hd95_std": per_seed["hd95"]["std"].mean(),
                "p_value": np.nan if method == best else compare(grp, method, best)[2],
                "paper_dsc_mean": paper[0] if paper else np.nan,
                "paper_hd95_mean": paper[2] if paper else np.nan,
                "n_seeds": len(seed_means),
                "dsc_seed_sd": seed_means.std(ddof=1) if len(seed_means) > 1 else np.nan,
                "dsc_seed_range": seed_means.max() - seed_means.min() if len(seed_means) > 1 else np.nan,
            }
            if "hd95_mm" in m and m["hd95_mm"].notna().all():
                mm = seed_spread(by_seed[by_seed["method"] == method], "hd95_mm")
                row["hd95_mm_mean"] = m["hd95_mm"].mean()
                row["hd95_mm_std"] = mm["std"].mean()
            rows.append(row)
    df = pd.DataFrame(rows)
    cols = list(COLUMNS)
    if spacing is not None and abs(spacing - 1.0) > 1e-6:
        cols += ["hd95_mm_mean", "hd95_mm_std"]
    for c in cols:
        if c not in df:
            df[c] = np.nan
    if df.empty:
        return df[cols]
    df["_s"] = df["section"].map(SECTIONS.index)
    df["_m"] = df["method"].map(_method_rank)
    df["_p"] = df["split"].map(SPLITS.index)
    df = df.sort_values(["_s", "_m", "_p"]).reset_index(drop=True)
    return df[cols]


def write_table(run_dir: str | Path, figures_dir: str | Path, table: str) -> pd.DataFrame:
    """Rebuild ``figures_dir/<table>.{csv,md,tex}`` from every recorded score; return it."""
    df = summarise(run_dir, table)
    save_table(df, figures_dir, table, caption=_caption(table))
    return df


def _caption(table: str) -> str:
    return {
        "table1": "Table 1: pseudo masks (2D, positive slices) and segmentation (3D, volumes). DSC in %, HD95 in pixels.",
        "table2": "Table 2: CAM variants (pseudo masks) and weakly supervised methods (segmentation). DSC in %, HD95 in pixels.",
    }.get(table, "")


def _fmt(v: object) -> str:
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        if 0 < abs(v) < 1e-3:
            return f"{v:.1e}"
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``df`` (numbers rounded for reading)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


#: Tables longer than this many rows are shown folded (a ``<details>`` block) by :func:`show_table`.
FOLD_ROWS = 15


def table_markdown(df: pd.DataFrame, fold: int = FOLD_ROWS, index: bool | None = None) -> str:
    """``df`` as a rounded Markdown table for a notebook, folded in ``<details>`` when long.

    Parameters
    ----------
    df : DataFrame
        Any table; a MultiIndex on the columns is joined with spaces.
    fold : int
        Tables with more rows than this are folded behind a summary line.
    index : bool, optional
        Show the index as the first column(s). Default: when it carries labels (a named index,
        e.g. after a ``groupby``, a MultiIndex, or text), not for a plain row number.

    Examples
    --------
    >>> print(table_markdown(pd.DataFrame({"method": ["a"], "dsc": [81.2345]})))
    | method | dsc |
    |---|---|
    | a | 81.23 |
    <BLANKLINE>
    >>> table_markdown(pd.DataFrame({"x": range(20)}), fold=5).startswith("<details>")
    True
    """
    if index is None:
        index = df.index.name is not None or isinstance(df.index, pd.MultiIndex) or df.index.dtype == object
    d = df.reset_index() if index else df
    if isinstance(d.columns, pd.MultiIndex):
        d = d.copy()
        d.columns = [" ".join(str(p) for p in col if str(p)) for col in d.columns]
    text = to_markdown(d)
    if len(d) > fold:
        text = f"<details><summary>{len(d)} rows (click to unfold)</summary>\n\n{text}\n</details>\n"
    return text


def show_table(df: pd.DataFrame, fold: int = FOLD_ROWS, index: bool | None = None) -> None:
    """Display ``df`` in a notebook as :func:`table_markdown` (rounded, folded when long)."""
    from IPython.display import Markdown, display

    display(Markdown(table_markdown(df, fold=fold, index=index)))


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def to_latex(df: pd.DataFrame, caption: str = "") -> str:
    """A LaTeX ``tabular`` (booktabs) of ``df``."""
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + _tex_escape(caption) + "}")
    lines.append(r"\begin{tabular}{" + "l" * len(df.columns) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(_tex_escape(str(c)) for c in df.columns) + r" \\")
    lines.append(r"\midrule")
    for row in df.itertuples(index=False):
        lines.append(" & ".join(_tex_escape(_fmt(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, figures_dir: str | Path, name: str, caption: str = "") -> None:
    """Write ``df`` as ``<name>.csv``, ``<name>.md`` and ``<name>.tex`` under ``figures_dir``."""
    out = resolve(figures_dir)
    with atomic_path(out / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    md = (f"{caption}\n\n" if caption else "") + to_markdown(df)
    write_text(out / f"{name}.md", md)
    write_text(out / f"{name}.tex", to_latex(df, caption))


# ----------------------------------------------------------------------------- distributions (seaborn)
def volume_scores(run_dir: str | Path, section: str = "segmentation", metric: str = "dsc") -> pd.DataFrame:
    """Per-item ``metric`` of every method of ``section`` (seed-averaged; one row per method, split, id).

    A method recorded in both tables (UM-CAM+SPL) appears once. Columns ``method, split, id, <metric>``,
    methods in :data:`METHOD_ORDER`.
    """
    s = load_scores(run_dir)
    s = s[s["section"] == section]
    if s.empty:
        raise ValueError(f"{scores_dir(run_dir)}: no {section!r} scores recorded")
    s = seed_average(s.drop(columns=["table"]).drop_duplicates(["section", "split", "method", "id", "seed"]))
    s = s.drop_duplicates(["split", "method", "id"])
    order = sorted(s["method"].unique(), key=_method_rank)
    s["method"] = pd.Categorical(s["method"], categories=order, ordered=True)
    return s.sort_values(["method", "split", "id"])[["method", "split", "id", metric]].reset_index(drop=True)


def plot_volume_scores(run_dir: str | Path, section: str = "segmentation", metric: str = "dsc",
                       splits: Sequence[str] = SPLITS) -> "object":
    """Box plot with every item as a point: the per-volume (or per-slice) score of each method.

    Parameters
    ----------
    run_dir : path
        Run folder with recorded scores (:func:`record_scores`).
    section : {"segmentation", "pseudo_mask"}
        ``segmentation``: one point per volume (3D DSC, %); ``pseudo_mask``: one per slice.
    metric : str
        ``dsc`` (%) or ``hd95`` (px).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per split; the methods in display order, the mean marked by a white diamond.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = volume_scores(run_dir, section, metric)
    splits = [sp for sp in splits if (data["split"] == sp).any()]
    n_methods = data["method"].nunique()
    fig, axes = plt.subplots(1, len(splits), figsize=(max(4.5, 0.7 * n_methods + 1.5) * len(splits), 3.8),
                             squeeze=False, sharey=True)
    unit = "volume" if section == "segmentation" else "slice"
    for ax, split in zip(axes[0], splits):
        d = data[data["split"] == split]
        order = [m for m in d["method"].cat.categories if (d["method"] == m).any()]
        with warnings.catch_warnings():  # seaborn 0.13.2 passes matplotlib 3.11's deprecated ``vert``
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*vert: bool was deprecated.*")
            sns.boxplot(data=d, x="method", y=metric, order=order, ax=ax, color="0.9", fliersize=0, width=0.6,
                        showmeans=True, meanprops=dict(marker="D", markerfacecolor="white", markeredgecolor="black",
                                                       markersize=5))
        sns.stripplot(data=d, x="method", y=metric, order=order, ax=ax, hue="method", hue_order=order,
                      palette="tab10", size=4, jitter=0.15, legend=False)
        n = d.groupby("method", observed=True)["id"].nunique()
        n_items = int(n.max())
        ax.set_title(f"{split}: one point per {unit} ({n_items} {unit}{'s' if n_items != 1 else ''})", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel(("3D DSC (%)" if section == "segmentation" else "DSC (%)") if metric == "dsc" else metric)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for lbl in ax.get_xticklabels():
            lbl.set_horizontalalignment("right")
        if metric == "dsc":
            ax.set_ylim(-2, 102)
    fig.suptitle(f"{'UNet' if section == 'segmentation' else 'pseudo-mask'} {metric.upper()} of every method "
                 f"(box: quartiles; diamond: mean)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_seed_spread(run_dir: str | Path, classification: pd.DataFrame | None = None,
                     section: str = "pseudo_mask", metric: str = "dsc") -> "object":
    """Per-seed means: how far a rerun with another classifier seed moves each row.

    Parameters
    ----------
    run_dir : path
        Run folder; rows recorded per seed (``...__s<seed>.csv``) are shown, one point per seed.
    classification : DataFrame, optional
        ``classification_seeds`` of notebook 02 (``seed, split, f1``): a second panel with each
        seed's slice-classification F1.

    Returns
    -------
    matplotlib.figure.Figure
        Left: mean ``metric`` per seed for every method of ``section`` recorded with seeds, by
        split; right (when given): classification F1 per seed.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    s = load_scores(run_dir)
    s = s[(s["section"] == section) & (s["seed"] != NO_SEED)].drop(columns=["table"])
    s = s.drop_duplicates(["section", "split", "method", "id", "seed"])
    spread = seed_spread(s, metric)
    if spread.empty:
        raise ValueError(f"{scores_dir(run_dir)}: no {section!r} scores recorded per seed")
    order = sorted(spread["method"].unique(), key=_method_rank)
    panels = 2 if classification is not None and not classification.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(0.75 * len(order) + 2.5 + 3.2 * (panels - 1), 3.8), squeeze=False,
                             gridspec_kw=dict(width_ratios=[max(2, len(order) / 2)] + [1] * (panels - 1)))
    ax = axes[0, 0]
    sns.stripplot(data=spread, x="method", y="mean", hue="split", order=order, hue_order=list(SPLITS),
                  dodge=True, jitter=0.08, size=6, ax=ax, palette="Set1")
    sns.pointplot(data=spread, x="method", y="mean", hue="split", order=order, hue_order=list(SPLITS),
                  dodge=0.4, linestyle="none", errorbar="sd", markers="_", markersize=14, ax=ax,
                  palette="Set1", legend=False)
    n_seeds = int(spread["seed"].nunique())
    ax.set_title(f"{section.replace('_', ' ')} rows: mean {metric.upper()} of each of {n_seeds} seeds "
                 "(bar: mean +- SD over seeds)", fontsize=9)
    ax.set_xlabel("")
    ax.set_ylabel(f"mean {metric.upper()} (%)" if metric == "dsc" else f"mean {metric}")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for lbl in ax.get_xticklabels():
        lbl.set_horizontalalignment("right")
    ax.legend(title="split", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if panels == 2:
        ax2 = axes[0, 1]
        sns.stripplot(data=classification, x="split", y="f1", hue="split", order=list(SPLITS),
                      hue_order=list(SPLITS), palette="Set1", size=6, jitter=0.08, ax=ax2, legend=False)
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_title("classifier F1 per seed (notebook 02)", fontsize=9)
        ax2.set_xlabel("")
        ax2.set_ylabel("slice classification F1")
    fig.tight_layout()
    return fig
