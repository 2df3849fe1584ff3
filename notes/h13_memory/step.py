import threading, time, ctypes, gc, torch
from ftkit.lab.race import build_model, STRATEGIES
from ftkit.lab.specs import DataSpec
def anon():
    return [int(l.split()[1])//1024 for l in open("/proc/self/status") if l.startswith("RssAnon")][0]
peak = [0]
def poll():
    while True:
        peak[0] = max(peak[0], anon()); time.sleep(0.005)
threading.Thread(target=poll, daemon=True).start()
def trim(): gc.collect(); ctypes.CDLL("libc.so.6").malloc_trim(0)
spec = DataSpec("animals", n_per_class=30, image_size=64, val_n_per_class=50)
trim(); b=anon(); peak[0]=0
train, val = spec.load()
trim(); print("data load: base", b, "peak", peak[0], "after", anon())
m = build_model(STRATEGIES["finetune"], 10)
opt = torch.optim.Adam(m.parameters(), 3e-4)
x = torch.stack([train[i][0] for i in range(32)]); y = torch.tensor([train[i][1] for i in range(32)])
for bs in (32,):
    trim(); b = anon(); peak[0] = 0
    loss = torch.nn.functional.cross_entropy(m(x[:bs]), y[:bs]); loss.backward(); opt.step(); opt.zero_grad()
    time.sleep(0.05); print("train step bs", bs, "base", b, "peak", peak[0])
trim(); b = anon(); peak[0] = 0
with torch.no_grad():
    m.eval(); xs = torch.stack([val[i][0] for i in range(64)]); m(xs)
time.sleep(0.05); print("eval 64: base", b, "peak", peak[0])
from ftkit.training.loop import fit
trim(); b = anon(); peak[0] = 0
fit(m, train, val, epochs=1, lr=3e-4, optimizer="adam", progress=False, precise_bn=True)
time.sleep(0.05); print("fit: base", b, "peak", peak[0], "after", anon()); trim(); print("after trim", anon())
