"""Lesson 09's memory, run by run: ``python notes/h13_memory/lab.py [trim] [lpft|yos|surg]``.

Prints anonymous MB after imports, after the data caches fill, then per run of the
chosen reproduction at full settings (before / peak / after); ``trim`` hands freed
memory back (malloc_trim) after every run.
"""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _mem import Peak, anon, trim  # noqa: E402

import torch  # noqa: E402

from ftkit.data import shifts  # noqa: E402
from ftkit.lab import transfer_lab as tl  # noqa: E402

torch.set_num_threads(1)
peak = Peak()
print("after imports", anon(), flush=True)
do_trim = "trim" in sys.argv[1:]
which = next((a for a in sys.argv[1:] if a in ("lpft", "yos", "surg")), "lpft")
setting = tl.FULL
real = tl.run_transfer


def measured(run):
    before = peak.reset()
    row = real(run)
    if do_trim:
        trim()
    print(f"{run.strategy:6} {run.target:18} lr={run.lr:g} seed={run.seed} split={run.split}: "
          f"before {before} peak {peak.value} after {anon()}", flush=True)
    return row


tl.run_transfer = measured
if which == "lpft":
    tl.lp_ft(setting, source="A")
elif which == "yos":
    tl.yosinski(setting)
else:
    tl.surgical(setting, shifts=("noise", "blur", "subpopulation"))
print("cache:", shifts._fashion.cache_info(), "end", anon(), flush=True)
