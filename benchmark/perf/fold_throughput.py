"""Images per second of a whole quick-preset fold (``FoldTrainer.train``: data loading, steps, validations, early
stopping's bookkeeping, checkpoints) against a bare PyTorch loop doing the same work.

Both sides train the same architecture from the same initial weights with RMSprop and the same
pytorch-metric-learning loss on the same fold of the synthetic dataset, with the same batches (PML's
``MPerClassSampler``, same seed) and the protocol's train transform applied per image; both validate at epoch 0 and
every ``save_interval`` epochs, embedding the fold's validation images (centre crops) and computing MAP@R with
``retrieval_metrics`` (k = the largest class size). The bare loop holds every decoded image in a dict and its
validation crops in one tensor, as a hand-written loop would; the trainer reads its warm decoded-image cache. Early
stopping cannot end either side early (patience > epochs). The two alternate, fold after fold, so a neighbour's
load on a shared CPU hits both alike. Torch runs on one thread (see ``training_loop``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from pytorch_metric_learning import losses
from pytorch_metric_learning.samplers import MPerClassSampler
from torchvision import tv_tensors

from benchmark.config import protocol_for
from benchmark.data.cache import DecodedImageCache
from benchmark.data.registry import get_dataset
from benchmark.data.splits import make_splits
from benchmark.data.synthetic import config_for_size
from benchmark.data.transforms import eval_transform, to_model_input, train_transform
from benchmark.evaluation.metrics import retrieval_metrics
from benchmark.models import build_model
from benchmark.training.fold import FoldTrainer, fold_data
from benchmark.training.loaders import EMBED_BATCH_SIZE
from benchmark.training.seeding import seed_everything
from benchmark.training.threads import torch_threads

LOSS = "multi_similarity"
PARAMS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}


def compare(data_root: Path, size: str = "60x12", epochs: int = 4, repeats: int = 2, seed: int = 0) -> dict:
    with torch_threads(1):
        return _compare(Path(data_root), size, epochs, repeats, seed)


def _compare(data_root: Path, size: str, epochs: int, repeats: int, seed: int) -> dict:
    dataset = get_dataset("synthetic", data_root, config_for_size(size))
    protocol = replace(protocol_for("quick"), max_epochs=epochs, patience=epochs + 1)
    data = fold_data(dataset.paths, dataset.labels, make_splits(dataset, "mlrc"), 0)
    cache = DecodedImageCache(data_root, protocol.resize)
    for path in [*data.train_paths, *data.val_paths]:  # warm, as after a study's first trial
        cache.get(path)
    trainer = FoldTrainer(protocol, LOSS, PARAMS, torch.device("cpu"), cache, weights="none", num_workers=0)
    arrays = {str(p): cache.get(p) for p in [*data.train_paths, *data.val_paths]}

    seconds: dict[str, list[float]] = {"trainer": [], "bare": []}
    maps: dict[str, list[float]] = {"trainer": [], "bare": []}
    runs = {"trainer": lambda: _trainer_fold(trainer, data, seed), "bare": lambda: _bare_fold(protocol, data, arrays, seed)}
    for repeat in range(repeats):
        for name in ("trainer", "bare") if repeat % 2 == 0 else ("bare", "trainer"):
            started = time.perf_counter()
            best = runs[name]()
            seconds[name].append(time.perf_counter() - started)
            maps[name].append(best)
    images = epochs * protocol.iterations_per_epoch * protocol.batch_size
    validations = 1 + epochs // protocol.save_interval
    ratio = statistics.median(b / t for t, b in zip(seconds["trainer"], seconds["bare"]))
    return {
        "protocol": "quick", "synthetic_size": size, "fold": 0, "epochs": epochs, "validations": validations,
        "train_images": len(data.train_paths), "val_images": len(data.val_paths),
        "iterations_per_epoch": protocol.iterations_per_epoch, "batch_size": protocol.batch_size,
        "loss": LOSS, "repeats": repeats, "torch_threads": 1,
        "trainer_images_per_second": images / statistics.median(seconds["trainer"]),
        "bare_images_per_second": images / statistics.median(seconds["bare"]),
        "seconds_all": {k: [round(v, 3) for v in vs] for k, vs in seconds.items()},
        "best_val_map_at_r": {k: [round(v, 6) for v in vs] for k, vs in maps.items()},
        "trainer_over_bare_throughput": ratio,
    }


def _trainer_fold(trainer: FoldTrainer, data, seed: int) -> float:
    return trainer.train(data, seed).best_metrics["mean_average_precision_at_r"]


def _bare_fold(protocol, data, arrays: dict, seed: int) -> float:
    seed_everything(seed)
    model = build_model(protocol, weights="none")
    optimizer = torch.optim.RMSprop(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay,
                                    momentum=protocol.momentum)
    loss_fn = losses.MultiSimilarityLoss(**PARAMS)
    train, evaluate = train_transform(protocol), eval_transform(protocol)
    val_images = torch.stack([evaluate(tv_tensors.Image(torch.tensor(arrays[str(p)]).permute(2, 0, 1)))
                              for p in data.val_paths]).as_subclass(torch.Tensor)
    sampler = MPerClassSampler(data.train_labels, m=protocol.m_per_class, batch_size=protocol.batch_size,
                               length_before_new_iter=protocol.iterations_per_epoch * protocol.batch_size)

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            embeddings = torch.cat([model(to_model_input(val_images[i:i + EMBED_BATCH_SIZE], torch.device("cpu")))
                                    for i in range(0, len(val_images), EMBED_BATCH_SIZE)])
        model.train()
        return retrieval_metrics(embeddings.numpy(), data.val_labels, recall_at=())["mean_average_precision_at_r"]

    best = validate()
    for epoch in range(1, protocol.max_epochs + 1):
        indices = list(sampler)
        for start in range(0, len(indices) - protocol.batch_size + 1, protocol.batch_size):
            batch = indices[start:start + protocol.batch_size]
            images = torch.stack([train(tv_tensors.Image(torch.tensor(arrays[str(data.train_paths[i])]).permute(2, 0, 1)))
                                  for i in batch]).as_subclass(torch.Tensor)
            labels = torch.as_tensor(data.train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(to_model_input(images, torch.device("cpu"))), labels)
            loss.backward()
            optimizer.step()
        if epoch % protocol.save_interval == 0:
            best = max(best, validate())
    return best
