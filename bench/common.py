"""Shared by the benchmarks: interleaved repeats, medians, machine facts, JSON.

Every benchmark compares two (or more) ways of doing the same work *in one
process on one machine* and reports ratios, never absolute goals: repeats run
interleaved (A, B, B, A, A, B, ...), each repeat is kept, and the median ratio
is the figure. The load average before and after each part is recorded,
because other work on a shared machine disturbs wall times.

    from bench.common import interleave, machine, median_ratio
    reps = interleave({"ftkit": run_a, "hand": run_b}, repeats=3)
    median_ratio(reps, "ftkit", "hand")
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ftkit.core.torchutil import atomic_path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def quick_mode() -> bool:
    """True when ``BENCH_QUICK`` is set to anything but "", "0" or "false"."""
    return os.environ.get("BENCH_QUICK", "").lower() not in ("", "0", "false", "no")


def load() -> list[float]:
    """1, 5 and 15-minute load averages, rounded."""
    return [round(v, 2) for v in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(wall seconds, result)`` of ``fn()``; CUDA work is waited for."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def interleave(fns: dict[str, Callable[[], Any]], repeats: int) -> list[dict[str, Any]]:
    """Run each of ``fns`` once per repeat, the order reversed every other repeat.

    Returns one dict per repeat: ``{name: seconds, ..., "out": {name: result}, "load": 1-min load}``.
    """
    names = list(fns)
    reps = []
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        rep: dict[str, Any] = {"out": {}}
        for name in order:
            rep[name], rep["out"][name] = timed(fns[name])
        rep["load"] = load()[0]
        reps.append(rep)
    return reps


def ratios(reps: list[dict[str, Any]], a: str, b: str) -> list[float]:
    """Per-repeat ``a / b`` time ratios."""
    return [rep[a] / rep[b] for rep in reps]


def median_ratio(reps: list[dict[str, Any]], a: str, b: str) -> float:
    return statistics.median(ratios(reps, a, b))


def seconds(reps: list[dict[str, Any]], name: str) -> list[float]:
    return [round(rep[name], 4) for rep in reps]


def part(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one benchmark part, with the load average before and after and its wall time.

    An error is recorded (the rest of ``make bench`` still runs) and re-raised
    at the end by :func:`write_results` through the ``error`` field.
    """
    before = load()
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 -- one broken part must not hide the others' figures
        result = {"error": f"{type(err).__name__}: {err}"}
    result.update(load_before=before, load_after=load(), part_wall_s=round(time.perf_counter() - t0, 1))
    return {"name": name, **result}


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically: nothing half-written (see :func:`write_text`)."""
    return write_text(path, json.dumps(payload, indent=2, default=_plain))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` through ftkit's ``atomic_path`` (a temporary file beside ``path``, then a rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return str(x)
