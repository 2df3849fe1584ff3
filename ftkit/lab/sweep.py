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

>>> records = sweep(specs, executor=client.get_executor(), out="runs/grid", resume=True)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ftkit.lab.runs import run_one
from ftkit.lab.specs import RunRecord, RunSpec

__all__ = ["sweep", "load_records"]


def sweep(specs: Sequence[RunSpec], *, executor: Executor | None = None, out: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True) -> list[RunRecord]:
    """Run every spec; return their records in the order of ``specs``.

    Args:
        specs: the runs (duplicates, by key, run once).
        executor: None runs here; any ``concurrent.futures.Executor`` of processes runs
            there (several threads in one process would share torch's RNG: refused).
        out: folder where each finished run's record is written as it completes.
        resume: with ``out``: reuse the records already in it instead of rerunning them.
        progress: a bar that counts finished runs.

    Raises:
        ValueError: ``resume`` without ``out``, or an empty ``specs``.
        The first error a run raised, after the other runs have finished and
        been written (nothing finished is lost).
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
    records_dir = None if out is None else _records_dir(out)
    done: dict[str, RunRecord] = load_records(out) if (resume and records_dir is not None) else {}
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

    try:
        if executor is None:
            for spec in todo.values():
                finished(run_one(spec))
        else:
            futures = [executor.submit(run_one, spec) for spec in todo.values()]
            for future in as_completed(futures):
                try:
                    finished(future.result())
                except Exception as err:  # keep collecting the others; raise the first at the end
                    errors.append(err)
    finally:
        bar.close()
    if errors:
        raise errors[0]
    return [done[spec.key] for spec in specs]


def load_records(out: str | os.PathLike) -> dict[str, RunRecord]:
    """The records a sweep wrote into ``out``, by key (an empty dict if none)."""
    folder = Path(out) / "records"
    if not folder.is_dir():
        return {}
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = RunRecord.from_dict(json.loads(path.read_text()))
        records[record.key] = record
    return records


def _records_dir(out: str | os.PathLike) -> Path:
    folder = Path(out) / "records"
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write run records into {folder}: choose another out= folder")
    return folder


def _write_record(folder: Path, record: RunRecord) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{record.key}-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record.to_dict(), f, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{record.key}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
