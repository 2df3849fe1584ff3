"""Memory of each corruption of lesson 09 on task B's 2,500 test images, and of scoring them:
``python notes/h13_memory/corruptions.py`` (anonymous MB before / peak / after each)."""
import sys
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _mem import Peak, anon, trim
import torch
torch.set_num_threads(1)
from ftkit.data.shifts import corrupt, fashion_task
from ftkit.lab.tensor_fit import accuracy
from ftkit.models.smallcnn import SmallCNN
peak = Peak()
test = fashion_task("B", "test", n_per_class=500, seed=0)
trim()
m = SmallCNN(5).eval()
for c in ["noise", "blur", "invert", "rotate", "acc"]:
    b = peak.reset()
    if c == "acc":
        accuracy(m, test)
    else:
        y = corrupt(test.X, c, 0.5, seed=2000); del y
    print(c, "before", b, "peak", peak.value, "after", anon(), flush=True)
    trim()
