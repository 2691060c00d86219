"""The pipeline's plan: which notebooks run, which are reused, and why (a pure function).

A notebook's result is reused only when every input it was made from still holds. Its inputs
(:class:`Inputs`, recorded in ``<run>/.done/NN.json`` when it finishes) are:

- ``code``: the hash of its code cells (markdown and outputs do not count);
- ``params``: the values of the parameters it reads, by dotted key (``seg.lr``), and the run
  and figure folders;
- ``modules``: the ``umcam_lib`` modules its code imports, transitively, each with the hash of
  its source (``umcam_lib/cam/fusion.py``);
- ``inputs``: the identity of the input files (NIfTI data), for the notebooks that read ``data``;
- and the results of every earlier notebook: the run id of each that it read, which must be
  the one on disk now (a rerun upstream notebook gives a new run id).

:func:`make_plan` compares the inputs of this run with the recorded ones and says, per notebook,
``run`` / ``reuse`` (selected) or ``keep`` / ``missing`` (an earlier notebook that is not
selected, whose result a selected one reads), with the reasons in words. It reads no file and
starts nothing; :func:`umcam_lib.pipeline.run_pipeline` calls it, and ``--dry-run`` prints it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

from ..hashing import value_hash

#: The actions of a plan entry.
RUN, REUSE, KEEP, MISSING = "run", "reuse", "keep", "missing"

#: How many changed keys or modules a reason names before it says "and N more".
NAMED = 4


@dataclass(frozen=True)
class Inputs:
    """What one notebook's result depends on, apart from the earlier notebooks' results.

    Attributes
    ----------
    code : str
        Hash of the notebook's code cells.
    params : mapping of str -> Any
        Flattened parameter values it reads (``{"seg.lr": 0.01, "run_dir": "..."}``).
    modules : mapping of str -> str
        ``{"umcam_lib/cam/fusion.py": source hash}`` of every library module it imports,
        transitively.
    inputs : str or None
        Hash of the input files' identity (``None``: the notebook reads no input files).
    """

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)
    modules: Mapping[str, str] = field(default_factory=dict)
    inputs: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record stored in the ``.done`` marker (``components``)."""
        return {"code": self.code, "params": dict(self.params), "modules": dict(self.modules), "inputs": self.inputs}

    def digest(self) -> str:
        """One hash of all of it (the marker's ``fingerprint``)."""
        return value_hash(self.as_dict())


@dataclass(frozen=True)
class PlanEntry:
    """One notebook in the plan.

    Attributes
    ----------
    number, name : str
        ``"03"``, ``"03_cam_variants.ipynb"``.
    action : str
        ``run`` or ``reuse`` (selected notebooks); ``keep`` (an earlier, unselected notebook whose
        result is read as it is) or ``missing`` (an earlier, unselected notebook whose result is
        absent or stale: the selected ones cannot run).
    reasons : tuple of str
        Why it runs or is missing (``"parameters changed: seg.lr"``, ``"code of
        umcam_lib/cam/fusion.py changed"``, ``"upstream 02 reruns"``, ``"no result yet"``,
        ``"--force"``); empty for ``reuse`` and ``keep``.
    """

    number: str
    name: str
    action: str
    reasons: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        """Whether its recorded result cannot be used (it runs, or it is missing)."""
        return self.action in (RUN, MISSING)

    def describe(self) -> str:
        """One line: ``"03 cam_variants.ipynb  run: parameters changed: seg.lr"``."""
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        word = {RUN: "run", REUSE: "reuse (inputs unchanged)", KEEP: "read as it is (not selected, inputs unchanged)",
                MISSING: "MISSING (not selected, cannot be read)"}[self.action]
        return f"{self.number} {self.name}  {word}{why}"


def _named(items: Sequence[str]) -> str:
    items = list(items)
    head = ", ".join(items[:NAMED])
    return head + (f" and {len(items) - NAMED} more" if len(items) > NAMED else "")


