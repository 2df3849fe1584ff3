"""evaluate() at batch 256/128/64/32: time and transient anonymous memory.  python notes/h13_memory/ev.py 64"""
import os, sys, time
sys.path.insert(0, os.path.dirname(__file__))
from _mem import Peak, anon, trim
from ftkit.lab.race import build_model, STRATEGIES
from ftkit.lab.specs import DataSpec
from ftkit.training.loop import evaluate
peak = Peak()
spec = DataSpec("animals", n_per_class=30, image_size=int(sys.argv[1]), val_n_per_class=50)
train, val = spec.load()
m = build_model(STRATEGIES["finetune"], 10)
evaluate(m, val, batch_size=64)
for bs in (256, 128, 64, 32, 256, 128, 64, 32):
    trim(); b = peak.reset(); t=time.perf_counter()
    r = evaluate(m, val, batch_size=bs)
    print(f"bs {bs}: {time.perf_counter()-t:.2f}s transient {peak.value-b} MB acc {r['acc']:.4f} loss {r['loss']:.6f}", flush=True)
