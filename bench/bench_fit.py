"""Benchmark 1: ``ftkit.fit`` vs a minimal hand-written PyTorch loop.

Same model (the embedded ImageNet MobileNetV2 with a new 10-class head), same
data (``animals`` at 64 px), same batch order (a ``DataLoader`` shuffled by a
generator seeded the same way), same optimizer (Adam, lr 1e-3), same number of
steps, same dropout draws (both seeded); no evaluation, no progress bar, no
precise BN in either. Repeats interleave (ftkit, hand, hand, ftkit, ...); the
figure is the median time ratio ftkit / hand (goal <= 1.05). Both runs start
from the same weights; the largest weight difference at the end is reported
(0 or float rounding: the two did the same maths).

    python -m bench.bench_fit            # 60 steps, 5 repeats
    BENCH_QUICK=1 python -m bench.bench_fit
"""
from __future__ import annotations

import copy
import statistics
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.common import interleave, machine, quick_mode, ratios, seconds
from ftkit.core.state import seeded
from ftkit.data import load_dataset
from ftkit.models.heads import replace_head
from ftkit.models.zoo import load_backbone
from ftkit.training.loop import fit

GOAL = 1.05


def hand_loop(model: nn.Module, data, *, steps: int, batch_size: int, lr: float, seed: int) -> nn.Module:
    """The loop a learner writes: shuffle, forward, cross-entropy, backward, Adam step."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    step = 0
    with seeded(seed):  # the same dropout draws as fit's
        while step < steps:
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step == steps:
                    break
    return model


def ftkit_loop(model: nn.Module, data, *, steps: int, batch_size: int, lr: float, seed: int) -> nn.Module:
    fit(model, data, None, optimizer="adam", lr=lr, max_steps=steps, batch_size=batch_size, seed=seed,
        device="cpu", amp=False, precise_bn=False, progress=False)
    return model


def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].is_floating_point())


def run(*, steps: int = 60, repeats: int = 5, n_per_class: int = 100, image_size: int = 64,
        batch_size: int = 32, lr: float = 1e-3, backbone: str = "mobilenet_v2") -> dict:
    """Interleaved timings of both loops; returns the figures as a dict."""
    data = load_dataset("animals", "train", n_per_class=n_per_class, image_size=image_size)
    base = replace_head(load_backbone(backbone).model, 10)
    kw = dict(steps=steps, batch_size=batch_size, lr=lr, seed=0)
    fns = {"ftkit": lambda: ftkit_loop(copy.deepcopy(base), data, **kw),
           "hand": lambda: hand_loop(copy.deepcopy(base), data, **kw)}
    fns["ftkit"]()  # warm-up (allocator, first-call costs), untimed
    fns["hand"]()
    reps = interleave(fns, repeats)
    diff = max_weight_diff(reps[0]["out"]["ftkit"], reps[0]["out"]["hand"])
    r = ratios(reps, "ftkit", "hand")
    return {
        "what": f"fit vs hand-written loop: {backbone} (ImageNet) at {image_size} px, Adam lr {lr}, "
                f"{steps} steps of batch {batch_size}, CPU fp32",
        "settings": dict(steps=steps, repeats=repeats, n_per_class=n_per_class, image_size=image_size,
                         batch_size=batch_size, lr=lr, backbone=backbone),
        "ftkit_s": seconds(reps, "ftkit"), "hand_s": seconds(reps, "hand"),
        "ratios": [round(x, 4) for x in r], "median_ratio": round(statistics.median(r), 4),
        "ms_per_step_extra": round(1000 * (statistics.median(seconds(reps, "ftkit"))
                                           - statistics.median(seconds(reps, "hand"))) / steps, 2),
        "max_weight_diff": diff, "load_per_repeat": [rep["load"] for rep in reps],
        "goal": f"<= {GOAL}x", "met": statistics.median(r) <= GOAL,
    }


def main(argv: list[str] | None = None) -> int:
    quick = quick_mode() or "--quick" in (argv or sys.argv[1:])
    res = run(steps=10, repeats=2, n_per_class=20) if quick else run()
    print(machine())
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
