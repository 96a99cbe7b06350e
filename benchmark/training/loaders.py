"""How a fold's images reach the model: the DataLoaders of training and evaluation, their worker processes (how many,
and the interrupts they leave to the main process), and small evaluation sets held in memory as one tensor."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader

EMBED_BATCH_SIZE = 128
# An evaluation set up to this size (uint8 crops) is decoded and transformed once and kept as one tensor: a fold's
# validation set is embedded at every validation, and its centre crops never change. (CUB at 227 px: ~0.25 GB;
# SOP's validation classes, ~2.5 GB, stream through a persistent loader instead.)
EVAL_TENSOR_BYTES = 1 << 30


def default_workers(device: torch.device) -> int:
    # On the CPU, decoding is cached and the images are small: worker processes cost more than they save.
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def train_loader(dataset, batches, num_workers: int, device: torch.device, seed: int) -> DataLoader:
    """The training batches ``batches`` (a batch sampler) draws from ``dataset``."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_leave_interrupts_to_the_main_process,
    )


def eval_loader(dataset, crop: int, num_workers: int, device: torch.device):
    """Batches ``(uint8 images, labels)`` of an evaluation set, in order. Small sets are decoded and transformed
    once (:data:`EVAL_TENSOR_BYTES`, ``crop`` px images) and then served from memory; larger ones by a DataLoader
    whose workers persist between passes."""
    loader = DataLoader(
        dataset,
        batch_size=EMBED_BATCH_SIZE,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",
        worker_init_fn=_leave_interrupts_to_the_main_process,
    )
    if len(dataset) * 3 * crop ** 2 > EVAL_TENSOR_BYTES:
        return loader
    return _TensorBatches.collect(loader, pin=device.type == "cuda")


class _TensorBatches:
    """An evaluation set held as one uint8 tensor, iterated in batches like the DataLoader it was read from."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
        self.images, self.labels, self.batch_size = images, labels, batch_size

    @classmethod
    def collect(cls, loader: DataLoader, pin: bool) -> "_TensorBatches":
        with interrupts_held_while_workers_start():
            batches = iter(loader)
        batches = list(batches)
        images = torch.cat([b[0] for b in batches])
        labels = torch.cat([torch.as_tensor(b[1]) for b in batches])
        return cls(images.pin_memory() if pin else images, labels, loader.batch_size)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.labels), self.batch_size):
            yield self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def interrupts_held_while_workers_start():
    """Ctrl-C and SIGTERM wait while DataLoader workers are forked (they inherit the blocked mask until
    ``_leave_interrupts_to_the_main_process`` has set their handlers): one arriving in between would kill a worker
    that has no handler yet, and PyTorch would report it as a crash instead of an interruption."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPTS)


def _leave_interrupts_to_the_main_process(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and a process-group SIGTERM (docker stop, Slurm) to the main process, which
    records and re-queues the interrupted work: a worker killed by the signal would make PyTorch raise in the main
    process in the middle of that (e.g. inside the database write). Ctrl-C is ignored; only the first SIGTERM is,
    since the main process ends its workers with SIGTERM when it exits (multiprocessing's terminate): the next one
    ends the worker, and so does an alarm 10 s later, in case the main process was signalled alone."""

    def first_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.alarm(10)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, first_sigterm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPTS)
