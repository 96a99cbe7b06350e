"""BN-Inception (Ioffe & Szegedy 2015) as ported to PyTorch by Cadene's ``pretrainedmodels`` and used by MLRC.

Built from a table of inception blocks instead of one line per layer, but every parameter and buffer keeps the
name it has in Cadene's ``bn_inception-52deb4733.pth`` (``conv1_7x7_s2.weight``, ``inception_3a_1x1_bn.running_mean``,
...), so that file loads onto this module directly (its ``last_linear`` classifier is dropped). Output: the
1024-d globally average-pooled features of block 5b.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# name, input channels, 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pooling, pool projection.
# Blocks without a 1x1 branch (3c, 4e) reduce the resolution: stride-2 3x3 convs and a stride-2 max pool.
_BLOCKS = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)

# The ImageNet weights were converted from Caffe: BGR input in [0, 255] minus the per-channel mean, std 1.
_BGR_MEAN = (104.0, 117.0, 128.0)


class BNInception(nn.Module):
    """Float RGB images in [0, 1], [B, 3, H, W] -> [B, 1024] (MLRC uses 227 x 227 crops)."""

    output_dim = 1024

    def __init__(self):
        super().__init__()
        self.register_buffer("bgr_mean", torch.tensor(_BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # Per block: the conv chains of its branches, then whether its pool branch has a projection.
        self._plan: list[tuple[str, list[list[str]], bool]] = []
        for name, c_in, c1, c3r, c3, cdr, cd, pool, proj in _BLOCKS:
            p = f"inception_{name}_"
            stride = 1 if c1 else 2
            branches = []
            if c1:
                branches.append([self._conv(p + "1x1", c_in, c1, 1)])
            branches.append([self._conv(p + "3x3_reduce", c_in, c3r, 1), self._conv(p + "3x3", c3r, c3, 3, stride)])
            branches.append([
                self._conv(p + "double_3x3_reduce", c_in, cdr, 1),
                self._conv(p + "double_3x3_1", cdr, cd, 3),
                self._conv(p + "double_3x3_2", cd, cd, 3, stride),
            ])
            if pool == "avg":
                pooling = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            else:
                pooling = nn.MaxPool2d(3, stride=stride, padding=1 if stride == 1 else 0, ceil_mode=True)
            self.add_module(p + "pool", pooling)
            if proj:
                self._conv(p + "pool_proj", c_in, proj, 1)
            self._plan.append((p, branches, bool(proj)))

    def _conv(self, name: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> str:
        self.add_module(name, nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2))
        self.add_module(name + "_bn", nn.BatchNorm2d(c_out))
        return name

    def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flip(1) * 255.0 - self.bgr_mean  # RGB [0, 1] -> BGR [0, 255] - mean
        x = self.pool1_3x3_s2(self._unit("conv1_7x7_s2", x))
        x = self.pool2_3x3_s2(self._unit("conv2_3x3", self._unit("conv2_3x3_reduce", x)))
        for p, branches, has_proj in self._plan:
            outputs = []
            for chain in branches:
                y = x
                for name in chain:
                    y = self._unit(name, y)
                outputs.append(y)
            y = getattr(self, p + "pool")(x)
            outputs.append(self._unit(p + "pool_proj", y) if has_proj else y)
            x = torch.cat(outputs, dim=1)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
