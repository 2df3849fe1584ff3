"""Benchmark 3: fastai's ``fine_tune`` vs ftkit, and fastai's ``lr_find`` vs ftkit's.

Runs inside the fastai virtualenv that ``bench/fastai_env.sh`` makes beside the
project's torch (``make bench`` builds it), so fastai and ftkit train in one
process on one machine, repeats interleaved. For each seed all three runs get
the same data split (``animals``, the same train/val subsets at the same image
size), the same starting model (the embedded ImageNet MobileNetV2 with a new
10-class head initialised by the seed), the same batch size and the same
number of epochs:

* **fastai**: ``Learner(dls, model, splitter=[body, head], metrics=accuracy)``
  with its default optimizer (Adam, betas 0.9/0.99, eps 1e-5, decoupled weight
  decay 0.01), ``fine_tune(E, base_lr=2e-3)``: one frozen one-cycle epoch
  (head + the body's BatchNorm weights train, pct_start 0.99), then unfrozen
  one-cycle over E epochs at ``slice(1e-3/100, 1e-3)`` (pct_start 0.3, div 5).
* **ftkit, identical recipe** ("fine_tune through fit"): the same two phases
  written with ``ftkit.fit``: one AdamW (the same betas, eps, weight decay)
  over two param groups [body, head] kept across both phases, the same
  trainable parameters in each phase, and ``torch.optim.lr_scheduler.OneCycleLR``
  with fastai's pct_start, div and final div as fit's callable schedule.
* **ftkit, its own recipe** (``lp_ft``): ``ftkit.lab.runs.run_one`` on a
  Strategy whose probe phase is the race's ``linear_probe`` training spec
  (Adam 1e-2, 1 epoch, head only) and whose main phase is the race's
  ``finetune`` spec (Adam 3e-4, constant, E epochs, precise BN), i.e. ftkit's
  linear-probe-then-fine-tune with the LRs the race's written rule picked.
* **ftkit, its own recipe without precise BN** (``lp_ft_plain``): the same with
  ``precise_bn=False`` in both phases, to show what precise BN's extra forward
  passes (before each evaluation) cost and what they buy.

Wall times cover building the model and training with a validation pass per
epoch in all three. Figures: median time ratio ftkit / fastai and the mean
accuracy difference (goal: ratio <= 1.0 at equal or better accuracy).

``lr_find``: fastai's ``Learner.lr_find`` (1e-7..10, 100 steps, beta 0.98,
stop at 4x best, ``valley``/``minimum``/``steep``) vs ``ftkit.lr.finder.lr_find``
with the same settings on the same model, data and optimizer: times and
suggestions.

    .venv-fastai/bin/python -m bench.bench_fastai --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import statistics
import sys
import time
import warnings

import torch
from torch import nn
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, Subset

from bench.common import load, machine, quick_mode, write_json
from ftkit.lab.race import STRATEGIES
from ftkit.lab.runs import build_model, run_one
from ftkit.lab.specs import DataSpec, ModelSpec, RunSpec, Strategy
from ftkit.lr.finder import lr_find
from ftkit.models.head_find import find_head_block
from ftkit.training.loop import fit

BASE_LR, LR_MULT, FREEZE_PCT, PCT, DIV, DIV_FINAL = 2e-3, 100, 0.99, 0.3, 5.0, 1e5
BETAS, EPS, WD = (0.9, 0.99), 1e-5, 0.01


def split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(body parameters, head parameters): fastai's splitter and ftkit's two groups."""
    head = find_head_block(model)
    head_ids = {id(p) for p in model.get_submodule(head).parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    return body, [p for p in model.parameters() if id(p) in head_ids]


def bn_params(model: nn.Module) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters()}


def one_cycle(max_lrs: list[float], pct: float, div: float):
    """fit's callable schedule: fastai's fit_one_cycle (cosine up then down, momentum 0.95-0.85-0.95)."""
    return lambda opt, total: lr_scheduler.OneCycleLR(opt, max_lr=max_lrs, total_steps=total, pct_start=pct,
                                                      div_factor=div, final_div_factor=DIV_FINAL / div,
                                                      base_momentum=0.85, max_momentum=0.95)


