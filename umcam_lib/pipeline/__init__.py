"""Run the study: execute the notebooks in order with papermill.

Usage::

    python -m umcam_lib.pipeline --profile quick
    python -m umcam_lib.pipeline --params my.yaml --set seed=7 --set data.n_volumes=12
    python -m umcam_lib.pipeline --profile quick --only 03,04      # later notebooks read earlier artifacts
    python -m umcam_lib.pipeline --profile quick --from 05 --out runs/try --figures /tmp/try
    python -m umcam_lib.pipeline --profile quick --dry-run         # what would run, and why
    python -m umcam_lib.pipeline --publish-only --out runs/quick   # docs/study/quick from a finished run

Every parameter is checked against the schema (``umcam_lib.config``) before anything runs.
Each notebook receives ``profile`` (the profile's name, or the path of ``--params``),
``overrides`` (the ``--set`` options as ``{"dotted.key": value}``), ``run_dir`` and
``figures_dir``, and builds its parameters from them with ``umcam_lib.config.notebook.load``,
as it does when opened by hand. Executed notebooks are written to ``<out>/notebooks/``.

Console. One line per notebook (a bar of cells done and the time; redrawn in place on a
terminal), then a summary naming the run log ``<out>/logs/run-<time>.log``, which receives
everything else: papermill's log, the kernel's messages, warnings and the notebooks' output.
On a failure the console names the notebook, the cell and the error's last lines. ``--verbose``
shows papermill's own progress bars and streams the notebooks' output to the console instead.

Reuse: stale means changed inputs of that notebook. A finished notebook leaves
``<out>/.done/NN.json`` with what its result was made from (:mod:`umcam_lib.pipeline.plan`): its code
cells (markdown and outputs do not count), the parameters it reads (``params["key"]``) and the
run and figure folders, the ``umcam_lib`` modules its code imports, transitively (read with
``ast``: a notebook's ``from umcam_lib...`` imports, then each module's imports, relative ones
and package ``__init__`` files included; each hashed by its source), the input files' contents
for NIfTI data (notebooks that read ``data``), and the run ids of the earlier notebooks'
results it read. It is reused only when all of these still hold: editing markdown, or a module
no notebook's imports reach, reruns nothing; editing ``umcam_lib/cam/fusion.py`` reruns the
notebooks that import it and the ones after them. ``--dry-run`` prints the plan (what runs,
what is reused, and why: ``parameters changed: seg.lr``, ``code of umcam_lib/cam/fusion.py
changed``, ``upstream 02 reruns``, ``no result yet``, ``--force``) and exits. ``--only`` /
``--from`` refuse to start when an earlier notebook's result is missing or stale, and print the
command that makes it. ``--force`` recomputes the selected notebooks from scratch: caches are
ignored and training starts again instead of resuming. Training resume follows the same rule
(:mod:`umcam_lib.train.common`): it keys on the training module's transitive imports only.

Provenance. Every notebook records the commit and whether tracked files differ from it
(``<out>/provenance/NN.json``; notebook 08 gathers them into ``<figures>/provenance.json``);
the folders the run writes into do not count as changes. Figures that git would track (the
committed ``figures/<profile>/``) are not written from a tree with uncommitted changes: the run
refuses before anything starts, unless ``--allow-dirty`` is given, in which case it says so
loudly and the provenance records ``dirty: true``. Figures written outside the checkout or
under an ignored folder (``--figures /tmp/fig``, ``runs/``) are not checked.

The executed study. A run that writes the repository's ``figures/<profile>/`` also copies the
executed notebooks to ``docs/study/<profile>/NN_name.ipynb`` (outputs and images kept, widget
state and heavy metadata dropped) with an index ``README.md`` (title, run time, commit and date
of each notebook; :mod:`umcam_lib.pipeline.publish`). ``--docs DIR`` publishes elsewhere (any run). To
rebuild it from an existing run folder without rerunning::

    python -m umcam_lib.pipeline --publish-only --out runs/quick

Modules: :mod:`.run` (plan and run), :mod:`.plan` (what is stale and why), :mod:`.execute`
(one notebook through papermill), :mod:`.console` (the progress lines and the reporter that draws
the runner's events), :mod:`.base` (``--base RUN``: a new run folder copied from a finished one), :mod:`.publish` (the
executed copies under ``docs/study``), :mod:`.cli` (the command line).
"""
from .run import (NOTEBOOKS, FORCE_ENV, DONORS_ENV, PipelineError, Interrupted, NotebookResult,
                  notebook_keys, code_cells, notebook_inputs, resolve_params, input_identity, rerun_command,
                  RunPlan, default_docs_dir, plan_run, run_pipeline, publish_run, publish_only,
                  run_companions)
from .cli import (main)

__all__ = ["NOTEBOOKS", "FORCE_ENV", "DONORS_ENV", "PipelineError", "Interrupted", "NotebookResult",
           "notebook_keys", "code_cells", "notebook_inputs", "resolve_params", "input_identity",
           "rerun_command", "RunPlan", "default_docs_dir", "plan_run", "run_pipeline", "publish_run",
           "publish_only", "run_companions", "main"]
