"""Running a block of work on a fixed number of torch CPU threads."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to ``count`` inside the block, restored after it. CPU float reductions depend on
    the thread count (bit-reproducible numbers need it fixed), and timings on a shared CPU are steadier on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
