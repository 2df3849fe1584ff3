"""Cost of the divergence guard's "every weight finite" check, per step, on ResNet-18 (11.7M parameters).

    OMP_NUM_THREADS=1 python notes/h13_memory/finite.py
"""
import math
import time

import torch
import torchvision

from ftkit.core.state import all_finite

torch.set_num_threads(1)
params = [p.detach() for p in torchvision.models.resnet18(num_classes=10).parameters()]


def ms(f, n=30):
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


inf_norm = lambda: bool(torch.isfinite(torch.nn.utils.get_total_norm(params, norm_type=math.inf)))  # noqa: E731
each = lambda: all(bool(torch.isfinite(p).all()) for p in params)  # noqa: E731
print(f"inf-norm (get_total_norm, the check before):  {ms(inf_norm):6.2f} ms")
print(f"isfinite(t).all() per tensor:                 {ms(each):6.2f} ms")
print(f"all_finite (one float32 sum per tensor, now): {ms(lambda: all_finite(params)):6.2f} ms")
