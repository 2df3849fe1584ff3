"""Map ``run_one`` over many run specs: in this process or on any executor.

``sweep(specs, executor=None)`` runs them here, one after the other; any
``concurrent.futures.Executor`` runs them there instead — a
``ProcessPoolExecutor``, or a Dask cluster through
``distributed.Client(...).get_executor()`` (a laptop ``LocalCluster`` or a
real cluster, the same code). There is no scheduler of our own.

With ``out=folder`` every finished run is written to
``folder/records/<key>.json`` as soon as it completes (atomically: a file
appears whole or not at all), and ``resume=True`` on the same folder skips
the specs already done, so an interrupted sweep loses nothing.

On an executor every run sets torch's thread count to its worker's share of
the machine's cores (cores / runs that machine holds at once), so two
workers on a 2-core laptop use one thread each, not two each.

>>> records = sweep(specs, executor=client.get_executor(), out="runs/grid", resume=True)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ftkit.lab.executors import call_with_share, slots_per_host
from ftkit.lab.folders import atomic_file, check_writable
from ftkit.lab.runs import run_one
from ftkit.lab.specs import RunRecord, RunSpec

__all__ = ["sweep", "load_records"]


def sweep(specs: Sequence[RunSpec], *, executor: Executor | None = None, out: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True, threads: int | None = None) -> list[RunRecord]:
    """Run every spec; return their records in the order of ``specs``.

    Args:
        specs: the runs (duplicates, by key, run once).
        executor: None runs here; any ``concurrent.futures.Executor`` of processes runs
            there (several threads in one process would share torch's RNG: refused).
        out: folder where each finished run's record is written as it completes.
        resume: with ``out``: reuse the records already in it instead of rerunning them.
            Without it, a folder that already holds records is refused (nothing
            finished is ever overwritten).
        progress: a bar that counts finished runs.
        threads: torch threads per run; None: on an executor, each worker's
            share of its machine's cores (:func:`ftkit.lab.executors.thread_share`),
            in this process, torch's setting as it is. The count changes float
            rounding (a scratch run's accuracy can move by an image): pin it
            to get identical numbers in-process and on a cluster. Each record
            keeps it (``extra["torch_threads"]``).

    Raises:
        ValueError: ``resume`` without ``out``, records in ``out`` without
            ``resume``, or an empty ``specs``.
        RunFolderError: ``out`` cannot be written (checked before any run).
        The first error a run raised: on an executor after the other runs
        have finished and been written; in this process at once. Either way
        every run finished before it is already written (nothing is lost).
    """
    specs = list(specs)
    if not specs:
        raise ValueError("sweep() got no run specs")
    if isinstance(executor, ThreadPoolExecutor) and executor._max_workers > 1:
        raise ValueError("a ThreadPoolExecutor runs several runs at once in one process, where they share torch's "
                         "random number generator: results would depend on timing. Use a ProcessPoolExecutor "
                         "or a Dask cluster (distributed.Client(...).get_executor()), or executor=None")
    if resume and out is None:
        raise ValueError("resume=True needs out=<the folder of the interrupted sweep>")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or a positive int, not {threads!r}")
    records_dir = None if out is None else _records_dir(out)
    done: dict[str, RunRecord] = load_records(out) if records_dir is not None else {}
    if done and not resume:
        raise ValueError(f"{records_dir} already holds {len(done)} run records; pass resume=True to keep them "
                         "and run only the missing specs, or choose a new out= folder")
    todo: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.key not in done:
            todo.setdefault(spec.key, spec)

    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress)
    errors: list[BaseException] = []

    def finished(record: RunRecord) -> None:
        done[record.key] = record
        if records_dir is not None:
            _write_record(records_dir, record)
        bar.update(1)

    futures = []
    try:
        if executor is None:
            for spec in todo.values():
                finished(call_with_share(run_one, spec, None, threads))
        else:
            task = partial(call_with_share, run_one, slots=slots_per_host(executor), threads=threads)
            futures = [executor.submit(task, spec) for spec in todo.values()]
            for future in as_completed(futures):
                try:
                    finished(future.result())
                except Exception as err:  # keep collecting the others; raise the first at the end
                    errors.append(err)
    finally:
        for future in futures:  # Ctrl-C or an error here: do not leave runs queued on the cluster
            future.cancel()
        bar.close()
    if errors:
        raise errors[0]
    return [done[spec.key] for spec in specs]


def load_records(out: str | os.PathLike) -> dict[str, RunRecord]:
    """The records a sweep wrote into ``out``, by key (an empty dict if none).

    A record file that cannot be read (it cannot be half-written, but it can
    be damaged later) is left in place and reported with a warning; its run
    counts as not done, so a resumed sweep runs it again.
    """
    folder = Path(out) / "records"
    if not folder.is_dir():
        return {}
    records = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = RunRecord.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            warnings.warn(f"run record {path} cannot be read ({type(err).__name__}: {err}); "
                          "its run will be done again", stacklevel=2)
            continue
        if record.key != path.stem:
            warnings.warn(f"run record {path} holds key {record.key!r}, not its file name; ignored", stacklevel=2)
            continue
        records[record.key] = record
    return records


def _records_dir(out: str | os.PathLike) -> Path:
    return check_writable(Path(out) / "records")  # before any run: RunFolderError naming the folder and the fix


def _write_record(folder: Path, record: RunRecord) -> None:
    with atomic_file(folder / f"{record.key}.json") as f:  # whole or not at all, fsynced, umask permissions
        json.dump(record.to_dict(), f, default=_json_default)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
