"""How much a process keeps for each new batch size it has trained and evaluated: oneDNN's per-shape state.

    OMP_NUM_THREADS=1 python notes/h13_memory/onednn_shapes.py            # oneDNN on (PyTorch's default)
    MKLDNN=0 OMP_NUM_THREADS=1 python notes/h13_memory/onednn_shapes.py   # off: about 5x slower a step

mobilenet_v2 at 64 px (lesson 07's network and size), one training step and one evaluation at each batch size
from 1 to 40, the heap trimmed after each; anonymous MB above the level after the first steps. Also
``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`` (oneDNN keeps no primitives).
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _mem import anon  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402

from ftkit.core.torchutil import release_freed_memory  # noqa: E402

torch.set_num_threads(1)
torch.backends.mkldnn.enabled = os.environ.get("MKLDNN", "1") == "1"
model = torchvision.models.mobilenet_v2(num_classes=10)


def step(batch: int, train: bool = True) -> None:
    x = torch.randn(batch, 3, 64, 64)
    if train:
        model.train()
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)
    else:
        model.eval()
        with torch.no_grad():
            model(x)


step(32)
t0 = time.perf_counter()
for _ in range(3):
    step(32)
print(f"one training step at batch 32: {(time.perf_counter() - t0) / 3:.2f} s", flush=True)
release_freed_memory()
base = anon()
print(f"oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}; after one step {base} MB anonymous", flush=True)
for batch in range(1, 41):
    step(batch)
    step(batch, train=False)
    release_freed_memory()
    if batch % 5 == 0:
        print(f"{batch} batch sizes seen: +{anon() - base} MB", flush=True)
