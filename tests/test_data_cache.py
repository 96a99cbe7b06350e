"""Decoded-image cache, transforms and ImageSet."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from PIL import Image

from benchmark.config import protocol_for
from benchmark.data.cache import DecodedImageCache, resized_size
from benchmark.data.images import ImageSet
from benchmark.data.transforms import eval_transform, to_model_input, train_transform
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
    assert np.array_equal(cache.get(images[0]), before)  # a cache object keys each path once (per dataset)
    fresh = DecodedImageCache(tmp_path, resize=36)  # the next experiment
    after = fresh.get(images[0])
    assert fresh.decodes == 1 and not np.array_equal(before, after)
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
    # Resize and crop pinned (not the preset's, which may change): the geometry below is worked out for them.
    protocol = protocol_for("quick", resize=36, crop=32)
    cache = DecodedImageCache(tmp_path, protocol.resize)
    train = ImageSet(images, [7, 8, 9], train_transform(protocol), cache)
    torch.manual_seed(0)
    x, y = train[1]
    assert type(x) is torch.Tensor and x.dtype == torch.uint8 and x.shape == (3, 32, 32)  # made float on the device
    assert y == 8
    torch.manual_seed(0)
    assert torch.equal(train[1][0], x)
    evaluation = ImageSet(images, [7, 8, 9], eval_transform(protocol), cache)
    a, b = evaluation[2][0], evaluation[2][0]
    assert torch.equal(a, b) and a.shape == (3, 32, 32)
    # Eval = the centre 32x32 of the cached 36x48 image; the model input is that scaled to [0, 1] exactly as
    # v2.ToDtype(float32, scale=True) did in the worker before.
    expected = torch.tensor(cache.get(images[2])[2:34, 8:40]).permute(2, 0, 1)
    assert torch.equal(a, expected)
    assert torch.equal(to_model_input(a, torch.device("cpu")), v2.ToDtype(torch.float32, scale=True)(expected))
    floats = torch.rand(3, 4, 4)
    assert to_model_input(floats, torch.device("cpu")) is floats
    batch = next(iter(torch.utils.data.DataLoader(evaluation, batch_size=3)))
    assert batch[0].shape == (3, 3, 32, 32) and batch[1].tolist() == [7, 8, 9]


def test_cached_image_is_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8)).save(gray)
    assert DecodedImageCache(tmp_path, 36).get(gray).shape == (36, 36, 3)


def test_key_is_computed_once_per_path(tmp_path, images, monkeypatch):
    import benchmark.data.cache as cache_module

    cache = DecodedImageCache(tmp_path, resize=36)
    hashes = []
    real = cache_module.hashlib.sha1
    monkeypatch.setattr(cache_module.hashlib, "sha1", lambda data: hashes.append(data) or real(data))
    for _ in range(3):
        for p in images:
            cache.get(p)
    assert len(hashes) == len(images)  # not one stat + resolve + sha1 per access


def test_workers_share_the_disk_copy_instead_of_keeping_their_own_memo(tmp_path, images, monkeypatch):
    import benchmark.data.cache as cache_module

    expected = DecodedImageCache(tmp_path, resize=36).get(images[0])  # written to disk by the main process
    monkeypatch.setattr(cache_module, "_in_dataloader_worker", lambda: True)
    worker = DecodedImageCache(tmp_path, resize=36)
    array = worker.get(images[0])
    assert isinstance(array, np.memmap) and not array.flags.writeable  # the OS page cache is the shared copy
    assert np.array_equal(array, expected) and worker.decodes == 0 and len(worker._memo) == 0


def test_dataloader_workers_give_the_same_batches(tmp_path, images):
    protocol = protocol_for("quick")
    cache = DecodedImageCache(tmp_path, protocol.resize)
    evaluation = ImageSet(images, [7, 8, 9], eval_transform(protocol), cache)
    inline = next(iter(torch.utils.data.DataLoader(evaluation, batch_size=3)))
    workers = next(iter(torch.utils.data.DataLoader(evaluation, batch_size=3, num_workers=2)))
    assert inline[0].dtype == torch.uint8 and torch.equal(inline[0], workers[0])


def test_resize_on_a_miss_is_torchvisions(tmp_path):
    from torchvision.transforms.v2 import functional as F

    path = tmp_path / "big.png"
    pixels = np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    cached = DecodedImageCache(None, resize=36).get(path)
    expected = F.resize(torch.from_numpy(pixels).permute(2, 0, 1), [36, 48], antialias=True).permute(1, 2, 0)
    assert np.array_equal(cached, expected.numpy())


def test_full_disk_degrades_to_no_caching_with_one_warning(tmp_path, images, monkeypatch, caplog):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    cache = DecodedImageCache(tmp_path, resize=36)
    with caplog.at_level("WARNING"):
        arrays = [cache.get(p) for p in images]  # every image still arrives
    assert [a.shape for a in arrays] == [(36, 48, 3)] * 3 and cache.decodes == 3
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "No space left on device" in warnings[0].getMessage()
    assert list((tmp_path / ".cache").rglob("*.tmp")) == []  # no half-written entry left behind


def test_file_names_that_are_not_utf8_are_cached(tmp_path, images):
    odd = tmp_path / os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: a surrogate in Python's str
    odd.write_bytes(images[0].read_bytes())
    cache = DecodedImageCache(tmp_path, resize=36)
    assert np.array_equal(cache.get(odd), cache.get(images[0]))
    assert DecodedImageCache(tmp_path, resize=36).get(odd).shape == (36, 48, 3)
