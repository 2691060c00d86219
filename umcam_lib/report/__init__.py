"""Reporting: Tables 1-2 from the recorded scores (:mod:`.tables`), the findings drawn from them
(:mod:`.findings`), figures of recorded scores (:mod:`.figures`), companion comparisons
(:mod:`.compare`), the pipeline overview (:mod:`.overview`) and the method figure
(:mod:`.method_figure`).

The package front offers the table functions and the score store
(:mod:`umcam_lib.data.scores`) that notebooks use as ``report.*``; ``report.compare`` is the
module of companion comparisons (the paired test of two rows is :func:`.tables.compare`).
"""
from .tables import (COLUMNS, PAPER, METHOD_ORDER, seed_average, seed_spread, summarise,
                     write_table, to_markdown, table_markdown, show_table, to_latex, save_table, volume_scores, plot_volume_scores,
                     plot_seed_spread)
from ..data.scores import (TABLES, SECTIONS, SPLITS, NO_SEED, scores_dir, record_scores, load_scores)

__all__ = ["COLUMNS", "PAPER", "METHOD_ORDER", "seed_average", "seed_spread", "summarise",
           "write_table", "to_markdown", "table_markdown", "show_table", "to_latex", "save_table", "volume_scores", "plot_volume_scores",
           "plot_seed_spread", "TABLES", "SECTIONS", "SPLITS", "NO_SEED", "scores_dir", "record_scores",
           "load_scores"]
