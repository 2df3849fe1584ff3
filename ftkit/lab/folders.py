"""Run folders: where a race's records, tables, plot and JSON summary are written.

Each run gets a new folder (``runs/demo-20261127-231500``, then ``-2``, ``-3``
on a clash), claimed with an exclusive ``os.mkdir``: two processes starting at
the same second get two folders, and no folder that exists is ever written
into by a new run, renamed over or deleted. Folders and files get the usual
permissions (the process's umask applies; not the 0700 of ``tempfile``).

Check the output root before any training (:func:`check_writable`): a
read-only ``--out`` must fail in a second, not after an hour of training.

>>> root = check_writable("runs")                               # doctest: +SKIP
>>> folder = create_run_dir(root, "demo")                       # doctest: +SKIP
>>> write_race(result, folder=folder)                           # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = ["RunFolderError", "check_writable", "create_run_dir", "new_run_dir", "atomic_file", "write_race",
           "RACE_FILES"]

RACE_FILES = ("curves.csv", "runs.csv", "steps.csv", "summary.csv", "summary.json", "convergence.png")
_MAX_SUFFIX = 10_000


class RunFolderError(OSError):
    """An output folder that cannot be created or written; the message says which and what to do."""


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """An open file that appears at ``path`` complete or not at all: written beside it under a
    unique hidden name, flushed to disk (fsync), then renamed into place. Unlike ``tempfile``'s
    0600 files, it gets the usual permissions (0666 minus the umask).

    >>> with atomic_file("runs/x/record.json") as fh:          # doctest: +SKIP
    ...     fh.write("{}")
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(root: str | os.PathLike) -> Path:
    """Create ``root`` if needed and prove a file can be written in it (then remove that file).

    Raises:
        RunFolderError: naming the folder, the cause and the fix, before anything else happens.
    """
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"output folder {root} is a file, not a folder; pass --out (out=) a folder path")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".ftkit-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with open(probe, "xb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as err:
        raise RunFolderError(f"cannot write to output folder {root} ({err.strerror or err}); "
                             "pass --out (out=) a folder you can write to, or fix its permissions") from err
    return root


def new_run_dir(root: str | os.PathLike, prefix: str) -> Path:
    """The first free ``<prefix>-<date>-<time>[-n]`` path under ``root`` (not created: see
    :func:`create_run_dir`, which claims it)."""
    root = Path(root)
    stem = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = root / stem, 2
    while path.exists():
        path, n = root / f"{stem}-{n}", n + 1
    return path


def _claim(root: Path, prefix: str, claim: Callable[[Path], None]) -> Path:
    stem = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, _MAX_SUFFIX):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            claim(path)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):  # taken between our mkdir and rename
                continue
            raise
    raise RunFolderError(f"no free name {stem}-N under {root} after {_MAX_SUFFIX} tries; clean up old runs")


def create_run_dir(root: str | os.PathLike, prefix: str) -> Path:
    """Create and return a new, empty run folder under ``root`` (exclusively: never one that exists)."""
    root = check_writable(root)
    return _claim(root, prefix, lambda p: p.mkdir())  # os.mkdir fails if p exists: exclusive


def _write_race_files(result, folder: Path, draw: Callable[[object, Path], None] | None) -> None:
    """Each file written atomically (temp file, then rename); summary.json last."""

    def csv(name, df):
        with atomic_file(folder / name) as fh:
            df.to_csv(fh, index=False)

    csv("curves.csv", result.curves)
    csv("runs.csv", result.runs)
    csv("steps.csv", result.steps)
    csv("summary.csv", result.summary())
    if draw is not None:
        tmp = folder / f".convergence.{os.getpid()}-{uuid.uuid4().hex[:8]}.png"
        try:
            draw(result, tmp)
            os.replace(tmp, folder / "convergence.png")
        finally:
            tmp.unlink(missing_ok=True)
    with atomic_file(folder / "summary.json") as fh:
        fh.write(json.dumps(result.to_json_dict(), indent=2))


def write_race(result, root: str | os.PathLike = "runs", prefix: str = "race", *,
               folder: str | os.PathLike | None = None,
               draw: Callable[[object, Path], None] | None = None) -> Path:
    """Write curves.csv, runs.csv, steps.csv, summary.csv, summary.json (and convergence.png).

    Args:
        result: a :class:`ftkit.lab.race.RaceResult`.
        root, prefix: without ``folder``, a new run folder is made under ``root``:
            everything is written into a hidden folder first, which is then
            renamed onto a freshly claimed name, so the run folder appears
            complete or not at all (an error leaves nothing behind).
        folder: an existing run folder (e.g. the one a sweep wrote its records
            into): the files are added there, each atomically; nothing in it
            is removed.
        draw: writes the figure, called as ``draw(result, path)``; the CLI passes
            ``ftkit.viz.plots.save_race_figure`` (this lab-level module does not
            import the plotting layer). None: no figure.

    Returns:
        The folder written.
    """
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise RunFolderError(f"run folder {folder} does not exist; create it with create_run_dir()")
        _write_race_files(result, folder, draw)
        return folder
    root = check_writable(root)
    tmp = root / f".{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()  # the umask applies: normal permissions once renamed
    try:
        _write_race_files(result, tmp, draw)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only what this call half-wrote
        raise

    def publish(path: Path) -> None:
        path.mkdir()          # claim the name exclusively (FileExistsError if taken)...
        try:
            os.rename(tmp, path)  # ...then replace the empty claimed folder in one step
        except OSError:
            try:
                path.rmdir()  # our own empty claim; if someone wrote into it, rmdir refuses
            except OSError:
                pass
            raise

    try:
        return _claim(root, prefix, publish)
    except OSError as err:
        raise RunFolderError(f"could not move the finished run into {root} ({err}); "
                             f"its files are kept in {tmp}") from err
