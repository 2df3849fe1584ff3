"""The GPU check (``bash bench/gpu.sh``): ftkit's ``fit`` vs a hand-written bf16 + channels-last loop.

For MobileNetV2 and ResNet-50 (random init: throughput does not depend on the
weights) at 224 px, batch 128, full fine-tuning (SGD momentum 0.9,
cross-entropy), in one process, repeats interleaved, images per second of:

* ``hand_gpu_data``: the loop a performance-minded user writes, batches already
  on the GPU (the anchor's setting: 4390 and 4279 img/s on an H200,
  /work/shared/GPU.md) -- the compute ceiling;
* ``hand_loader``: the same loop fed by a ``DataLoader`` over a CPU dataset
  (pinned memory, ``workers`` processes, prefetch, persistent workers);
* ``ftkit``: ``fit(model, data, device="auto", num_workers=workers)`` on the
  same CPU dataset, nothing else set: what ``device="auto"`` gives;
* ``ftkit_workers0``: the same with fit's default ``num_workers=0`` (loading in
  the training process), to show whether loading keeps up without workers.

Goal: ftkit >= 0.95 x the hand loop fed the same way (``hand_loader``); the
ratio to the on-GPU ceiling is reported beside it. Also checks what ``device="auto"`` picked
(bf16 autocast, channels_last inputs and weights, pinned memory), then runs the
LR-finder benchmark and the headline race (scratch vs linear probe vs
fine-tune, 3 seeds) on the device, and writes ``gpu.json`` + ``gpu.md``.

``--dry-run``: tiny sizes on the CPU (what the test suite runs, so this cannot rot).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench.common import RESULTS, fmt, interleave, load, machine, part, write_json, write_text
from ftkit.core.runtime import resolve_runtime
from ftkit.training.loop import fit

ANCHORS = {"mobilenet_v2": 4390, "resnet50": 4279}  # img/s, hand-written bf16 + channels_last, H200
GOAL = 0.95


class Images(Dataset):
    """``n`` distinct uint8 images converted to float per item, as a decoded image set is."""

    def __init__(self, n: int, size: int, classes: int = 10, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i].float().div_(255), self.y[i]


def hand_step(model, opt, x, y, amp: bool, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def hand_gpu_data(model, batches, steps: int, amp: bool, device: torch.device) -> int:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        hand_step(model, opt, x, y, amp, device)
    return steps


def hand_loader(model, data, steps: int, batch: int, workers: int, amp: bool, device: torch.device) -> int:
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    done = 0
    while done < steps:
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            hand_step(model, opt, x, y.to(device, non_blocking=True), amp, device)
            done += 1
            if done == steps:
                break
    return steps


def ftkit_fit(model, data, steps: int, batch: int, workers: int, device: str) -> int:
    fit(model, data, None, optimizer="sgd", lr=0.01, momentum=0.9, max_steps=steps, batch_size=batch,
        device=device, num_workers=workers, precise_bn=False, progress=False)
    return steps


def throughput(name: str, *, size: int, batch: int, steps: int, workers: int, repeats: int, device: str) -> dict:
    rt = resolve_runtime(device)
    dev, amp = rt.device, rt.amp
    model = getattr(torchvision.models, name)(num_classes=10).to(dev)
    model = model.to(memory_format=torch.channels_last) if dev.type == "cuda" else model
    data = Images(batch * 4, size)
    gpu_batches = [(torch.stack([data[i][0] for i in range(k * batch, (k + 1) * batch)]).to(dev)
                    .contiguous(memory_format=torch.channels_last), data.y[k * batch:(k + 1) * batch].to(dev))
                   for k in range(2)]
    fns = {"ftkit": lambda: ftkit_fit(model, data, steps, batch, workers, device),
           "ftkit_workers0": lambda: ftkit_fit(model, data, steps, batch, 0, device),
           "hand_loader": lambda: hand_loader(model, data, steps, batch, workers, amp, dev),
           "hand_gpu_data": lambda: hand_gpu_data(model, gpu_batches, steps, amp, dev)}
    for fn in fns.values():  # warm-up: cuDNN autotuning, worker start-up, allocator
        fn()
    reps = interleave(fns, repeats)
    ips = {k: [steps * batch / r[k] for r in reps] for k in fns}
    med = {k: statistics.median(v) for k, v in ips.items()}
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return {"model": name, "img_per_s": {k: [round(x, 1) for x in v] for k, v in ips.items()},
            "median_img_per_s": {k: round(v, 1) for k, v in med.items()},
            "ftkit_over_hand_loader": round(med["ftkit"] / med["hand_loader"], 3),
            "ftkit_over_hand_gpu_data": round(med["ftkit"] / med["hand_gpu_data"], 3),
            "ftkit_workers0_over_hand_loader": round(med["ftkit_workers0"] / med["hand_loader"], 3),
            "anchor_img_per_s": ANCHORS.get(name), "met": med["ftkit"] / med["hand_loader"] >= GOAL,
            "runtime": {"device": str(dev), "bf16_autocast": amp, "channels_last_inputs": rt.channels_last,
                        "weights_channels_last_after_fit": conv.weight.is_contiguous(memory_format=torch.channels_last),
                        "pin_memory": dev.type == "cuda"},
            "load": reps[-1]["load"]}


def headline_race(dry: bool, device: str) -> dict:
    from ftkit.lab.race import make_strategies, race
    from ftkit.lab.specs import DataSpec

    kw = dict(epochs=1, batch_size=8, device=device) if dry else dict(epochs=4, batch_size=32, device=device)
    data = DataSpec("animals", n_per_class=3 if dry else 30, image_size=32 if dry else 64,
                    val_n_per_class=2 if dry else 50)
    seeds = (0,) if dry else (0, 1, 2)
    t0 = time.perf_counter()
    res = race(make_strategies(["scratch", "linear_probe", "finetune"], **kw), data, seeds=seeds)
    wall = time.perf_counter() - t0
    final = res.runs.groupby("strategy")["final_acc"].mean().round(4).to_dict()
    return {"what": f"race scratch/linear_probe/finetune, animals {data.n_per_class}/class, {data.image_size} px, "
                    f"{kw['epochs']} epochs, seeds {list(seeds)}, device {device}",
            "wall_s": round(wall, 2), "mean_final_acc": final}


def markdown(report: dict) -> str:
    m = report["machine"]
    dry = " -- DRY RUN: tiny sizes on the CPU, not figures" if report["dry_run"] else ""
    lines = [f"GPU check, {report['date']}, `bash bench/gpu.sh{' --dry-run' if report['dry_run'] else ''}` on "
             f"{m.get('cuda') or m['cpu']} (torch {m['torch']}); load average {report['load_before'][0]} before, "
             f"{report['load_after'][0]} after{dry}", "",
             "| model | ftkit img/s | ftkit, 0 workers | hand (DataLoader) img/s | hand (data on GPU) img/s | anchor | "
             "ftkit / hand DataLoader | ftkit / hand on GPU | goal >= 0.95 |", "|---|---|---|---|---|---|---|---|---|"]
    for p in report["parts"]:
        if p["name"].startswith("throughput"):
            if "error" in p:
                lines.append(f"| {p['name']} | ERROR: {p['error'][:200]} | | | | | | | |")
                continue
            med = p["median_img_per_s"]
            lines.append(f"| {p['model']} | {med['ftkit']:.0f} | {med['ftkit_workers0']:.0f} "
                         f"| {med['hand_loader']:.0f} | {med['hand_gpu_data']:.0f} "
                         f"| {p['anchor_img_per_s']} | {p['ftkit_over_hand_loader']:.3f} | "
                         f"{p['ftkit_over_hand_gpu_data']:.3f} | {'yes' if p['met'] else 'no'} |")
    lines.append("")
    for p in report["parts"]:
        if p["name"] == "lr_finder":
            lines.append("- LR finder: " + (f"ERROR {p['error']}" if "error" in p else
                                             f"ftkit / torch-lr-finder time {fmt(p['median_ratio'])}x ({p['what']})"))
        if p["name"] == "race":
            lines.append("- race: " + (f"ERROR {p['error']}" if "error" in p else
                                        f"{p['wall_s']} s, mean final accuracy {p['mean_final_acc']} ({p['what']})"))
        if p["name"].startswith("throughput") and "runtime" in p:
            lines.append(f"- {p['model']}: device='auto' gave {p['runtime']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--out", default=str(RESULTS), help="folder for gpu.json and gpu.md")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers for the loader-fed loops")
    args = ap.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        ap.error("no CUDA device here; use --dry-run for the CPU smoke test")
    device = "cpu" if dry else "auto"
    sizes = dict(size=32, batch=4, steps=2, workers=0, repeats=1) if dry else \
        dict(size=224, batch=128, steps=100, workers=args.workers, repeats=2)
    from bench import bench_lr_finder

    jobs = [(f"throughput_{name}", lambda name=name: throughput(name, device=device, **sizes))
            for name in ("mobilenet_v2", "resnet50")]
    jobs.append(("lr_finder", lambda: bench_lr_finder.run(quick=dry, repeats=1 if dry else 3,
                                                          num_iter=5 if dry else None, size=16 if dry else 224,
                                                          batch_size=4 if dry else 64,
                                                          device="cpu" if dry else "cuda")))
    jobs.append(("race", lambda: headline_race(dry, device if dry else "cuda")))
    out = Path(args.out)
    stem = "gpu_dry_run" if dry else "gpu"
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": dry, "machine": machine(),
              "settings": sizes, "load_before": load(), "load_after": None, "parts": []}
    for name, fn in jobs:  # the files are rewritten after every part: a timeout keeps what was measured
        report["parts"].append(part(name, fn))
        report["load_after"] = load()
        write_json(out / f"{stem}.json", report)
        table = markdown(report)
        write_text(out / f"{stem}.md", table)
        print(f"[gpu] {name} done", flush=True)
    parts = report["parts"]
    print(table)
    return 1 if any("error" in p for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())
