"""Benchmark: how long lesson 03's feature explorer takes to redraw (the goal: under 2 s on a laptop CPU).

Activation maps of MobileNetV2 (ImageNet weights, embedded offline) are computed
once for a batch of photo crops; then every depth, the first image's top
channels and a second image are drawn as the widget's controls would, and the
wall and CPU time of each redraw are printed with the load average beside them
(a busy machine inflates wall time, not CPU time).

    .venv/bin/python bench/bench_feature_widgets.py --image-size 96 --images 8
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from ftkit.analysis.activations import activation_maps
from ftkit.data.catalogue import load_dataset
from ftkit.models.zoo import load_backbone
from ftkit.viz.feature_widgets import FeatureExplorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    bb = load_backbone("mobilenet_v2")
    data = load_dataset("photo_crops", "test", n_per_class=1, image_size=args.image_size, mean=bb.mean, std=bb.std)
    import torch

    images = torch.stack([data[i][0] for i in range(min(args.images, len(data)))])
    t0 = time.perf_counter()
    acts = activation_maps(bb.model, images)
    print(f"activation maps once: {time.perf_counter() - t0:.2f} s for {len(images)} images at {args.image_size} px")
    ex = FeatureExplorer(acts, mean=bb.mean, std=bb.std)
    wall, cpu = [], []
    for group in acts.groups:
        ex.depth.value = group
        wall.append(ex.last_redraw_s)
        cpu.append(ex.last_redraw_cpu_s)
        for choice in (ex.channel.options[1][1], ex.channel.options[2][1]):
            ex.channel.value = choice
            wall.append(ex.last_redraw_s)
            cpu.append(ex.last_redraw_cpu_s)
    ex.image_pick.value = 1
    wall.append(ex.last_redraw_s)
    cpu.append(ex.last_redraw_cpu_s)
    print(f"{len(wall)} redraws: wall median {statistics.median(wall):.2f} s, max {max(wall):.2f} s; "
          f"CPU median {statistics.median(cpu):.2f} s, max {max(cpu):.2f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