def ftkit_identical(train, val, *, epochs: int, batch_size: int, seed: int) -> float:
    """fastai's fine_tune recipe written with ftkit.fit; returns the final validation accuracy."""
    model = build_model(ModelSpec(), 10, seed=seed)
    body, head = split(model)
    opt = torch.optim.AdamW([{"params": body, "name": "body"}, {"params": head, "name": "head"}],
                            lr=BASE_LR, betas=BETAS, eps=EPS, weight_decay=WD)
    bn = bn_params(model)
    for p in body:  # frozen phase: head + the body's BatchNorm weights (fastai's train_bn=True)
        p.requires_grad_(id(p) in bn)
    kw = dict(batch_size=batch_size, seed=seed, device="cpu", amp=False, precise_bn=False, progress=False)
    fit(model, train, val, optimizer=opt, epochs=1, schedule=one_cycle([BASE_LR, BASE_LR], FREEZE_PCT, 25.0), **kw)
    for p in body:
        p.requires_grad_(True)
    lr = BASE_LR / 2
    h = fit(model, train, val, optimizer=opt, epochs=epochs, schedule=one_cycle([lr / LR_MULT, lr], PCT, DIV), **kw)
    return float(h.evals[-1]["val_acc"])


def ftkit_own(data: DataSpec, *, epochs: int, batch_size: int, seed: int, precise_bn: bool = True) -> float:
    """ftkit's linear probe then fine-tune (the race's LRs); returns the final validation accuracy."""
    kw = dict(batch_size=batch_size, device="cpu", precise_bn=precise_bn)
    probe = STRATEGIES["linear_probe"].train.replace(epochs=1, **kw)
    main = STRATEGIES["finetune"].train.replace(epochs=epochs, **kw)
    strategy = Strategy("lp_ft", ModelSpec(), main, probe=probe, description="linear probe, then fine-tune")
    return float(run_one(RunSpec(strategy, data, seed)).final_acc)


def fastai_learner(train, val, *, batch_size: int, seed: int):
    import fastai.callback.progress  # noqa: F401 (patches Learner.no_bar, as fastai.vision.all does)
    import fastai.callback.schedule  # noqa: F401 (patches Learner.fine_tune, fit_one_cycle, lr_find)
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import accuracy

    model = build_model(ModelSpec(), 10, seed=seed)
    dls = DataLoaders(DataLoader(train, batch_size=batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(seed)),
                      DataLoader(val, batch_size=2 * batch_size))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, splitter=lambda m: list(split(m)))


def fastai_fine_tune(train, val, *, epochs: int, batch_size: int, seed: int) -> float:
    learn = fastai_learner(train, val, batch_size=batch_size, seed=seed)
    torch.manual_seed(seed)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs, base_lr=BASE_LR)
    return float(learn.recorder.values[-1][2])


