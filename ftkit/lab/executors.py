"""Executors for sweeps: Dask (a laptop ``LocalCluster`` or a real cluster) and process pools,
with each worker using its share of the machine's cores.

A sweep (``ftkit.lab.sweep.sweep``) takes any ``concurrent.futures.Executor``;
these helpers make the Dask ones and decide how many torch threads a run may
use where it lands. No scheduling is done here: Dask's scheduler does it.

>>> with dask_executor(workers=2) as ex:                         # doctest: +SKIP
...     records = sweep(specs, executor=ex, out=folder)
>>> with dask_executor("tcp://10.0.0.5:8786") as ex:             # doctest: +SKIP
...     records = sweep(specs, executor=ex, out=folder)
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Callable, Iterator

import torch

__all__ = ["dask_executor", "slots_per_host", "cores_here", "thread_share", "call_with_share"]


def cores_here() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or a job's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def slots_per_host(executor: Executor | None) -> dict[str, int] | int | None:
    """How many runs an executor may execute at once on each machine.

    Returns:
        A Dask executor: ``{host: total worker threads on that host}``; a
        ``ProcessPoolExecutor``: its ``max_workers`` (all on this machine);
        None when unknown (no executor, or another kind).
    """
    if executor is None:
        return None
    client = getattr(executor, "_client", None)  # distributed's ClientExecutor
    if client is not None and hasattr(client, "scheduler_info"):
        slots: dict[str, int] = {}
        for w in client.scheduler_info(n_workers=-1).get("workers", {}).values():
            slots[w["host"]] = slots.get(w["host"], 0) + int(w.get("nthreads", 1))
        return slots
    if isinstance(executor, ProcessPoolExecutor):
        return int(executor._max_workers)
    return None


def _host_here() -> str | None:
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        return get_address_host(get_worker().address)
    except (ImportError, ValueError):  # not inside a Dask worker
        return None


def thread_share(slots: dict[str, int] | int | None) -> int | None:
    """The torch thread count for one run here: this machine's cores divided by the runs it holds
    at once (at least 1); None when ``slots`` says nothing about this machine."""
    if isinstance(slots, dict):
        host = _host_here()
        n = slots.get(host) if host is not None else None
    else:
        n = slots
    if not n:
        return None
    return max(1, cores_here() // int(n))


def call_with_share(fn: Callable[[Any], Any], arg: Any, slots: dict[str, int] | int | None,
                    threads: int | None = None) -> Any:
    """``fn(arg)`` with torch's intra-op threads set to ``threads`` (or this worker's share of the
    cores, see :func:`thread_share`), restored afterwards. Runs on the worker: picklable."""
    n = threads if threads is not None else thread_share(slots)
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        return fn(arg)
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def dask_executor(scheduler: str | None = None, *, workers: int | None = None,
                  threads_per_worker: int = 1) -> Iterator[Executor]:
    """A ``concurrent.futures.Executor`` on a Dask cluster, closed on exit.

    Args:
        scheduler: address of a running scheduler (``"tcp://host:8786"``): use that cluster.
        workers: no address: start a ``LocalCluster`` here with this many worker
            processes (``threads_per_worker`` each; no dashboard) and stop it on exit.

    Raises:
        ValueError: neither or both of ``scheduler`` and ``workers`` given, or ``workers < 1``.
        ImportError: ``distributed`` is not installed (it is a dependency of ftkit: ``make setup``).
    """
    if (scheduler is None) == (workers is None):
        raise ValueError("give a scheduler address (e.g. 'tcp://10.0.0.5:8786') or workers=N for a local "
                         "cluster, not both or neither")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, not {workers!r}")
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                dashboard_address=None, host="127.0.0.1"))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        yield client.get_executor()
