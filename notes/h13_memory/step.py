"""Transient anonymous memory of loading data, one training step, one eval batch, one fit.  python notes/h13_memory/step.py"""
import os, sys, time
import torch
sys.path.insert(0, os.path.dirname(__file__))
from _mem import Peak, anon, trim
from ftkit.lab.race import build_model, STRATEGIES
from ftkit.lab.specs import DataSpec
peak = Peak()
spec = DataSpec("animals", n_per_class=30, image_size=64, val_n_per_class=50)
trim(); b = peak.reset()
train, val = spec.load()
trim(); print("data load: base", b, "peak", peak.value, "after", anon())
m = build_model(STRATEGIES["finetune"], 10)
opt = torch.optim.Adam(m.parameters(), 3e-4)
x = torch.stack([train[i][0] for i in range(32)]); y = torch.tensor([train[i][1] for i in range(32)])
for bs in (32,):
    trim(); b = peak.reset()
    loss = torch.nn.functional.cross_entropy(m(x[:bs]), y[:bs]); loss.backward(); opt.step(); opt.zero_grad()
    time.sleep(0.05); print("train step bs", bs, "base", b, "peak", peak.value)
trim(); b = peak.reset()
with torch.no_grad():
    m.eval(); xs = torch.stack([val[i][0] for i in range(64)]); m(xs)
time.sleep(0.05); print("eval 64: base", b, "peak", peak.value)
from ftkit.training.loop import fit
trim(); b = peak.reset()
fit(m, train, val, epochs=1, lr=3e-4, optimizer="adam", progress=False, precise_bn=True)
time.sleep(0.05); print("fit: base", b, "peak", peak.value, "after", anon()); trim(); print("after trim", anon())