def compare_fine_tune(data: DataSpec, *, epochs: int, batch_size: int, seeds: int) -> dict:
    train, val = data.load()
    runs = {"fastai": lambda s: fastai_fine_tune(train, val, epochs=epochs, batch_size=batch_size, seed=s),
            "ftkit_identical": lambda s: ftkit_identical(train, val, epochs=epochs, batch_size=batch_size, seed=s),
            "ftkit_own": lambda s: ftkit_own(data, epochs=epochs, batch_size=batch_size, seed=s),
            "ftkit_own_plain": lambda s: ftkit_own(data, epochs=epochs, batch_size=batch_size, seed=s,
                                                   precise_bn=False)}
    tiny_train = Subset(train, range(min(len(train), 2 * batch_size)))
    tiny_val = Subset(val, range(min(len(val), batch_size)))
    for name in ("fastai", "ftkit_identical"):  # warm-up on two batches (imports, first-call costs), untimed
        (fastai_fine_tune if name == "fastai" else ftkit_identical)(tiny_train, tiny_val, epochs=1,
                                                                     batch_size=batch_size, seed=0)
    rows = []
    for seed in range(seeds):
        names = list(runs) if seed % 2 == 0 else list(runs)[::-1]
        row = {"seed": seed}
        for name in names:
            t0 = time.perf_counter()
            row[f"{name}_acc"] = round(runs[name](seed), 4)
            row[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        row["load"] = load()[0]
        rows.append(row)
    out = {"per_seed": rows}
    for name in ("ftkit_identical", "ftkit_own", "ftkit_own_plain"):
        r = [row[f"{name}_s"] / row["fastai_s"] for row in rows]
        d = [row[f"{name}_acc"] - row["fastai_acc"] for row in rows]
        out[name] = {"time_ratios": [round(x, 3) for x in r], "median_time_ratio": round(statistics.median(r), 3),
                     "acc_diffs": [round(x, 4) for x in d], "mean_acc_diff": round(statistics.mean(d), 4),
                     "met": statistics.median(r) <= 1.0 and statistics.mean(d) >= 0}
    out["fastai_mean_acc"] = round(statistics.mean(row["fastai_acc"] for row in rows), 4)
    return out


def compare_lr_find(data: DataSpec, *, batch_size: int, num_iter: int, seed: int = 0) -> dict:
    from fastai.callback.schedule import minimum, steep, valley

    train, _ = data.load()
    learn = fastai_learner(train, train, batch_size=batch_size, seed=seed)
    start = copy.deepcopy(learn.model.state_dict())
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(seed)
        found = learn.lr_find(num_it=num_iter, suggest_funcs=(valley, minimum, steep), show_plot=False)
    t_fastai = time.perf_counter() - t0
    model = build_model(ModelSpec(), 10, seed=seed)
    model.load_state_dict(start)
    body, head = split(model)
    opt = torch.optim.AdamW([{"params": body}, {"params": head}], lr=1e-3, betas=BETAS, eps=EPS, weight_decay=WD)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lr_find(model, loader, optimizer=opt, start_lr=1e-7, end_lr=10.0, num_iter=num_iter, beta=0.98,
                      diverge_factor=4.0, device="cpu", amp=False, rules=["valley", "minimum", "steep"])
    t_ftkit = time.perf_counter() - t0
    ours = {k: (s.lr if s.ok else None) for k, s in res.suggestions.items()}
    theirs = {"valley": float(found.valley), "minimum": float(found.minimum), "steep": float(found.steep)}
    decades = {k: round(abs(math.log10(ours[k] / theirs[k])), 3) for k in theirs if ours.get(k)}
    return {"fastai_s": round(t_fastai, 3), "ftkit_s": round(t_ftkit, 3), "time_ratio": round(t_ftkit / t_fastai, 3),
            "fastai": theirs, "ftkit": ours, "decades_apart": decades, "num_iter": num_iter}


def run(*, n_per_class: int = 50, val_per_class: int = 30, image_size: int = 64, epochs: int = 3,
        batch_size: int = 32, seeds: int = 3, lr_iter: int = 100) -> dict:
    import fastai

    data = DataSpec("animals", n_per_class=n_per_class, image_size=image_size, val_n_per_class=val_per_class)
    res = {"what": f"fastai {fastai.__version__} fine_tune({epochs}, base_lr={BASE_LR}) vs ftkit, animals "
                   f"{n_per_class}/class train, {val_per_class}/class val, {image_size} px, batch {batch_size}, "
                   f"{seeds} seeds, CPU",
           "settings": dict(n_per_class=n_per_class, val_per_class=val_per_class, image_size=image_size,
                            epochs=epochs, batch_size=batch_size, seeds=seeds, lr_iter=lr_iter),
           "fastai_version": fastai.__version__, "machine": machine()}
    res.update(compare_fine_tune(data, epochs=epochs, batch_size=batch_size, seeds=seeds))
    res["lr_find"] = compare_lr_find(data, batch_size=batch_size, num_iter=lr_iter)
    res["goal"] = "ftkit / fastai time <= 1.0 at equal or better accuracy"
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    quick = args.quick or quick_mode()
    res = run(n_per_class=6, val_per_class=4, image_size=32, epochs=1, seeds=1, lr_iter=20) if quick else run()
    if args.json:
        write_json(args.json, res)
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
