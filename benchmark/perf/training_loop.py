"""Overhead of ``FoldTrainer``'s epoch loop over a bare PyTorch loop doing the same steps.

Both loops get the same model architecture and initial weights, RMSprop with the protocol's settings, the same
pytorch-metric-learning loss and the same pre-made in-memory batches, so the data pipeline is excluded and only
the loop itself (loss bundle, optimiser list, grad scaler, device moves, loss accumulation) is compared. The two
alternate, short epoch after short epoch, and the ratio is the median of the per-pair ratios, so a neighbour's load
on a shared CPU hits both alike. Torch runs on one thread here: with two threads on a loaded 2-core machine one
straggling thread stalls every op, which is noise about the machine, not about the loop.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch
from pytorch_metric_learning import losses

from benchmark.config import protocol_for
from benchmark.models import build_model
from benchmark.training.fold import FoldTrainer
from benchmark.training.threads import torch_threads

LOSS = "multi_similarity"
PARAMS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}


def _batches(count: int, batch_size: int, m: int, crop: int, classes: int, seed: int) -> list:
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        labels = torch.randperm(classes, generator=generator)[: batch_size // m].repeat_interleave(m)
        images = torch.rand(batch_size, 3, crop, crop, generator=generator)
        batches.append((images, labels))
    return batches


def _bare_epoch(model, loss_fn, optimizer, batches) -> float:
    model.train()
    total = 0.0
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(batches)


def compare(protocol_name: str = "quick", steps: int = 20, repeats: int = 5, seed: int = 0, **overrides) -> dict:
    """Seconds per step of both loops (medians over ``repeats`` epochs of ``steps`` batches) and their ratio."""
    with torch_threads(1):
        return _compare(protocol_name, steps, repeats, seed, overrides)


def _compare(protocol_name: str, steps: int, repeats: int, seed: int, overrides: dict) -> dict:
    protocol = replace(protocol_for(protocol_name), **overrides)
    device = torch.device("cpu")
    classes = 50
    batches = _batches(steps, protocol.batch_size, protocol.m_per_class, protocol.crop, classes, seed)

    trainer = FoldTrainer(protocol, LOSS, PARAMS, device, cache=None, weights="none", num_workers=0)
    torch.manual_seed(seed)
    ours_model, bundle = trainer.build(classes)
    optimizers = trainer.optimizers(ours_model, bundle)
    scaler = trainer.grad_scaler()

    torch.manual_seed(seed)
    bare_model = build_model(protocol, weights="none")
    bare_optimizer = torch.optim.RMSprop(bare_model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay,
                                         momentum=protocol.momentum)
    loss_fn = losses.MultiSimilarityLoss(**PARAMS)

    # One untimed epoch each: first-call allocations and kernel selection are not the loop's overhead.
    trainer.run_epoch(ours_model, bundle, optimizers, scaler, batches)
    _bare_epoch(bare_model, loss_fn, bare_optimizer, batches)
    times = {"trainer": [], "bare": []}
    runs = {
        "trainer": lambda: trainer.run_epoch(ours_model, bundle, optimizers, scaler, batches),
        "bare": lambda: _bare_epoch(bare_model, loss_fn, bare_optimizer, batches),
    }
    for repeat in range(repeats):
        # Order alternates (trainer first, then bare first) so neither always runs on a warmer cache.
        for name in ("trainer", "bare") if repeat % 2 == 0 else ("bare", "trainer"):
            started = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - started) / steps)
    trainer_s, bare_s = statistics.median(times["trainer"]), statistics.median(times["bare"])
    ratio = statistics.median(t / b for t, b in zip(times["trainer"], times["bare"]))
    return {
        "protocol": protocol.name, "trunk": protocol.trunk, "crop": protocol.crop, "batch_size": protocol.batch_size,
        "loss": LOSS, "steps": steps, "repeats": repeats, "device": str(device), "torch_threads": 1,
        "trainer_seconds_per_step": trainer_s, "bare_seconds_per_step": bare_s,
        "trainer_all": [round(t, 5) for t in times["trainer"]], "bare_all": [round(t, 5) for t in times["bare"]],
        "trainer_over_bare": ratio,
    }
