"""A tiny, learnable image task shared by the training tests (not collected: no test_ prefix).

Quadrants: 3x16x16 noise whose class (0-3) is the brighter quadrant; TinyNet
learns it in a few dozen CPU steps.
"""
import torch
from torch import nn
from torch.utils.data import Dataset

FAST = dict(progress=False, device="cpu")


class Quadrants(Dataset):
    """3x16x16 noise; the class (0-3) is the quadrant made brighter. Learnable by a tiny CNN."""

    def __init__(self, n: int, seed: int = 0, shift: float = 0.5):
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(0, 4, (n,), generator=g).numpy()
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        for i, c in enumerate(self.targets):
            r, q = divmod(int(c), 2)
            self.x[i, :, 8 * r:8 * r + 8, 8 * q:8 * q + 8] += shift

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


class TinyNet(nn.Module):
    def __init__(self, bn: bool = True, dropout: float = 0.0):
        super().__init__()
        norm = nn.BatchNorm2d(8) if bn else nn.Identity()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm, nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):                          # (B, 3, 16, 16) -> (B, 4)
        return self.fc(self.drop(self.features(x).flatten(1)))


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyNet(**kw)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
