import threading, time, ctypes, sys, gc
from ftkit.lab.race import make_strategies
from ftkit.lab.runs import run_one
from ftkit.lab.specs import DataSpec, RunSpec
def anon():
    return [int(l.split()[1])//1024 for l in open("/proc/self/status") if l.startswith("RssAnon")][0]
peak = [0]
def poll():
    while True:
        peak[0] = max(peak[0], anon()); time.sleep(0.02)
threading.Thread(target=poll, daemon=True).start()
trim = sys.argv[1] == "trim"
spec = DataSpec("animals", n_per_class=30, image_size=64, val_n_per_class=50)
strategies = make_strategies(["scratch", "linear_probe", "finetune"], epochs=2)
for i in range(2):
    for s in strategies:
        peak[0] = 0; base = anon()
        r = run_one(RunSpec(s, spec, 0))
        gc.collect()
        if trim: ctypes.CDLL("libc.so.6").malloc_trim(0)
        print(f"{s.name:13} before {base} peak {peak[0]} after {anon()}", flush=True)
