"""Images per second of ``ImageSet`` with the decoded-image cache (warm) against a plain PIL + torchvision pipeline.

A folder of CUB-sized JPEGs (~500 x 375, smooth shapes plus sensor-like noise, so they compress like photographs)
is generated once; the MLRC training transform (resize 256, random-resized crop 227, flip; uint8 out) is applied in
every case. "Plain" is what an ``ImageFolder`` user writes: PIL decodes the JPEG, torchvision's v2 transforms run on
the PIL image, ``PILToTensor`` last -- the baseline of the target. "Uncached" is our ``ImageSet`` over a cache that
keeps nothing (no folder, zero memo), so every access decodes and resizes the JPEG. "Cached" is a warm cache as the
trainer uses it from the second epoch on (arrays from the in-process memo); "disk" reads the cache's ``.npy`` files
(memory-mapped, as a DataLoader worker does). Passes alternate so a neighbour's load on a shared CPU hits all alike.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.config import protocol_for
from benchmark.data.cache import DecodedImageCache, decode_image
from benchmark.data.images import ImageSet
from benchmark.data.transforms import train_transform
from benchmark.training.threads import torch_threads


def make_jpegs(directory: Path, count: int, seed: int = 0, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """``count`` JPEGs (quality 90) of ``size`` with random orientation, like CUB200's photographs."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    for i in range(count):
        cx, cy, r = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(40, 200)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        base = rng.uniform(0, 255, 3) * (1 - blob) + rng.uniform(0, 255, 3) * blob
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if i % 3 == 0:  # a third in portrait orientation
            image = image.transpose(Image.Transpose.ROTATE_90)
        path = directory / f"{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


class _PlainImageFolder(torch.utils.data.Dataset):
    """PIL decode + torchvision v2 on the PIL image, as torchvision's ImageFolder examples do."""

    def __init__(self, paths, labels, protocol):
        from torchvision.transforms import v2

        self.paths, self.labels = paths, labels
        self.transform = v2.Compose([
            v2.Resize(protocol.resize, antialias=True),
            v2.RandomResizedCrop(protocol.crop, scale=tuple(protocol.rrc_scale), ratio=tuple(protocol.rrc_ratio),
                                 antialias=True),
            v2.RandomHorizontalFlip(protocol.hflip),
            v2.PILToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        return self.transform(decode_image(self.paths[index])), int(self.labels[index])


def _images_per_second(dataset) -> float:
    started = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return len(dataset) / (time.perf_counter() - started)


def compare(workdir: Path, count: int = 200, repeats: int = 3, seed: int = 0) -> dict:
    """Images/s of the three variants (medians over ``repeats`` alternating passes) and the cached/uncached ratio."""
    with torch_threads(1):  # like one DataLoader worker; see training_loop for why one thread on a shared CPU
        return _compare(Path(workdir), count, repeats, seed)


def _compare(workdir: Path, count: int, repeats: int, seed: int) -> dict:
    protocol = protocol_for("mlrc")
    paths = make_jpegs(workdir / "jpegs", count, seed)
    labels = np.arange(count) % 10
    transform = train_transform(protocol)
    warm = DecodedImageCache(workdir / "root", protocol.resize)
    sets = {
        "plain": _PlainImageFolder(paths, labels, protocol),
        "uncached": ImageSet(paths, labels, transform, DecodedImageCache(None, protocol.resize, memo_bytes=0)),
        "cached": ImageSet(paths, labels, transform, warm),
        # Shares the cache folder written by the warm-up below, but keeps nothing in memory.
        "disk": ImageSet(paths, labels, transform, DecodedImageCache(workdir / "root", protocol.resize, memo_bytes=0)),
    }
    torch.manual_seed(seed)
    _images_per_second(sets["cached"])  # warm-up: decodes each JPEG once, fills the memo and the folder
    rates: dict[str, list[float]] = {name: [] for name in sets}
    for _ in range(repeats):
        for name, dataset in sets.items():
            rates[name].append(_images_per_second(dataset))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    return {
        "images": count, "jpeg_size": [500, 375], "resize": protocol.resize, "crop": protocol.crop,
        "transform": "mlrc train (Resize 256, RandomResizedCrop 227, flip), uint8 out", "repeats": repeats, "torch_threads": 1,
        "jpeg_bytes_mean": float(np.mean([p.stat().st_size for p in paths])),
        "images_per_second": medians,
        "images_per_second_all": {name: [round(x, 1) for x in r] for name, r in rates.items()},
        "cached_over_plain": statistics.median(c / u for c, u in zip(rates["cached"], rates["plain"])),
        "disk_over_plain": statistics.median(d / u for d, u in zip(rates["disk"], rates["plain"])),
        "uncached_over_plain": statistics.median(d / u for d, u in zip(rates["uncached"], rates["plain"])),
        "cached_over_uncached": statistics.median(c / u for c, u in zip(rates["cached"], rates["uncached"])),
        "disk_over_uncached": statistics.median(d / u for d, u in zip(rates["disk"], rates["uncached"])),
    }
