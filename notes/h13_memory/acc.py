"""tensor_fit.accuracy at batch 1000 vs 250: time and transient memory.  python notes/h13_memory/acc.py"""
import sys, time
sys.path.insert(0, "notes/h13_memory")
from _mem import Peak, trim
from ftkit.data.shifts import fashion_task
from ftkit.lab.tensor_fit import accuracy
from ftkit.models.zoo import load_backbone
peak = Peak()
task = fashion_task("A", "test", n_per_class=500)
model = load_backbone("fmnist_cnn", weights="A0").model
accuracy(model, task, batch_size=250)
for bs in (1000, 250, 1000, 250):
    trim(); b = peak.reset(); t = time.perf_counter()
    a = accuracy(model, task, batch_size=bs)
    print(f"batch {bs}: {time.perf_counter() - t:.3f} s, transient {peak.value - b} MB, acc {a:.4f}", flush=True)
