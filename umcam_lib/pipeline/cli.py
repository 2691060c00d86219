"""The command line of the runner: ``python -m umcam_lib.pipeline`` (``umcam-study``).

See :mod:`umcam_lib.pipeline` for what a run does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..config.schema import ParameterError
from ..paths import NOTEBOOK_DIR
from .base import BaseRunError, start_from
from .run import NOTEBOOKS, Interrupted, PipelineError, publish_only, run_pipeline


def jobs_overrides(jobs: int) -> list[str]:
    """The ``--set`` options that ``--jobs N`` stands for.

    Examples
    --------
    >>> jobs_overrides(1), jobs_overrides(4)
    (['executor.kind=serial', 'executor.jobs=1'], ['executor.kind=processes', 'executor.jobs=4'])
    """
    return [f"executor.kind={'processes' if jobs > 1 else 'serial'}", f"executor.jobs={int(jobs)}"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.pipeline", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--profile", default=None, help="profile in params/ (tiny, quick, paper, real); default quick")
    src.add_argument("--params", default=None, help="any YAML parameter file")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter (dotted key), repeatable")
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--only", default=None, metavar="NN[,NN]", help="run only these notebooks")
    sel.add_argument("--from", dest="start", default=None, metavar="NN", help="run from this notebook on")
    ap.add_argument("--out", default=None, help="run folder (default runs/<profile>)")
    ap.add_argument("--base", default=None, metavar="RUN",
                    help="start the new run folder --out as a copy of the finished run RUN (its figures go to "
                         "--figures, default <out>/figures): only what the --set options change reruns")
    ap.add_argument("--figures", default=None, help="figure folder (default figures/<profile>)")
    ap.add_argument("--force", action="store_true",
                    help="recompute the selected notebooks from scratch (no reuse, no cache, no resumed training)")
    ap.add_argument("--verbose", action="store_true", help="stream cell output to the console")
    ap.add_argument("--dry-run", action="store_true",
                    help="print what would run, what would be reused, and why; run nothing")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write figures that git tracks even from a tree with uncommitted changes "
                         "(provenance records dirty: true)")
    ap.add_argument("--docs", default=None, metavar="DIR",
                    help="publish the executed notebooks and their index here (default docs/study/<profile> "
                         "when the figures go to figures/<profile>)")
    ap.add_argument("--publish-only", action="store_true",
                    help="rebuild the published executed notebooks from the run folder (--out) and exit")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    ap.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="run the independent trainings of notebooks 06-07 in N worker processes, each with "
                         "threads // N torch threads (the executor section: --set executor.kind=... for Dask)")
    args = ap.parse_args(argv)
    if args.jobs is not None:
        if args.jobs < 1:
            ap.error(f"--jobs must be at least 1, got {args.jobs}")
        args.overrides += jobs_overrides(args.jobs)
    if args.list:
        for number, nb in NOTEBOOKS.items():
            print(number, nb, "" if (NOTEBOOK_DIR / nb).is_file() else "(missing)")
        return 0
    if args.base is not None:
        if not args.out:
            ap.error("--base needs --out: the new run folder it starts")
        if args.dry_run or args.publish_only:
            ap.error("--base copies a run folder; it cannot be combined with --dry-run or --publish-only")
        args.figures = args.figures or str(Path(args.out) / "figures")
    try:
        if args.base is not None:
            copied = start_from(args.base, args.out, args.figures)
            print(f"started {args.out} from {args.base}: notebooks {', '.join(copied)} copied", flush=True)
        if args.publish_only:
            out = args.out or Path("runs") / (args.profile or "quick")
            readme = publish_only(out, args.docs)
            print(f"executed notebooks and their index in {readme.parent}")
            return 0
        run_pipeline(profile=args.profile or (None if args.params else "quick"), params_file=args.params,
                     overrides=args.overrides, only=args.only, start=args.start, out=args.out,
                     figures=args.figures, force=args.force, verbose=args.verbose, dry_run=args.dry_run,
                     allow_dirty=args.allow_dirty, docs=args.docs)
    except (ParameterError, PipelineError, BaseRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted before any notebook ran; rerun the same command", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
