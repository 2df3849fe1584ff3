"""Benchmark: regenerate the shipped source networks and check them against the manifest.

Trains every network of ``ftkit/models/weights/manifest.json`` again (same
recipe, same seeds) into a temporary folder, and reports per network the
shipped and the regenerated test accuracy, their difference, whether the weights
are identical tensor for tensor (they are on the same torch version and thread
count; other BLAS builds may differ in the last bits; the files' bytes differ
anyway, as torch.save records the temporary file's name), and the time. Fails (exit 1) when an
accuracy differs by more than ``--tolerance`` (default 0.01 = 1 point).

    OMP_NUM_THREADS=1 python bench/bench_source_nets.py            # all six, ~1 min each on one core
    python bench/bench_source_nets.py --prefixes A --seeds 0       # one network
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from ftkit.lab.source_nets import SourceRecipe, train_all
from ftkit.models.smallcnn import load_source_net, read_manifest


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefixes", default="ABC")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--tolerance", type=float, default=0.01)
    args = ap.parse_args(argv)
    shipped = read_manifest()
    recipe = SourceRecipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in shipped["recipe"].items()})
    worst = 0.0
    print(f"{'net':4} {'shipped':>8} {'regen':>8} {'diff':>7} {'same weights':>12} {'time_s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = train_all(Path(tmp), args.prefixes, tuple(args.seeds), recipe, command="bench")
        for name, e in fresh["nets"].items():
            ship = shipped["nets"][name]
            diff = e["test_acc"] - ship["test_acc"]
            worst = max(worst, abs(diff))
            same = _same(load_source_net(name).model, load_source_net(name, weights_dir=Path(tmp)).model)
            print(f"{name:4} {ship['test_acc']:8.4f} {e['test_acc']:8.4f} {diff:+7.4f} "
                  f"{str(same):>12} {e['train_time_s']:7.1f}")
    ok = worst <= args.tolerance
    print(f"largest accuracy difference {worst:.4f} (tolerance {args.tolerance}): {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
