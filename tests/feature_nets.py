"""Small CNNs with layer groups for the feature-analysis tests (not collected: no test_ prefix)."""
import torch
from torch import nn
from torch.utils.data import Dataset


class Stages(nn.Module):
    """stem (3x3 conv, stride 1) -> two 3x3 stride-2 stages -> pooled linear head: groups stem, s1, s2, head."""

    def __init__(self, classes: int = 4, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.s1 = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.s2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):                                   # (B, 3, S, S) -> (B, classes)
        return self.head(self.s2(self.s1(self.stem(x))).mean(dim=(2, 3)))


def stages(seed: int = 0, **kw) -> Stages:
    torch.manual_seed(seed)
    return Stages(**kw).eval()


class Spots(Dataset):
    """Grey noise images; item ``hot`` has a bright 3x3 spot at ``(r, c)``."""

    def __init__(self, n: int = 12, size: int = 16, hot: int = 5, r: int = 10, c: int = 4):
        g = torch.Generator().manual_seed(0)
        self.x = 0.1 * torch.randn(n, 3, size, size, generator=g)
        self.x[hot, :, r - 1:r + 2, c - 1:c + 2] = 5.0
        self.targets = [i % 2 for i in range(n)]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]
