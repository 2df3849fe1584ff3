"""Benchmark: ftkit.lr.finder.lr_find against torch_lr_finder.LRFinder.

Same model (torchvision ResNet-18, random init, small inputs), same batches
(one un-shuffled DataLoader), same optimizer settings, same sweep and number of
steps (early stopping off in both), in one process, alternating which tool goes
first. torch-lr-finder's timing includes building the LRFinder (its state
cache) and the manual ``reset()`` that ftkit does by itself.

Prints, per tool: wall time per repeat, the median ratio ftkit / torch-lr-finder,
bytes held by the saved state (ftkit: CPU snapshot; torch-lr-finder: its
in-memory state cache), in multiples of "parameters + buffers + optimizer
state", the peak RSS growth during the call (sampled by psutil, if present;
allocator reuse makes it a rough figure), and the gradient memory each tool
leaves behind. On CUDA it also prints the peak extra GPU memory.

    .venv/bin/python bench/bench_lr_finder.py --quick
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import statistics
import threading
import time

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ftkit.lr.finder import lr_find

try:
    import psutil
except ImportError:  # RSS columns are then left out
    psutil = None

from torch_lr_finder import LRFinder


def tensor_bytes(obj) -> int:
    """Bytes of all tensors reachable through dicts/lists/tuples."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms."""

    def __enter__(self):
        self.proc = psutil.Process() if psutil else None
        self.base = self.peak = self.proc.memory_info().rss if self.proc else 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.proc and not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.extra = self.peak - self.base


def run_ftkit(model, opt, loader, args):
    result = lr_find(model, loader, optimizer=opt, criterion=nn.CrossEntropyLoss(),
                     start_lr=args.start_lr, end_lr=args.end_lr, num_iter=args.num_iter,
                     diverge_factor=None, device=args.device,
                     amp=False)  # fp32 like torch-lr-finder: the same work on both sides
    return len(result.lrs), result.snapshot_bytes


def run_torch_lr_finder(model, opt, loader, args):
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        finder = LRFinder(model, opt, nn.CrossEntropyLoss(), device=args.device)
        finder.range_test(loader, start_lr=args.start_lr, end_lr=args.end_lr,
                          num_iter=args.num_iter, diverge_th=float("inf"))
        saved = tensor_bytes(finder.state_cacher.cached)
        finder.reset()
    return len(finder.history["lr"]), saved


def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS, so RSS growth shows new allocations."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(fn, model, opt, loader, args):
    cuda = torch.device(args.device).type == "cuda"
    for p in model.parameters():  # same start for both: no stale grads
        p.grad = None
    release_freed_memory()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        start = time.perf_counter()
        steps, saved = fn(model, opt, loader, args)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    gpu_extra = torch.cuda.max_memory_allocated() - gpu_base if cuda else None
    grads_left = tensor_bytes([p.grad for p in model.parameters() if p.grad is not None])
    return dict(wall=wall, steps=steps, saved=saved, rss=rss.extra, gpu=gpu_extra,
                grads_left=grads_left)


def run(*, quick: bool = False, repeats: int = 3, num_iter: int | None = None, size: int | None = None,
        batch_size: int = 16, device: str | None = None) -> dict:
    """Interleaved runs of both finders; the figures as a dict (``main`` prints them)."""
    args = argparse.Namespace(repeats=repeats, num_iter=num_iter or (30 if quick else 100),
                              size=size or (32 if quick else 64), batch_size=batch_size,
                              device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
                              start_lr=1e-6, end_lr=1.0)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * 8  # 8 batches: both tools cycle the loader
    data = TensorDataset(torch.randn(n, 3, args.size, args.size, generator=g),
                         torch.randint(0, 10, (n,), generator=g))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False)
    # give the optimizer momentum state, as after some training
    for x, y in list(loader)[:2]:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x.to(args.device)), y.to(args.device)).backward()
        opt.step()
    weights = sum(tensor_bytes(t) for t in [*model.parameters(), *model.buffers()])
    state = tensor_bytes(list(opt.state.values()))
    unit = weights + state

    tools = {"ftkit": run_ftkit, "torch-lr-finder": run_torch_lr_finder}
    for fn in tools.values():  # warm-up, untimed
        fn(model, opt, loader, args)
    rows = {name: [] for name in tools}
    for r in range(args.repeats):
        order = list(tools) if r % 2 == 0 else list(reversed(tools))
        for name in order:
            rows[name].append(measure(tools[name], model, opt, loader, args))
    ratios = [a["wall"] / b["wall"] for a, b in zip(rows["ftkit"], rows["torch-lr-finder"])]
    return {"what": f"lr_find vs torch-lr-finder: resnet18 (random init), input {args.size}x{args.size}, "
                    f"batch {args.batch_size}, num_iter {args.num_iter}, device {args.device}",
            "settings": {k: v for k, v in vars(args).items()}, "torch_threads": torch.get_num_threads(),
            "weights_mib": weights / 2**20, "optimizer_state_mib": state / 2**20, "unit_bytes": unit,
            "runs": rows, "ratios": ratios, "median_ratio": statistics.median(ratios),
            "saved_copies": {name: runs[0]["saved"] / unit for name, runs in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32 inputs, 30 steps, 3 repeats "
                        "(default: 64x64, 100 steps, 3 repeats)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--num-iter", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="input image size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    res = run(quick=args.quick, repeats=args.repeats or 3, num_iter=args.num_iter, size=args.size,
              batch_size=args.batch_size, device=args.device)
    rows, unit = res["runs"], res["unit_bytes"]
    s = res["settings"]
    print(f"model resnet18 (random init), input {s['size']}x{s['size']}, batch {s['batch_size']}, "
          f"num_iter {s['num_iter']}, device {s['device']}, torch threads {res['torch_threads']}")
    print(f"parameters+buffers {res['weights_mib']:.1f} MiB, optimizer state {res['optimizer_state_mib']:.1f} MiB "
          f"(one copy of both = {unit / 2**20:.1f} MiB)")
    for name, runs in rows.items():
        walls = ", ".join(f"{m['wall']:.2f}" for m in runs)
        steps = {m["steps"] for m in runs}
        saved = runs[0]["saved"]
        rss = statistics.median(m["rss"] for m in runs) / 2**20 if psutil else float("nan")
        median = statistics.median(m["wall"] for m in runs)
        line = (f"{name:>16}: wall s [{walls}] median {median:.2f}; "
                f"steps {sorted(steps)}; saved state {saved / 2**20:.1f} MiB "
                f"({saved / unit:.2f} copies); peak RSS growth {rss:.1f} MiB; "
                f".grad left after the call {runs[0]['grads_left'] / 2**20:.1f} MiB")
        if runs[0]["gpu"] is not None:
            line += f"; peak extra GPU {statistics.median(m['gpu'] for m in runs) / 2**20:.1f} MiB"
        print(line)
    print(f"wall-time ratio ftkit / torch-lr-finder: median {res['median_ratio']:.3f} "
          f"(per repeat: {', '.join(f'{r:.3f}' for r in res['ratios'])})")


if __name__ == "__main__":
    main()
