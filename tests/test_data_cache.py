"""Decoded-image cache, transforms and ImageSet."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config import protocol_for
from benchmark.data.cache import DecodedImageCache, resized_size
from benchmark.data.images import ImageSet
from benchmark.data.transforms import eval_transform, train_transform
from benchmark.errors import UserError
from _data_helpers import write_image


@pytest.fixture()
def images(tmp_path):
    return [write_image(tmp_path / "imgs" / f"{i}.jpg", i, size=(60, 45)) for i in range(3)]


def test_second_pass_decodes_nothing(tmp_path, images):
    cache = DecodedImageCache(tmp_path, resize=36)
    first = [cache.get(p) for p in images]
    assert cache.decodes == 3
    assert [a.shape for a in first] == [(36, 48, 3)] * 3 and first[0].dtype == np.uint8
    assert len(list((tmp_path / ".cache" / "36").rglob("*.npy"))) == 3
    assert all(np.array_equal(a, cache.get(p)) for a, p in zip(first, images))
    assert cache.decodes == 3  # in-process memo
    fresh = DecodedImageCache(tmp_path, resize=36)  # a later process, e.g. the next trial
    assert all(np.array_equal(a, fresh.get(p)) for a, p in zip(first, images))
    assert fresh.decodes == 0 and fresh.disk_hits == 3


def test_changed_file_or_size_rebuilds(tmp_path, images):
    cache = DecodedImageCache(tmp_path, resize=36)
    before = cache.get(images[0])
    write_image(images[0], 99, size=(60, 45))
    stat = images[0].stat()
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a distinct mtime even on coarse clocks
    after = cache.get(images[0])
    assert cache.decodes == 2 and not np.array_equal(before, after)
    other = DecodedImageCache(tmp_path, resize=40)
    assert other.get(images[0]).shape == (40, 53, 3) and other.decodes == 1


def test_memo_is_bounded(tmp_path, images):
    cache = DecodedImageCache(None, resize=36, memo_bytes=36 * 48 * 3 * 2)
    for p in images:
        cache.get(p)
    cache.get(images[0])  # evicted from the memo, and there is no disk copy
    assert cache.decodes == 4


def test_corrupt_image_names_its_path(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(UserError, match=f"cannot decode image {bad}"):
        DecodedImageCache(tmp_path, resize=36).get(bad)


def test_resize_matches_torchvision_so_the_transform_resize_is_a_no_op():
    assert resized_size(500, 375, 256) == (341, 256)
    assert resized_size(375, 500, 256) == (256, 341)
    from torchvision.transforms.v2 import functional as F
    assert tuple(F.resize(torch.zeros(3, 375, 500), 256).shape[1:]) == (256, 341)


def test_imageset_with_protocol_transforms_is_reproducible(tmp_path, images):
    protocol = protocol_for("quick", "synthetic")
    cache = DecodedImageCache(tmp_path, protocol.resize)
    train = ImageSet(images, [7, 8, 9], train_transform(protocol), cache)
    torch.manual_seed(0)
    x, y = train[1]
    assert type(x) is torch.Tensor and x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert y == 8 and 0.0 <= x.min() and x.max() <= 1.0
    torch.manual_seed(0)
    assert torch.equal(train[1][0], x)
    evaluation = ImageSet(images, [7, 8, 9], eval_transform(protocol), cache)
    a, b = evaluation[2][0], evaluation[2][0]
    assert torch.equal(a, b) and a.shape == (3, 32, 32)
    # Eval = the centre 32x32 of the cached 36x48 image, scaled to [0, 1].
    expected = torch.tensor(cache.get(images[2])[2:34, 8:40]).permute(2, 0, 1).float() / 255
    assert torch.allclose(a, expected)
    batch = next(iter(torch.utils.data.DataLoader(evaluation, batch_size=3)))
    assert batch[0].shape == (3, 3, 32, 32) and batch[1].tolist() == [7, 8, 9]


def test_cached_image_is_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8)).save(gray)
    assert DecodedImageCache(tmp_path, 36).get(gray).shape == (36, 36, 3)
