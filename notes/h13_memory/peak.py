"""Anonymous MB before / peak / after each run_one, with or without malloc_trim after it.
python notes/h13_memory/peak.py notrim|trim"""
import os, sys, gc
sys.path.insert(0, os.path.dirname(__file__))
from _mem import Peak, anon, trim as malloc_trim
from ftkit.lab.race import make_strategies
from ftkit.lab.runs import run_one
from ftkit.lab.specs import DataSpec, RunSpec
peak = Peak(0.02)
trim = sys.argv[1] == "trim"
spec = DataSpec("animals", n_per_class=30, image_size=64, val_n_per_class=50)
strategies = make_strategies(["scratch", "linear_probe", "finetune"], epochs=2)
for i in range(2):
    for s in strategies:
        base = peak.reset()
        r = run_one(RunSpec(s, spec, 0))
        gc.collect()
        if trim: malloc_trim()
        print(f"{s.name:13} before {base} peak {peak.value} after {anon()}", flush=True)
