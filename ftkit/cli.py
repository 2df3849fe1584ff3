"""The ``ftkit`` command: ``ftkit info`` and ``ftkit demo``.

An error prints one line, ``ftkit <command>: error: <what is wrong and the fix>``,
and exits with code 2, without a traceback; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import numpy as np
    import skimage.data
    import torch
    import torchvision

    import ftkit
    from ftkit.data.catalogue import list_datasets
    from ftkit.models.predict import classify
    from ftkit.models.zoo import EMBEDDED_BACKBONES, list_backbones, load_backbone

    print(f"ftkit {ftkit.__version__} | python {platform.python_version()} | torch {torch.__version__} "
          f"| torchvision {torchvision.__version__} | numpy {np.__version__}")
    cuda = torch.cuda.is_available()
    device = f"cuda ({torch.cuda.get_device_name(0)})" if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}")
    backbones = list_backbones()
    offline = backbones[backbones["available_offline"]]
    print(f"\nbackbones available offline now ({len(offline)} of {len(backbones)} known):")
    print(offline.to_string(index=False))
    print("\ndata sets:")
    print(list_datasets().drop(columns=["description"], errors="ignore").to_string(index=False))
    print("\nembedded models on the photos bundled with scikit-image (top-3):")
    photos = {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(), "astronaut": skimage.data.astronaut()}
    for name in EMBEDDED_BACKBONES:
        try:
            backbone = load_backbone(name)
        except Exception as err:  # shown, not fatal: info is a diagnosis tool
            print(f"  {name}: unavailable: {err}")
            continue
        for photo, preds in zip(photos, classify(backbone, list(photos.values()), top_k=3)):
            guesses = ", ".join(f"{c} {p:.2f}" for c, p in preds)
            print(f"  {name:<18} {photo:<10} -> {guesses}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ftkit.lab.executors import dask_executor
    from ftkit.lab.folders import RunFolderError, check_writable, create_run_dir, write_race
    from ftkit.lab.lr_rule import choose_lrs
    from ftkit.lab.race import STRATEGIES, make_strategies, race
    from ftkit.lab.specs import DataSpec
    from ftkit.viz.plots import save_race_figure

    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        print(f"error: unknown strategy {unknown}; choose from {list(STRATEGIES)}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be at least 1, not {args.workers}", file=sys.stderr)
        return 2
    if args.resume is not None and not (Path(args.resume) / "records").is_dir():
        print(f"error: {args.resume} is not a run folder with records to resume; pass the folder an "
              "interrupted `ftkit demo` printed (runs/demo-...)", file=sys.stderr)
        return 2
    try:
        check_writable(args.resume or args.out)  # now, not after the whole race
    except RunFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    data = DataSpec(args.data, n_per_class=args.n_per_class, image_size=args.image_size,
                    val_n_per_class=args.val_per_class)
    strategies = make_strategies(args.strategies, backbone=args.backbone, epochs=args.epochs,
                                 batch_size=args.batch_size, eval_every=args.eval_every, precise_bn=args.precise_bn)
    train, val = data.load()
    print(f"ftkit demo: {args.backbone} on {args.data} ({len(train)} train / {len(val)} val images, "
          f"{len(train.classes)} classes, {args.image_size}px), {args.epochs} epochs, seeds {args.seeds}")
    # Every strategy's LR by one written rule (never a hand-picked number): see ftkit.lab.lr_rule.
    choice = choose_lrs(strategies, data, grid=args.lr_grid, seeds=args.choice_seeds,
                        holdout_frac=args.holdout_frac, progress=not args.quiet)
    print(f"LR rule: {choice.rule}.")
    grid = choice.summary.pivot(index="strategy", columns="lr", values="holdout_acc_mean")
    print("held-out accuracy per LR (" + f"{choice.holdout_frac:.0%} of the training images; seeds "
          f"{list(args.choice_seeds)}):")
    print(grid.to_string(float_format=lambda v: f"{v:.3f}", header=[f"{lr:.0e}" for lr in grid.columns]))
    for name in choice.at_edge():
        print(f"  note: {name}'s LR is at the edge of the grid; try a wider --lr-grid")
    strategies = choice.apply(strategies)
    for s in strategies:
        print(f"  {s.name:<15} lr={s.lr:<8.0e} {s.description}")
    # Claimed now, filled as runs finish: an interrupted demo loses nothing (--resume FOLDER).
    folder = Path(args.resume) if args.resume else create_run_dir(args.out, "demo")
    print(f"  finished runs are recorded in {folder} as they complete (--resume {folder} finishes an "
          "interrupted demo)")
    if args.scheduler or args.workers:
        print(f"  runs on {args.scheduler or f'a local Dask cluster of {args.workers} worker processes'}")
        cluster = dask_executor(args.scheduler, workers=args.workers)
    else:
        cluster = contextlib.nullcontext(None)
    with cluster as executor:
        result = race(strategies, data, seeds=args.seeds, executor=executor, out=folder,
                      resume=args.resume is not None, progress=not args.quiet)
    summary = result.summary()
    table = summary.assign(
        lr=[f"{v:.0e}" for v in summary.lr],
        final_acc=[f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f} (one seed)"
                   for m, s in zip(summary.final_acc_mean, summary.final_acc_std)],
        steps_to_target=[f"{v:.0f}" if v == v else "never" for v in summary.steps_to_target_mean],
    )[["strategy", "lr", "final_acc", "steps_to_target", "reached_target", "time_s_mean"]]
    print(f"\nvalidation accuracy after {int(result.runs['steps'].max())} steps "
          f"(mean ± std over {len(args.seeds)} seeds); target for steps_to_target: {result.target_acc:.3f}")
    for r in result.runs[result.runs["stopped_reason"].notna()].itertuples():
        print(f"  note: {r.strategy} (seed {r.seed}) stopped early: {r.stopped_reason}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    write_race(result, folder=folder, draw=save_race_figure)
    means = dict(zip(summary.strategy, summary.final_acc_mean))
    if "finetune" in means and "scratch" in means:
        gap = means["finetune"] - means["scratch"]
        print(f"\nfine-tuned minus scratch: {gap:+.3f} accuracy")
    print(f"run folder: {folder}  ({time.perf_counter() - t0:.0f} s in all)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ftkit.lab.lr_rule import DEFAULT_GRID

    parser = argparse.ArgumentParser(prog="ftkit", description="Fine-tuning you can see: offline weights and data.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device, offline backbones and data sets, a real prediction")
    info.set_defaults(func=_info)
    demo = sub.add_parser("demo", help="scratch vs fine-tune vs linear probe, same budget, several seeds")
    demo.add_argument("--backbone", default="mobilenet_v2")
    demo.add_argument("--data", default="animals", help="a catalogue name or an ImageFolder path")
    demo.add_argument("--n-per-class", type=int, default=30, help="training images per class")
    demo.add_argument("--val-per-class", type=int, default=50, help="validation images per class")
    demo.add_argument("--image-size", type=int, default=64)
    demo.add_argument("--epochs", type=int, default=4)
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps (default: each epoch)")
    demo.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    demo.add_argument("--strategies", nargs="+", default=["scratch", "linear_probe", "finetune"])
    demo.add_argument("--lr-grid", type=float, nargs="+", default=list(DEFAULT_GRID),
                      help="Adam LRs every strategy tries; each gets the best on held-out training images")
    demo.add_argument("--choice-seeds", type=int, nargs="+", default=[0], help="seeds of the LR choice")
    demo.add_argument("--holdout-frac", type=float, default=0.25,
                      help="fraction of each class's training images held out to choose the LRs on")
    demo.add_argument("--out", default="runs", help="folder for run folders (never overwritten)")
    demo.add_argument("--resume", metavar="RUN_FOLDER", default=None,
                      help="finish an interrupted demo: reuse the runs recorded in this run folder, run the rest")
    where = demo.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run the runs on a Dask cluster (e.g. tcp://10.0.0.5:8786)")
    where.add_argument("--workers", type=int, default=None,
                       help="run the runs on a local Dask cluster of N worker processes (1 thread each)")
    demo.add_argument("--no-precise-bn", dest="precise_bn", action="store_false",
                      help="evaluate with BatchNorm's moving averages instead of statistics recomputed "
                           "for the current weights (shows why scratch collapses to one class)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for command in (info, demo):  # also after the command: `ftkit demo --debug`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
    return parser


class UsageError(ValueError):
    """Arguments that parse but make no sense together (checked before any work starts)."""


def _check_args(args: argparse.Namespace) -> None:
    if args.command != "demo":
        return
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:
        raise UsageError(
            f"--seeds {' '.join(map(str, args.seeds))} repeats {', '.join(map(str, repeated))}: a "
            "repeated seed is the same run twice and makes the spread look smaller than it is; "
            "give distinct seeds, e.g. --seeds 0 1 2")
    for flag in ("n_per_class", "val_per_class", "image_size", "epochs", "batch_size", "eval_every"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    from ftkit.models.zoo import check_backbone_name

    check_backbone_name(args.backbone)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if isinstance(err, UsageError) else f"{type(err).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        return args.func(args)
    except Exception as err:
        if args.debug:
            raise
        print(f"ftkit {args.command}: error: {_one_line(err)} (add --debug to see the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
