"""Regenerate the source networks that ship in ftkit/models/weights (one command).

    OMP_NUM_THREADS=1 python scripts/train_source_nets.py            # all six: A0 A1 B0 B1 C0 C1
    python scripts/train_source_nets.py --out /tmp/nets --prefixes A --seeds 0

Trains ``ftkit.models.smallcnn.SmallCNN`` on Fashion-MNIST with the one recipe
in ``ftkit.lab.source_nets.SourceRecipe`` (fixed seeds), writes each network's
weights atomically and then ``manifest.json`` (task, classes, seed, measured
test accuracy, training time, this command, sha256 of every file).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ftkit.lab.source_nets import SourceRecipe, train_all
from ftkit.models.smallcnn import WEIGHTS_DIR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for the .pt files and manifest.json")
    ap.add_argument("--prefixes", default="ABC", help="which source tasks: any of A, B, C")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--n-per-class", type=int, default=SourceRecipe.n_per_class)
    ap.add_argument("--epochs", type=int, default=SourceRecipe.epochs)
    args = ap.parse_args(argv)
    bad = set(args.prefixes) - set("ABC")
    if bad or not args.prefixes:
        ap.error(f"--prefixes must be letters from ABC, got {args.prefixes!r}")
    recipe = SourceRecipe(n_per_class=args.n_per_class, epochs=args.epochs)
    command = "python scripts/train_source_nets.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    manifest = train_all(args.out, args.prefixes, tuple(args.seeds), recipe, command.strip())
    for name, e in manifest["nets"].items():
        print(f"{name}: {e['description']}, seed {e['seed']}: test accuracy {e['test_acc']:.4f} "
              f"({e['test_images']} images), {e['train_time_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
