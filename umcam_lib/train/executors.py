"""Where trainings run: in the notebook's process, in worker processes, or on a Dask cluster.

Every executor has the ``concurrent.futures`` interface (``submit(fn, *args) -> Future``,
``shutdown()``), chosen by the ``executor`` section of a profile (:func:`make_executor`):

==============  ==========================================================================
``serial``      the default: each task runs in the notebook's own process when submitted,
                exactly as before tasks existed (a notebook opened in JupyterLab behaves so)
``processes``   ``executor.jobs`` worker processes on this machine (``--jobs N``), each task
                with its share of the threads (``threads // jobs`` unless
                ``executor.threads_per_task``)
``dask``        a Dask cluster: ``executor.scheduler`` (the address of a running scheduler),
                or ``executor.cluster`` (a ``dask-jobqueue`` cluster: SLURM, PBS, SGE, LSF,
                ``docs/cluster.md``), or a local cluster of ``jobs`` one-thread workers
==============  ==========================================================================

Dask is an optional dependency (``pip install -e '.[cluster]'``): the ``dask`` kind says how to
install it when it is missing. With the same threads per task, every kind gives the same result
bit for bit (``tests/test_tasks.py``).

:func:`run_tasks` submits a list of tasks, prints a line as each finishes (queued / running /
done, with its time), and names the task, its error and its folder when one fails.
"""
from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable, Mapping, Sequence, TextIO

from ..config.schema import ExecutorParams, check_section


class SerialExecutor(Executor):
    """Runs each task when it is submitted, in this process; the future is already done."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future


class DaskExecutor(Executor):
    """``submit`` through a ``distributed.Client`` (tasks are never deduplicated: ``pure=False``)."""

    def __init__(self, client: Any, cluster: Any = None) -> None:
        self.client, self.cluster = client, cluster

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return self.client.submit(fn, *args, pure=False, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


#: dask-jobqueue's cluster class of each scheduler kind of ``executor.cluster.kind``.
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}


def threads_per_task(spec: ExecutorParams | Mapping[str, Any], threads: int | None) -> int | None:
    """Torch threads of one task: ``executor.threads_per_task``, else the profile's ``threads``
    (serial) or its share among ``jobs`` workers (at least 1).

    Examples
    --------
    >>> threads_per_task({}, 2), threads_per_task({"kind": "processes", "jobs": 2}, 2)
    (2, 1)
    >>> threads_per_task({"kind": "processes", "jobs": 4, "threads_per_task": 2}, 2)
    2
    """
    spec = check_section("executor", spec)
    if spec.threads_per_task:
        return int(spec.threads_per_task)
    if spec.kind == "serial" or not threads:
        return threads
    return max(1, int(threads) // int(spec.jobs))


def make_executor(spec: ExecutorParams | Mapping[str, Any]) -> Executor:
    """The executor a profile's ``executor`` section names (see the module docstring)."""
    spec = check_section("executor", spec)
    if spec.kind == "serial":
        return SerialExecutor()
    if spec.kind == "processes":
        # spawn: a worker starts clean (no copy of the notebook's torch state or threads)
        return ProcessPoolExecutor(max_workers=int(spec.jobs), mp_context=multiprocessing.get_context("spawn"))
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("executor.kind 'dask' needs Dask: pip install -e '.[cluster]' "
                          "(dask[distributed], and dask-jobqueue for executor.cluster)") from exc
    if spec.scheduler:
        return DaskExecutor(Client(str(spec.scheduler)))
    if spec.cluster:
        options = dict(spec.cluster)
        kind = str(options.pop("kind", "slurm")).lower()
        if kind not in JOBQUEUE:
            raise ValueError(f"executor.cluster.kind must be one of {sorted(JOBQUEUE)}, got {kind!r}")
        try:
            import dask_jobqueue
        except ImportError as exc:
            raise ImportError("executor.cluster needs dask-jobqueue: pip install -e '.[cluster]'") from exc
        cluster = getattr(dask_jobqueue, JOBQUEUE[kind])(**options)
        cluster.scale(jobs=int(spec.jobs))
        return DaskExecutor(Client(cluster), cluster)
    cluster = LocalCluster(n_workers=int(spec.jobs), threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return DaskExecutor(Client(cluster), cluster)


class TaskError(RuntimeError):
    """A task failed; the message names it, its error and its folder (whose output is not trusted)."""


def run_tasks(executor: Executor, fn: Callable[..., Any], tasks: Sequence[Any], *extra: Any,
              stream: TextIO | None = None, progress: bool = True) -> list[Any]:
    """Submit ``fn(task, *extra)`` for every task, wait for all, return their results in task order.

    A line is printed as each task finishes: how many are done, running and queued, and the
    task's own time. When tasks fail, the error names each (``describe()``), its exception and
    its folder; the other tasks still finish, so a rerun resumes them.
    """
    out = stream or sys.stdout
    t0 = time.perf_counter()
    futures: list[Any] = []
    results: list[Any] = [None] * len(tasks)
    failed: list[str] = []
    pending: set[int] = set()

    def collect(i: int) -> None:
        """Take the result of finished task ``i`` and print its line."""
        pending.discard(i)
        name = tasks[i].describe() if hasattr(tasks[i], "describe") else str(tasks[i])
        exc = futures[i].exception()
        if exc is not None:
            where = getattr(tasks[i], "where", None) or f"seg/{getattr(tasks[i], 'folder', '?')}"
            failed.append(f"{name}: {type(exc).__name__}: {exc} (folder {where}, not trusted; a rerun starts it again)")
        else:
            results[i] = futures[i].result()
        if progress:
            running = sum(1 for j in pending if futures[j].running())
            queued = len(pending) - running + len(tasks) - len(futures)
            print(f"tasks: {len(futures) - len(pending)} done, {running} running, {queued} queued | {name} "
                  f"{'FAILED' if exc is not None else 'done'} at {time.perf_counter() - t0:.0f} s",
                  file=out, flush=True)

    for i, task in enumerate(tasks):
        futures.append(executor.submit(fn, task, *extra))
        pending.add(i)
        if futures[i].done():  # the serial executor: the task already ran
            collect(i)
    while pending:
        for i in [j for j in sorted(pending) if futures[j].done()]:
            collect(i)
        if pending:
            time.sleep(0.2)
    if failed:
        raise TaskError(f"{len(failed)} of {len(tasks)} task(s) failed:\n  " + "\n  ".join(failed))
    return results


__all__ = ["DaskExecutor", "JOBQUEUE", "SerialExecutor", "TaskError", "make_executor", "run_tasks",
           "threads_per_task"]