def changes(now: Inputs, recorded: Mapping[str, Any] | None) -> list[str]:
    """What differs between this run's inputs of a notebook and those recorded in its marker.

    Parameters
    ----------
    now : Inputs
        This run's.
    recorded : mapping or None
        The marker's ``components`` (:meth:`Inputs.as_dict`); ``None`` for a marker written
        before components were recorded.

    Returns
    -------
    list of str
        Reasons in words, empty when nothing changed.
    """
    if not isinstance(recorded, Mapping):
        return ["made by an earlier version of the runner (its inputs were not recorded)"]
    out: list[str] = []
    old_params = recorded.get("params") or {}
    keys = sorted(set(now.params) | set(old_params))
    changed = [k for k in keys if (k in now.params) != (k in old_params)
               or value_hash(now.params.get(k)) != value_hash(old_params.get(k))]
    if changed:
        out.append(f"parameters changed: {_named(changed)}")
    if recorded.get("code") != now.code:
        out.append("its code cells changed")
    old_mods = recorded.get("modules") or {}
    edited = [m for m in now.modules if m in old_mods and old_mods[m] != now.modules[m]]
    added = [m for m in now.modules if m not in old_mods]
    dropped = [m for m in old_mods if m not in now.modules]
    if edited:
        out.append(f"code of {_named(edited)} changed")
    if added:
        out.append(f"now imports {_named(added)}")
    if dropped:
        out.append(f"no longer imports {_named(dropped)}")
    if recorded.get("inputs") != now.inputs:
        out.append("input files changed")
    return out


def make_plan(notebooks: Sequence[tuple[str, str]], inputs: Mapping[str, Inputs],
              markers: Mapping[str, Mapping[str, Any] | None], selected: Collection[str],
              force: bool = False, missing_outputs: Collection[str] = ()) -> list[PlanEntry]:
    """Decide, for the selected notebooks and the earlier ones they read, what runs and why.

    Parameters
    ----------
    notebooks : sequence of (number, name)
        Every registered notebook, in order.
    inputs : mapping number -> Inputs
        This run's inputs of each notebook.
    markers : mapping number -> dict or None
        The ``.done`` markers on disk (``fingerprint``, ``components``, ``run_id``,
        ``upstream``: earlier notebook -> the run id it read); ``None`` where there is none.
    selected : collection of str
        The notebooks asked for (``--only`` / ``--from``; all by default).
    force : bool
        ``--force``: every selected notebook runs.
    missing_outputs : collection of str
        Notebooks whose executed copy is missing although a marker exists.

    Returns
    -------
    list of PlanEntry
        One per notebook up to the last selected one, in order; the notebooks after it are
        left out (they are not read). A selected notebook after an earlier one that runs
        runs too (``upstream NN reruns``). An unselected earlier notebook is ``missing`` when
        its result is absent or stale; then nothing can run (the caller refuses).
    """
    order = [n for n, _ in notebooks]
    last = max((order.index(n) for n in selected if n in order), default=-1)
    entries: list[PlanEntry] = []
    current: dict[str, str | None] = {}   # notebook -> run id its result will have (None: new)
    for number, name in notebooks[:last + 1]:
        marker = markers.get(number)
        reasons: list[str] = []
        if marker is None:
            reasons.append("no result yet")
        elif number in missing_outputs:
            reasons.append("its executed notebook is missing")
        else:
            if marker.get("fingerprint") != inputs[number].digest():
                reasons += changes(inputs[number], marker.get("components")) or ["its recorded inputs differ"]
            ups = marker.get("upstream") or {}
            rerun = [u for u, run_id in current.items() if run_id is None]
            newer = [u for u, run_id in current.items() if run_id is not None and ups.get(u) != run_id]
            if rerun:
                reasons.append(f"upstream {_named(rerun)} {'reruns' if len(rerun) == 1 else 'rerun'}")
            if newer:
                reasons.append(f"upstream {_named(newer)} {'has a newer result' if len(newer) == 1 else 'have newer results'}")
        if number in selected:
            if force:
                reasons.insert(0, "--force")
            action = RUN if reasons else REUSE
        else:
            action = MISSING if reasons else KEEP
        current[number] = None if action in (RUN, MISSING) else (marker or {}).get("run_id")
        entries.append(PlanEntry(number, name, action, tuple(reasons)))
    return entries


def blocked(plan: Sequence[PlanEntry]) -> list[PlanEntry]:
    """The unselected earlier notebooks whose results the selected ones cannot read."""
    return [e for e in plan if e.action == MISSING]


def format_plan(plan: Sequence[PlanEntry]) -> list[str]:
    """The plan as lines for the console (``--dry-run``)."""
    width = max((len(e.name) for e in plan), default=0)
    return [PlanEntry(e.number, e.name.ljust(width), e.action, e.reasons).describe() for e in plan]
