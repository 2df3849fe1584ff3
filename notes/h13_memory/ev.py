import threading, time, ctypes, gc, torch, sys
from ftkit.lab.race import build_model, STRATEGIES
from ftkit.lab.specs import DataSpec
from ftkit.training.loop import evaluate
def anon():
    return [int(l.split()[1])//1024 for l in open("/proc/self/status") if l.startswith("RssAnon")][0]
peak = [0]
def poll():
    while True:
        peak[0] = max(peak[0], anon()); time.sleep(0.005)
threading.Thread(target=poll, daemon=True).start()
def trim(): gc.collect(); ctypes.CDLL("libc.so.6").malloc_trim(0)
spec = DataSpec("animals", n_per_class=30, image_size=int(sys.argv[1]), val_n_per_class=50)
train, val = spec.load()
m = build_model(STRATEGIES["finetune"], 10)
evaluate(m, val, batch_size=64)
for bs in (256, 128, 64, 32, 256, 128, 64, 32):
    trim(); b = anon(); peak[0] = 0; t=time.perf_counter()
    r = evaluate(m, val, batch_size=bs)
    print(f"bs {bs}: {time.perf_counter()-t:.2f}s transient {peak[0]-b} MB acc {r['acc']:.4f} loss {r['loss']:.6f}", flush=True)
